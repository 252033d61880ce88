"""Scanned requests get exactly the service's client address and decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from geogate.client_ip import TrustedProxies
from geogate.decide import Decider
from geogate.errors import ClientIPError
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set
from geogate.scan.judge import Judge, Scenario
from geogate.scan.readers import RAW_SCHEMA
from geogate.scan.run import ScanConfig, scan_local

TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "fd00::/8"])
BEFORE = datetime(2024, 7, 1, tzinfo=UTC)
AFTER = datetime(2024, 7, 20, tzinfo=UTC)


def _raw(rows: list[dict]) -> pa.RecordBatch:
    cols = {name: [r.get(name) for r in rows] for name in RAW_SCHEMA.names}
    return pa.RecordBatch.from_pydict(cols, schema=RAW_SCHEMA)


def _rows(c: dict[str, str]) -> list[dict]:
    cn, us, ru = c["CN"], c["US"], c["RU"]
    lb, lb2 = "10.0.0.7", "10.1.2.3"
    cases = [
        {"peer": cn},  # direct
        {"peer": us, "xff": cn},  # untrusted peer: its header is ignored
        {"peer": lb, "xff": cn},  # behind the load balancer
        {"peer": lb, "xff": f"{us}, {cn}, {lb2}"},  # walked right to left past trusted hops
        {"peer": lb, "xff": f"{cn}, {lb2}, 10.9.9.9"},
        {"peer": lb, "forwarded": f'for="{ru}:443";proto=https', "xff": us},  # Forwarded wins
        {"peer": lb, "xff": "unknown"},  # hides the client: invalid
        {"peer": lb, "xff": "not-an-ip"},
        {"peer": lb},  # trusted peer without headers: the peer itself
        {"peer": "2001:db8::1"},
        {"peer": "::ffff:" + cn},
        {"peer": "bogus"},
        {"peer": lb, "xff": "2a00:1450:4001::1"},
        {"peer": us, "account": "partner-1"},
        {"peer": cn, "account": "partner-1"},
    ]
    out = []
    for ts in (BEFORE, AFTER):
        for case in cases:
            out.append({"ts": ts, "account": "acct-1", **case})
    return out


def _service(decider: Decider, row: dict, at: datetime) -> tuple[str, frozenset[str], str]:
    try:
        _, d = decider.decide_request(
            row["peer"],
            x_forwarded_for=row.get("xff"),
            forwarded=row.get("forwarded"),
            account=row.get("account"),
            at=at,
        )
    except ClientIPError:
        return "invalid", frozenset({"invalid_address"}), ""
    return d.action.label, frozenset(r.value for r in d.reasons), d.region or ""


@pytest.fixture
def exempt_policies(tmp_path: Path) -> PolicySet:
    text = Path("policies/unsupported-regions.toml").read_text()
    text = text.replace("accounts = []", 'accounts = ["partner-1"]', 1)
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_policy_set([path])


@pytest.mark.parametrize("at", [None, AFTER])
def test_scan_decisions_equal_the_services_request_by_request(
    snapshot, clients, exempt_policies: PolicySet, at: datetime | None
) -> None:
    rows = _rows(clients)
    judge = Judge(snapshot, Scenario(policies=exempt_policies, at=at), trusted=TRUSTED, pivot=AFTER)
    judged = judge.judge(_raw(rows)).to_pylist()
    decider = Decider(exempt_policies, snapshot, trusted=TRUSTED)
    for row, got in zip(rows, judged, strict=True):
        action, reasons, region = _service(decider, row, at or row["ts"])
        assert (
            got["action"],
            frozenset(filter(None, got["reasons"].split(","))),
            got["region"],
        ) == (action, reasons, region), row


def test_a_header_from_an_untrusted_peer_never_moves_the_request(
    snapshot, clients, policies: PolicySet
) -> None:
    c = clients
    rows = [{"ts": AFTER, "peer": c["US"], "xff": c["CN"]}]
    for trusted in (TrustedProxies(), TRUSTED):
        judged = (
            Judge(snapshot, Scenario(policies=policies), trusted=trusted, pivot=AFTER)
            .judge(_raw(rows))
            .to_pylist()
        )
        assert (judged[0]["region"], judged[0]["action"]) == ("US", "allow")


def test_comparison_marks_newly_denied_and_released_requests(
    snapshot, clients, policies: PolicySet
) -> None:
    c = clients
    rows = [{"ts": AFTER, "peer": c["CN"]}, {"ts": AFTER, "peer": c["US"]}]
    judge = Judge(
        snapshot,
        Scenario(policies=policies, at=BEFORE),
        pivot=AFTER,
        compare=Scenario(policies=policies, at=AFTER),
    )
    got = judge.judge(_raw(rows)).to_pylist()
    assert [(g["action"], g["action_b"], g["change"]) for g in got] == [
        ("warn", "deny", "newly_denied"),
        ("allow", "allow", "same"),
    ]


def _place_address(snapshot, city: str) -> str:
    """The first IPv4 address of a range the data places in ``city``."""
    place = next(i for i, p in enumerate(snapshot.places) if i and p.city == city)
    key = int(np.flatnonzero(snapshot.subdivision_idx[: snapshot.n4] == place)[0])
    x = int(snapshot.v4_starts[key])
    return f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"


def test_city_carve_outs_carry_the_services_region_label(
    tmp_path: Path, snapshot, clients, policies: PolicySet
) -> None:
    """A request from a city a rule names (the shipped policy's Zaporizhzhia and Kherson
    carve-outs) is labelled with the rule's region, "UA-23/Zaporizhzhia", as the service
    labels it — in the judged rows and in the tables, also when processes add them up."""
    carved = [_place_address(snapshot, "Zaporizhzhia"), _place_address(snapshot, "Kherson")]
    rows = [{"ts": AFTER, "peer": ip, "account": f"a{i}"} for i, ip in enumerate(carved)]
    rows.append({"ts": AFTER, "peer": clients["UA-43"], "account": "crimea"})
    decider = Decider(policies, snapshot)
    want = [decider.decide(r["peer"], at=AFTER).region or "" for r in rows]
    assert want[:2] == ["UA-23/Zaporizhzhia", "UA-65/Kherson"]
    judged = Judge(snapshot, Scenario(policies=policies, at=AFTER), pivot=AFTER)
    assert [r["region"] for r in judged.judge(_raw(rows)).to_pylist()] == want
    logs = []
    for i, row in enumerate(rows):
        path = tmp_path / f"{i}.jsonl"
        path.write_text(
            f'{{"ts":"2024-07-20T00:00:00Z","ip":"{row["peer"]}","account":"{row["account"]}"}}\n'
        )
        logs.append(str(path))
    for jobs in (1, 2):
        config = ScanConfig(
            inputs=logs,
            out=tmp_path / f"out-{jobs}",
            policies=policies,
            snapshot=snapshot,
            report=False,
        )
        accounts = scan_local(config, jobs=jobs).tables["accounts"].to_pylist()
        assert sorted(r["region"] for r in accounts) == sorted(want)
