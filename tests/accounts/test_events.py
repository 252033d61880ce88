"""Event parsing: JSON Lines, CSV and Parquet; unknown fields kept; malformed lines named by
file, line and field; stable ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.accounts.events import (
    Event,
    EventKind,
    Rejected,
    parse_json_line,
    parse_record,
    read_events,
    read_json_payload,
)
from geogate.errors import EventError

REQUEST = {
    "type": "request",
    "ts": "2024-07-01T12:00:00+02:00",
    "account": "acct-1",
    "ip": "203.0.113.9",
    "forwarded": "198.51.100.7, unknown, 10.0.0.1",
    "accept_language": "zh-CN,zh;q=0.9",
    "user_agent": "sdk/1",
    "tenant": "t-42",
}


def test_request_fields_are_typed_and_unknown_fields_kept() -> None:
    e = parse_json_line(json.dumps(REQUEST))
    assert e.kind is EventKind.REQUEST
    assert e.ts == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    assert e.forwarded == ("198.51.100.7", "10.0.0.1")  # "unknown" is legal in XFF, not an address
    assert e.extra == {"tenant": "t-42"}
    assert json.loads(e.record)["tenant"] == "t-42"


def test_id_is_explicit_or_a_stable_hash_of_the_line() -> None:
    line = json.dumps(REQUEST)
    assert parse_json_line(line).id == parse_json_line(line).id
    assert (
        parse_json_line(line).id != parse_json_line(json.dumps(REQUEST | {"ip": "203.0.113.10"})).id
    )
    assert parse_json_line(json.dumps(REQUEST | {"id": "evt-1"})).id == "evt-1"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"type": "request", "ts": "2024-07-01T00:00:00Z", "account": "a"}, "ip"),
        (REQUEST | {"ip": "300.1.1.1"}, "ip"),
        (REQUEST | {"ts": "2024-07-01"}, "ts"),
        (REQUEST | {"ts": "2024-07-01T00:00:00"}, "ts"),  # no offset
        (REQUEST | {"type": "click"}, "type"),
        (REQUEST | {"account": ""}, "account"),
        (REQUEST | {"account": ["a"]}, "account"),
        (
            {"type": "payment", "ts": "2024-07-01T00:00:00Z", "account": "a", "card_bin": "12ab"},
            "card_bin",
        ),
        (
            {
                "type": "payment",
                "ts": "2024-07-01T00:00:00Z",
                "account": "a",
                "card_country": "CHN",
            },
            "card_country",
        ),
        (
            {"type": "payment", "ts": "2024-07-01T00:00:00Z", "account": "a", "amount": "lots"},
            "amount",
        ),
        (
            {"type": "appeal", "ts": "2024-07-01T00:00:00Z", "account": "a", "outcome": "maybe"},
            "outcome",
        ),
        (
            {
                "type": "exemption",
                "ts": "2024-07-01T00:00:00Z",
                "account": "a",
                "revoke": "perhaps",
            },
            "revoke",
        ),
    ],
)
def test_malformed_fields_are_named(record: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as info:
        parse_record(record, source="events.jsonl", line=7)
    assert info.value.field == field
    assert info.value.line == 7
    assert str(info.value).startswith(f"events.jsonl:7: {field}:")


def test_json_lines_file_rejects_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(REQUEST) + "\n"
        "\n"
        "# a comment\n"
        "{not json\n"
        "[1, 2]\n"
        + json.dumps(REQUEST | {"ip": "nope"})
        + "\n"
        + json.dumps(REQUEST | {"account": "b"})
        + "\n"
    )
    items = list(read_events(path))
    events = [i for i in items if isinstance(i, Event)]
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert [e.account for e in events] == ["acct-1", "b"]
    assert [(r.error.line, r.error.field) for r in rejected] == [(4, None), (5, None), (6, "ip")]
    assert json.loads(rejected[2].to_json())["raw"] == json.dumps(REQUEST | {"ip": "nope"})


def test_csv_and_parquet_give_the_same_events(tmp_path: Path) -> None:
    rows = [
        {
            "type": "request",
            "ts": "2024-07-01T00:00:00Z",
            "account": "a",
            "ip": "203.0.113.1",
            "tenant": "x",
        },
        {
            "type": "payment",
            "ts": "2024-07-01T01:00:00Z",
            "account": "a",
            "card_country": "cn",
            "amount": "9.5",
        },
    ]
    csv_path = tmp_path / "events.csv"
    header = ["type", "ts", "account", "ip", "card_country", "amount", "tenant"]
    csv_path.write_text(
        ",".join(header)
        + "\n"
        + "\n".join(",".join(str(r.get(h, "")) for h in header) for r in rows)
        + "\n"
    )
    pq_path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist([{h: r.get(h) for h in header} for r in rows]), pq_path)
    for path in (csv_path, pq_path):
        events = [i for i in read_events(path) if isinstance(i, Event)]
        assert [e.kind for e in events] == [EventKind.REQUEST, EventKind.PAYMENT], path
        assert events[0].extra == {"tenant": "x"}
        assert events[1].card_country == "CN"
        assert events[1].amount == 9.5


def test_parquet_timestamps_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ts.parquet"
    table = pa.table(
        {
            "type": ["signup"],
            "ts": pa.array([datetime(2024, 7, 1, 3, 0, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "account": ["a"],
            "ip": ["203.0.113.5"],
        }
    )
    pq.write_table(table, path)
    [event] = list(read_events(path))
    assert isinstance(event, Event)
    assert event.ts == datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def test_missing_file_and_unknown_type_are_errors(tmp_path: Path) -> None:
    with pytest.raises(EventError, match="no such file"):
        list(read_events(tmp_path / "nope.jsonl"))
    odd = tmp_path / "events.xml"
    odd.write_text("<x/>")
    with pytest.raises(EventError, match="unknown file type"):
        list(read_events(odd))


def test_http_payload_accepts_an_array_or_json_lines() -> None:
    items = read_json_payload(json.dumps([REQUEST, {"type": "nope"}, 3]))
    assert [type(i).__name__ for i in items] == ["Event", "Rejected", "Rejected"]
    assert len(read_json_payload(json.dumps(REQUEST) + "\n" + json.dumps(REQUEST))) == 2


def test_overlong_lines_are_rejected_before_parsing() -> None:
    with pytest.raises(EventError, match="longer than"):
        parse_json_line('{"x": "' + "a" * 70_000 + '"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
fields = st.sampled_from(
    [
        "type",
        "ts",
        "account",
        "ip",
        "forwarded",
        "card_bin",
        "card_country",
        "amount",
        "currency",
        "outcome",
        "revoke",
    ]
)


@given(
    st.dictionaries(
        fields,
        json_values | st.sampled_from(["request", "payment", "signup", "appeal", "exemption"]),
    )
)
def test_any_record_parses_or_raises_event_error(record: dict[str, object]) -> None:
    """Hostile input never escapes as anything but EventError."""
    error: EventError | None = None
    try:
        event = parse_record(record, source="fuzz", line=1)
    except EventError as exc:
        error = exc
    if error is not None:
        assert error.source == "fuzz"
    else:
        assert event.account
        assert event.ts.tzinfo is not None


request_records = st.fixed_dictionaries(
    {
        "type": st.just("request"),
        "ts": st.sampled_from(
            [
                "2024-07-01T12:00:00Z",
                "2024-07-01T12:00:00+08:00",
                "2024-07-01T12:00:00.5-05:30",
                "2024-07-01 12:00:00Z",
                "2024-07-01T12:00:00",
            ]
        ),
        "account": st.sampled_from(["a", " a", "acct-1", "x" * 257]),
        "ip": st.sampled_from(
            ["203.0.113.9", "203.0.113.09", "::ffff:203.0.113.9", "2001:db8::1", "nope"]
        ),
    },
    optional={
        "accept_language": st.none() | st.text(max_size=5) | st.integers(),
        "user_agent": st.none() | st.text(max_size=5),
        "path": st.text(max_size=5),
        "org": st.none() | st.text(max_size=3),
        "tenant": st.text(max_size=3),
    },
)


@given(request_records)
def test_fast_request_path_agrees_with_the_general_parser(record: dict[str, object]) -> None:
    """Common request lines take a shortcut; it must give exactly what the general path gives."""
    text = json.dumps(record)
    general: Event | EventError
    try:
        general = parse_record(record, source="s", line=1)  # no text: never the shortcut
    except EventError as exc:
        general = exc
    fast: Event | EventError
    try:
        fast = parse_record(record, source="s", line=1, text=text)
    except EventError as exc:
        fast = exc
    if isinstance(general, EventError):
        assert isinstance(fast, EventError)
        assert (fast.field, fast.line) == (general.field, general.line)
    else:
        assert isinstance(fast, Event)
        # Same event; only the id and record text differ (hashed from different texts).
        assert fast._replace(id="", record="") == general._replace(id="", record="")
