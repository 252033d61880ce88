"""Golden decisions on the embedded data: policy, address, date and expected outcome side by side
in decisions.json. Regenerate with `pytest --update-golden` and review the diff like code.

The addresses are not guesses: `sample_addresses` picks, for each region, the middle address of
its largest public IPv4 and IPv6 range in the embedded snapshot.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from geogate.client_ip import TrustedProxies
from geogate.decide import Decider
from geogate.intel.samples import sample_addresses
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path

GOLDEN = Path(__file__).with_name("decisions.json")
REGIONS = ["US", "DE", "CN", "HK", "RU", "IR", "UA-30", "UA-43"]
POLICIES = ["builtin:unsupported-regions", "builtin:supported-countries"]
DATES = ["2024-07-01", "2024-07-10"]


def compute() -> list[dict[str, object]]:
    snap = Snapshot.embedded()
    cases: list[dict[str, object]] = []
    for spec in POLICIES:
        decider = Decider(load_policy_set([resolve_policy_path(spec)]), snap)
        for ip in sample_addresses(snap, REGIONS):
            for day in DATES:
                at = datetime.fromisoformat(day).replace(tzinfo=UTC)
                d = decider.decide(ip, at=at)
                cases.append(
                    {
                        "policy": spec,
                        "ip": ip,
                        "at": day,
                        "action": d.action.label,
                        "region": d.region,
                        "country": d.facts.country,
                        "subdivision": d.facts.subdivision,
                        "reasons": [r.value for r in d.reasons],
                    }
                )
    return cases


def test_golden_decisions(request: pytest.FixtureRequest) -> None:
    got = compute()
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert got == expected


def test_golden_file_covers_the_issue_regions_in_both_families() -> None:
    cases = json.loads(GOLDEN.read_text())
    deny = [c for c in cases if c["policy"] == POLICIES[0] and c["at"] == "2024-07-10"]
    by_country = {(c["country"], ":" in c["ip"]) for c in deny}
    for country in ("CN", "HK", "RU", "IR", "US", "DE"):
        assert (country, False) in by_country, country
        assert (country, True) in by_country, country
    for c in deny:
        expected = "deny" if c["country"] in {"CN", "HK", "RU", "IR"} else None
        if c["subdivision"] == "UA-43":
            expected = "deny"
        if c["country"] in {"US", "DE"}:
            expected = "allow"
        if expected and not (set(c["reasons"]) & {"anonymizer_tor", "anonymizer_vpn"}):
            assert c["action"] == expected, c


def test_crimea_denied_after_and_warned_before_the_date() -> None:
    snap = Snapshot.embedded()
    decider = Decider(load_policy_set([resolve_policy_path(POLICIES[0])]), snap)
    crimea = sample_addresses(snap, ["UA-43"], ipv6=False)
    assert crimea, "the embedded data must keep Crimean subdivisions"
    after = decider.decide(crimea[0], at=datetime(2024, 7, 10, tzinfo=UTC))
    before = decider.decide(crimea[0], at=datetime(2024, 7, 1, tzinfo=UTC))
    assert (after.action.label, after.region) == ("deny", "UA-43")
    assert before.action.label == "warn"
    assert "enforcement_pending" in [r.value for r in before.reasons]


def test_spoofed_forwarded_for_from_untrusted_peer_changes_no_decision() -> None:
    snap = Snapshot.embedded()
    policies = load_policy_set([resolve_policy_path(POLICIES[0])])
    decider = Decider(policies, snap, trusted=TrustedProxies.parse(["10.0.0.0/8"]))
    us, cn = sample_addresses(snap, ["US"], ipv6=False)[0], sample_addresses(snap, ["CN"])[0]
    at = datetime(2024, 7, 10, tzinfo=UTC)
    # A CN client claims to be in the US: ignored, because the peer is not a trusted proxy.
    ip, d = decider.decide_request(cn, x_forwarded_for=us, at=at)
    assert ip == cn
    assert d.action.label == "deny"
    ip, d = decider.decide_request(cn, forwarded=f"for={us}", at=at)
    assert ip == cn
    assert d.action.label == "deny"
    # Through a trusted proxy, the same header is believed.
    ip, d = decider.decide_request("10.1.1.1", x_forwarded_for=f"{us}, {cn}", at=at)
    assert (ip, d.action.label) == (cn, "deny")
    ip, d = decider.decide_request("10.1.1.1", x_forwarded_for=us, at=at)
    assert (ip, d.action.label) == (us, "allow")
