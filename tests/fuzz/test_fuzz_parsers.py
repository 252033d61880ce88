"""The CI fuzz suite: Hypothesis drives every parser of outside input (``targets.TARGETS``)
with hostile text and checks that each returns or raises only its own one-line error.

Bounded for CI (``GEOGATE_FUZZ_EXAMPLES``, default 300 per target: about a minute in all on
a shared 2-core machine); the long run is ``scripts/fuzz_long.py``.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzz.targets import TARGETS, Target, check, hostile_text, json_values

from geogate.accounts.events import Event, Rejected, read_json_payload
from geogate.json_limits import MAX_JSON_DEPTH, json_depth, loads_bounded

EXAMPLES = int(os.environ.get("GEOGATE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_parser_returns_or_raises_its_own_error(target: Target) -> None:
    @FUZZ
    @given(text=hostile_text(target.seeds))
    def run(text: str) -> None:
        check(target, text)

    run()


@FUZZ
@given(doc=json_values())
def test_bounded_json_equals_the_standard_decoder_within_the_depth(doc: str) -> None:
    """loads_bounded gives what json.loads gives for every document within the depth limit, and
    json_depth never under-counts (so the check cannot be bypassed)."""
    expected = json.loads(doc)
    depth = json_depth(doc)
    assert depth >= _true_depth(expected)
    if depth <= MAX_JSON_DEPTH:
        assert loads_bounded(doc) == expected


def _true_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    return 0


@FUZZ
@given(
    good=st.lists(st.integers(0, 59), min_size=1, max_size=5),
    bad=st.lists(hostile_text(('{"type":"request","ts":"2024-07-01T00:00:00Z"}',)), max_size=5),
)
def test_a_bad_line_never_costs_a_good_one(good: list[int], bad: list[str]) -> None:
    """Whatever the bad lines, every good line of the body is parsed (nothing valid lost)."""
    lines = [
        json.dumps(
            {"type": "request", "ts": f"2024-07-01T00:{m:02d}:00Z", "account": "a", "ip": "1.2.3.4"}
        )
        for m in good
    ]
    body = "\n".join(
        [x for pair in zip(lines, [b.replace("\n", " ") for b in bad], strict=False) for x in pair]
        + lines[len(bad) :]
    )
    items = read_json_payload(body)
    events = [i for i in items if isinstance(i, Event)]
    assert len(events) >= len(lines)
    assert all(isinstance(i, Event | Rejected) for i in items)
