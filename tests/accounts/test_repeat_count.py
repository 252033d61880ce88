"""A request event with a repeat count counts exactly as that many identical event lines.

The log scan's account preview collapses each account's consecutive identical requests of one
UTC hour into one event with ``count`` and ``last_epoch``; these tests hold the account engine
to "the same evidence, the same states" for random streams: VPN switching within minutes,
travellers, relays, forwarded chains, languages, API keys, policy-date boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, parse_record
from geogate.accounts.evidence import AccountEvidence, DeciderLocator, apply_event
from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import Policy, PolicySet
from geogate.policy.parse import builtin_policy_path, load_policy
from geogate.store.sql import SqlStore

from .conftest import make_enforcer
from .netdata import NETS, build_snapshot

# The shipped preset's enforcement date (2024-07-09) falls inside the streams: runs must not
# cross the policy segment boundary it makes.
START = datetime(2024, 7, 8, 21, 0, tzinfo=UTC)
NET_NAMES = ("us_home", "cn_home", "ru_home", "crimea", "us_vpn", "de_cloud", "us_relay", "tor")
SNAPSHOT = build_snapshot()

_request = st.fixed_dictionaries(
    {
        "gap": st.sampled_from([0, 0, 1, 7, 60, 400, 899, 901, 1800, 3600, 7200, 30_000]),
        "net": st.sampled_from(NET_NAMES),
        "host": st.integers(1, 2),
        "ua": st.sampled_from([None, "curl/8.5", "okhttp/4.12"]),
        "lang": st.sampled_from([None, "en-US,en;q=0.9", "zh-CN,zh;q=0.9"]),
        "org": st.sampled_from([None, "org-a", "org-b"]),
        "key": st.sampled_from([None, "sk-1", "sk-2"]),
        "fwd": st.sampled_from([None, NETS["cn_home"].host(9), NETS["us_home"].host(9)]),
    }
)


def _stream(specs: Sequence[dict[str, Any]], account: str = "acct") -> list[Event]:
    """Request events in time order from drawn specs (each a gap after the previous one)."""
    t = START
    out: list[Event] = []
    for i, spec in enumerate(specs):
        t += timedelta(seconds=spec["gap"])
        rec: dict[str, Any] = {
            "id": f"{account}-{i}",
            "type": "request",
            "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "account": account,
            "ip": NETS[spec["net"]].host(spec["host"]),
        }
        for name, field in (
            ("ua", "user_agent"),
            ("lang", "accept_language"),
            ("org", "org"),
            ("key", "api_key"),
            ("fwd", "forwarded"),
        ):
            if spec[name] is not None:
                rec[field] = spec[name]
        out.append(parse_record(rec))
    return out


def _attributes(e: Event, policies: PolicySet) -> tuple[Any, ...]:
    return (
        e.account,
        e.epoch // 3600,
        policies.segment(e.ts),
        e.ip,
        e.user_agent,
        e.accept_language,
        e.org,
        e.api_key,
        e.forwarded,
    )


def collapse(
    events: Sequence[Event], policies: PolicySet, *, longest: int | None = None
) -> list[Event]:
    """Each run of consecutive events with the same attributes in the same UTC hour and
    policy segment (and times never going back) as one event with a count; ``longest`` cuts
    runs into pieces of at most that many (as the preview does at batch boundaries)."""
    runs: list[Event] = []
    first: Event | None = None
    key: tuple[Any, ...] = ()
    count = 0
    last = 0
    for e in events:
        k = _attributes(e, policies)
        if (
            first is not None
            and k == key
            and e.epoch >= last
            and (longest is None or count < longest)
        ):
            count += 1
            last = e.epoch
            continue
        if first is not None:
            runs.append(first._replace(repeat=count, last_epoch=last))
        first, key, count, last = e, k, 1, e.epoch
    if first is not None:
        runs.append(first._replace(repeat=count, last_epoch=last))
    return runs


def _preset() -> Policy:
    return load_policy(builtin_policy_path("unsupported-regions"))


def _evidence(events: Sequence[Event], locator: DeciderLocator) -> dict[str, Any]:
    ev = AccountEvidence()
    for e in events:
        apply_event(ev, e, locator=locator, switch_window_seconds=900)
    return ev.to_dict()


@settings(max_examples=150)
@given(st.lists(_request, min_size=1, max_size=60), st.sampled_from([None, 1, 2, 3]))
def test_collapsed_runs_give_the_same_evidence_as_each_line(
    specs: list[dict[str, Any]], longest: int | None
) -> None:
    """Whole runs, or runs cut into pieces (two neighbouring runs of the same requests share
    their class, so the second never counts as a switch)."""
    policies = PolicySet.of([_preset()])
    locator = DeciderLocator(Decider(policies, SNAPSHOT))
    events = _stream(specs)
    runs = collapse(events, policies, longest=longest)
    assert sum(r.repeat for r in runs) == len(events)
    assert _evidence(runs, locator) == _evidence(events, locator)


def test_a_run_that_switches_only_at_its_first_request() -> None:
    """Residential CN, then a US VPN for ten minutes: one switch, whether the VPN minutes are
    twenty lines or one event counting twenty."""
    cn = {"gap": 0, "net": "cn_home", "host": 1, "ua": None, "lang": None, "org": None}
    vpn = cn | {"gap": 30, "net": "us_vpn"}
    specs = [cn | {"key": None, "fwd": None}] + [vpn | {"key": None, "fwd": None}] * 20
    policies = PolicySet.of([_preset()])
    locator = DeciderLocator(Decider(policies, SNAPSHOT))
    events = _stream(specs)
    runs = collapse(events, policies)
    assert [r.repeat for r in runs] == [1, 20]
    line_by_line = _evidence(events, locator)
    assert _evidence(runs, locator) == line_by_line
    switches = sum(row[1 + 9] for row in line_by_line["d"])  # SWITCHES is counter 9
    assert switches == 1


def _states(
    tmp_path: Path, name: str, events: Sequence[Event], policies: PolicySet, snapshot: Snapshot
) -> tuple[dict[str, tuple[str, tuple[str, ...], dict[str, Any]]], list[tuple[str, str]]]:
    store = SqlStore.open(str(tmp_path / f"{name}.db"))
    try:
        enforcer = make_enforcer(store, policies, snapshot)
        enforcer.ingest(events, batch_size=40)
        report = enforcer.enforce(START + timedelta(days=3), dry_run=True)
        rows = {
            r.account: (r.state, r.reasons, {k: v for k, v in r.evidence.items() if k != "ad"})
            for r in store.iter_accounts()
        }
        return rows, sorted((c.account, c.to_state.value) for c in report.changes)
    finally:
        store.close()


@settings(max_examples=12)
@given(st.lists(st.lists(_request, min_size=1, max_size=40), min_size=2, max_size=5))
def test_an_enforcer_fed_runs_decides_as_one_fed_lines(
    tmp_path_factory: Any, streams: list[list[dict[str, Any]]]
) -> None:
    """Several accounts interleaved in time order, ingested in small batches: the states,
    reasons, evidence and dry-run changes are the same for the lines and for their runs (the
    runs of each account in the order of their first line)."""
    tmp_path = tmp_path_factory.mktemp("runs")
    policies = PolicySet.of([_preset()])
    events = sorted(
        (e for i, specs in enumerate(streams) for e in _stream(specs, f"acct-{i}")),
        key=lambda e: (e.ts, e.account),
    )
    runs: list[Event] = []
    for account in sorted({e.account for e in events}):
        runs.extend(collapse([e for e in events if e.account == account], policies))
    runs.sort(key=lambda e: (e.ts, e.account))
    # One ingestion batch each, so that the day judging sees the same batches.
    lines_rows, lines_changes = _states(tmp_path, "lines", events, policies, SNAPSHOT)
    store = SqlStore.open(str(tmp_path / "runs.db"))
    try:
        enforcer = Enforcer(
            store,
            policies=policies,
            locator=DeciderLocator(Decider(policies, SNAPSHOT)),
            log_events=False,  # as the scan's preview runs it: the same states, no event log
        )
        enforcer.ingest_batch(runs)
        enforcer.close_open_days()
        assert store.count_events() == 0
        report = enforcer.enforce(START + timedelta(days=3), dry_run=True)
        runs_rows = {
            r.account: (r.state, r.reasons, {k: v for k, v in r.evidence.items() if k != "ad"})
            for r in store.iter_accounts()
        }
        runs_changes = sorted((c.account, c.to_state.value) for c in report.changes)
    finally:
        store.close()
    assert runs_rows == lines_rows
    assert runs_changes == lines_changes


def test_an_account_that_moves_between_orgs_is_linked_to_each_whatever_the_batches(
    tmp_path: Path,
) -> None:
    """An account naming org-a, then org-b on the same day belongs to both groups, whether
    the two requests arrive in one batch or in two (links used to follow the batches)."""
    policies = PolicySet.of([_preset()])
    base = {"net": "us_home", "host": 1, "ua": None, "lang": None, "key": None, "fwd": None}
    mover = _stream([base | {"gap": 0, "org": "org-a"}, base | {"gap": 60, "org": "org-b"}])
    stayer = _stream([base | {"gap": 30, "org": "org-a", "host": 2}], account="other")
    events = sorted([*mover, *stayer], key=lambda e: e.ts)
    members = []
    for batch_size in (1, 1_000):
        store = SqlStore.open(str(tmp_path / f"b{batch_size}.db"))
        try:
            make_enforcer(store, policies, SNAPSHOT).ingest(events, batch_size=batch_size)
            found = store.egress_members(min_accounts=1)
            members.append({k: sorted(v) for k, v in found.items() if k.startswith("org:")})
            row = store.get_account("acct")
            assert row is not None
            assert AccountEvidence.from_dict(row.evidence).group_keys() == (
                "org:org-a",
                "org:org-b",
            )
        finally:
            store.close()
    assert members[0] == members[1] == {"org:org-a": ["acct", "other"], "org:org-b": ["acct"]}


def test_evidence_stored_before_orgs_were_kept_reads_its_one_org() -> None:
    ev = AccountEvidence.from_dict({"v": 1, "og": "org-a"})
    assert ev.group_keys() == ("org:org-a",)
    assert AccountEvidence.from_dict(ev.to_dict()).orgs == {"org-a"}
