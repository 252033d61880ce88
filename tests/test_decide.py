"""The pure decision rule: regions, schedule, unknown and disputed locations, network kinds,
exemptions; every decision explains itself."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import TableLookup

from geogate.decide import Reason, RequestContext, decide, judge
from geogate.errors import ClientIPError
from geogate.intel.facts import IntelFacts, NetworkFlag
from geogate.policy.model import Action
from geogate.policy.parse import load_policy, parse_policy, resolve_policy_path

BEFORE = datetime(2024, 7, 1, tzinfo=UTC)
AFTER = datetime(2024, 7, 10, tzinfo=UTC)
DENY_LIST = load_policy(resolve_policy_path("builtin:unsupported-regions"))
ALLOW_LIST = load_policy(resolve_policy_path("builtin:supported-countries"))


def facts(**kw: object) -> IntelFacts:
    return IntelFacts(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("f", "at", "action", "region", "reasons"),
    [
        (facts(country="US"), AFTER, Action.ALLOW, "US", {Reason.REGION_SUPPORTED}),
        (facts(country="CN"), AFTER, Action.DENY, "CN", {Reason.REGION_UNSUPPORTED}),
        (
            facts(country="CN"),
            BEFORE,
            Action.WARN,
            "CN",
            {Reason.REGION_UNSUPPORTED, Reason.ENFORCEMENT_PENDING},
        ),
        # DB-IP files Crimea under RU or UA: the subdivision rule matches both.
        (
            facts(country="RU", subdivision="UA-43"),
            AFTER,
            Action.DENY,
            "UA-43",
            {Reason.REGION_UNSUPPORTED},
        ),
        (
            facts(country="UA", subdivision="UA-43"),
            AFTER,
            Action.DENY,
            "UA-43",
            {Reason.REGION_UNSUPPORTED},
        ),
        (
            facts(country="UA", subdivision="UA-30"),
            AFTER,
            Action.ALLOW,
            "UA",
            {Reason.REGION_SUPPORTED},
        ),
        (facts(), AFTER, Action.WARN, None, {Reason.REGION_UNKNOWN}),
        (
            facts(country="US", flags=NetworkFlag.TOR),
            AFTER,
            Action.DENY,
            "US",
            {Reason.REGION_SUPPORTED, Reason.ANONYMIZER_TOR},
        ),
        (
            facts(country="DE", flags=NetworkFlag.HOSTING),
            AFTER,
            Action.ALLOW,
            "DE",
            {Reason.REGION_SUPPORTED, Reason.HOSTING_NETWORK},
        ),
        (
            facts(country="DE", flags=NetworkFlag.VPN | NetworkFlag.HOSTING),
            AFTER,
            Action.WARN,
            "DE",
            {Reason.REGION_SUPPORTED, Reason.ANONYMIZER_VPN, Reason.HOSTING_NETWORK},
        ),
        (
            facts(country="US", flags=NetworkFlag.RELAY),
            AFTER,
            Action.ALLOW,
            "US",
            {Reason.REGION_SUPPORTED, Reason.RELAY_NETWORK},
        ),
        # Secondary source says CN: flagged, never denied on that alone.
        (
            facts(country="US", alt_country="CN"),
            AFTER,
            Action.WARN,
            "US",
            {Reason.REGION_SUPPORTED, Reason.LOCATION_DISPUTED},
        ),
        (
            facts(country="US", alt_country="CA"),
            AFTER,
            Action.ALLOW,
            "US",
            {Reason.REGION_SUPPORTED},
        ),
    ],
)
def test_deny_list_decisions(
    f: IntelFacts, at: datetime, action: Action, region: str | None, reasons: set[Reason]
) -> None:
    d = judge(DENY_LIST, f, at=at)
    assert d.action is action, d.explain()
    assert d.region == region
    assert set(d.reasons) == reasons
    assert d.policy == DENY_LIST.label
    assert d.facts is f


def test_allow_list_denies_unlisted_and_carve_outs() -> None:
    assert judge(ALLOW_LIST, facts(country="FR"), at=AFTER).action is Action.ALLOW
    cn = judge(ALLOW_LIST, facts(country="CN"), at=AFTER)
    assert cn.action is Action.DENY
    assert cn.rule_id is None
    assert Reason.REGION_UNSUPPORTED in cn.reasons
    assert judge(ALLOW_LIST, facts(country="CN"), at=BEFORE).action is Action.WARN
    crimea = judge(ALLOW_LIST, facts(country="UA", subdivision="UA-43"), at=AFTER)
    assert crimea.action is Action.DENY
    assert crimea.rule_id == "ua-occupied"


def test_decide_applies_exemptions_and_explains(table_lookup: TableLookup) -> None:
    policy = parse_policy(
        DENY_LIST_TEXT
        + '\n[exemptions]\naccounts = ["acct-partner"]\nnetworks = ["198.51.100.0/24"]\n'
    )
    table_lookup.table["198.51.100.0/24"] = facts(country="CN")
    table_lookup.table["203.0.113.0/24"] = facts(country="CN")
    d = decide(policy, table_lookup, RequestContext(ip="198.51.100.4"), at=AFTER)
    assert d.action is Action.ALLOW
    assert d.reasons[0] is Reason.EXEMPT_NETWORK
    assert d.path == "exempt"
    d = decide(
        policy, table_lookup, RequestContext(ip="203.0.113.4", account="acct-partner"), at=AFTER
    )
    assert d.reasons[0] is Reason.EXEMPT_ACCOUNT
    d = decide(policy, table_lookup, RequestContext(ip="203.0.113.4", account="other"), at=AFTER)
    assert d.action is Action.DENY
    assert "deny" in d.explain()
    assert "CN" in d.explain()
    body = d.to_dict()
    assert body["action"] == "deny"
    assert body["evidence"]["country"] == "CN"  # type: ignore[index]
    with pytest.raises(ClientIPError):
        decide(policy, table_lookup, RequestContext(ip="300.1.1.1"), at=AFTER)


DENY_LIST_TEXT = """
[policy]
id = "p"
effective = 2024-07-09
[[rules]]
id = "cn"
regions = ["CN"]
"""

countries = st.sampled_from(["US", "DE", "CN", "RU", "UA", "FR", "IR", "JP", None])
subdivisions = st.sampled_from([None, "UA-43", "UA-30", "UA-14"])
flag_sets = st.sampled_from(list(NetworkFlag))
regions_strategy = st.lists(
    st.sampled_from(["CN", "RU", "UA-43", "UA", "IR", "US", "FR", "UA-14"]),
    unique=True,
    min_size=1,
    max_size=4,
)


@given(
    country=countries,
    subdivision=subdivisions,
    alt=countries,
    flags=flag_sets,
    base=regions_strategy,
    extra=st.sampled_from(["JP", "DE", "BR", "UA-30"]),
    at=st.sampled_from([BEFORE, AFTER]),
)
def test_adding_a_deny_rule_never_relaxes_a_decision(
    country: str | None,
    subdivision: str | None,
    alt: str | None,
    flags: NetworkFlag,
    base: list[str],
    extra: str,
    at: datetime,
) -> None:
    """Property: a deny-list grown by one region is never more permissive than before."""

    def policy(regions: list[str]) -> str:
        quoted = ", ".join(f'"{r}"' for r in regions)
        head = '[policy]\nid = "p"\neffective = 2024-07-09\n'
        return head + f'[[rules]]\nid = "r"\nregions = [{quoted}]\n'

    f = IntelFacts(country=country, subdivision=subdivision, alt_country=alt, flags=flags)
    small = judge(parse_policy(policy(base)), f, at=at)
    large = judge(parse_policy(policy(sorted({*base, extra}))), f, at=at)
    assert large.action >= small.action


PURE_SOCKET = {"inet_pton", "inet_ntop", "AF_INET", "AF_INET6"}


def test_pure_core_imports_no_adapters() -> None:
    """STYLE.md: the pure core never imports drivers, maxminddb, web frameworks, env or clock."""
    src = Path(__file__).resolve().parents[1] / "src" / "geogate"
    forbidden = {
        "maxminddb",
        "sqlalchemy",
        "psycopg",
        "sqlite3",
        "starlette",
        "uvicorn",
        "httpx",
        "fastapi",
        "os",
        "time",
        "socket",
    }
    files = [src / "client_ip.py", src / "decide.py", *sorted((src / "policy").glob("*.py"))]
    files += sorted((src / "accounts").glob("**/*.py")) if (src / "accounts").exists() else []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "socket" and {a.name for a in node.names} <= PURE_SOCKET:
                    names = []  # address text <-> bytes conversions: no socket, no I/O
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
