"""Account events: the typed :class:`Event` value and the JSON Lines / CSV / Parquet readers.

Formats are documented in ``docs/events.md``. Parsing is strict about the fields geogate uses
(a malformed one raises :class:`EventError` naming source, line and field) and keeps every other
field untouched in :attr:`Event.extra`. An event's id is its ``id`` field when given, else a
stable hash of the line (JSON Lines) or of the record (CSV, Parquet), so that re-reading the same
file never counts an event twice.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import orjson

from geogate.client_ip import parse_ip
from geogate.clock import EARLIEST_INSTANT, LATEST_INSTANT
from geogate.errors import ClientIPError, EventError
from geogate.intel.addresses import parse_address
from geogate.json_limits import MAX_JSON_DEPTH, loads_bounded

MAX_LINE_CHARS: Final = 65_536
"""Longest accepted event line (JSON Lines) or record; longer ones are rejected unparsed."""
MAX_ACCOUNT_CHARS: Final = 256
MAX_FORWARDED_HOPS: Final = 32
MAX_NOTE_CHARS: Final = 4096
"""Longest ``note`` (and other free text without its own limit) kept from an event."""
MAX_AMOUNT: Final = 1e15
"""Largest absolute payment ``amount`` accepted; a larger one is a malformed record."""
EARLIEST_TS: Final = EARLIEST_INSTANT
"""Earliest event time accepted (inclusive)."""
LATEST_TS: Final = LATEST_INSTANT
"""Event times must be before this: years 1970 to 2100 are accepted, others are rejected."""


class EventKind(enum.StrEnum):
    """The five event types (the ``type`` field)."""

    REQUEST = "request"
    PAYMENT = "payment"
    SIGNUP = "signup"
    APPEAL = "appeal"
    EXEMPTION = "exemption"


_KNOWN: Final = frozenset(
    {
        "id",
        "type",
        "ts",
        "account",
        "org",
        "api_key",
        "ip",
        "forwarded",
        "accept_language",
        "user_agent",
        "path",
        "card_bin",
        "card_country",
        "billing_country",
        "amount",
        "currency",
        "phone_country",
        "email",
        "operator",
        "note",
        "outcome",
        "revoke",
    }
)
_NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})
_APPEAL_OUTCOMES: Final = frozenset({"filed", "reinstated", "rejected"})
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_BIN = re.compile(r"^[0-9]{6,8}$")


class Event(NamedTuple):
    """One parsed event. Fields that do not apply to the event's kind are None.

    ``ts`` is an aware UTC datetime. ``forwarded`` holds the X-Forwarded-For chain as parsed
    addresses (tokens that are not addresses, such as ``unknown``, are dropped). ``extra`` keeps
    unknown fields; ``record`` is the original record as JSON text (what the store keeps).

    ``repeat`` and ``last_epoch`` are never read from input: a request event built by the log
    scan's account preview stands for ``repeat`` requests identical in everything but their
    time, from ``ts`` to ``last_epoch`` (Unix seconds, in time order, all in the UTC hour of
    ``ts``), and counts in the evidence exactly as that many events would. Parsed events have
    ``repeat`` 1 and ``last_epoch`` None.

    Immutable like the frozen dataclasses elsewhere, but a NamedTuple: a frozen dataclass of
    this many fields costs about 4 µs to build, a fifth of the per-event budget at 50,000
    events/s; a NamedTuple under 1 µs.
    """

    id: str
    kind: EventKind
    ts: datetime
    account: str
    ip: str | None = None
    forwarded: tuple[str, ...] = ()
    org: str | None = None
    api_key: str | None = None
    accept_language: str | None = None
    user_agent: str | None = None
    path: str | None = None
    card_bin: str | None = None
    card_country: str | None = None
    billing_country: str | None = None
    amount: float | None = None
    currency: str | None = None
    phone_country: str | None = None
    email: str | None = None
    operator: str | None = None
    note: str | None = None
    outcome: str | None = None
    revoke: bool = False
    extra: Mapping[str, Any] = _NO_EXTRA
    record: str = ""
    repeat: int = 1
    last_epoch: int | None = None

    @property
    def epoch(self) -> int:
        """``ts`` as whole seconds since the Unix epoch."""
        return int(self.ts.timestamp())


def _fail(message: str, source: str | None, line: int | None, fld: str | None) -> EventError:
    return EventError(message, source=source, line=line, field=fld)


def _text(
    rec: Mapping[str, Any],
    key: str,
    source: str | None,
    line: int | None,
    *,
    required: bool = False,
    max_len: int = MAX_NOTE_CHARS,
) -> str | None:
    value = rec.get(key)
    if value is None or value == "":
        if required:
            raise _fail("missing", source, line, key)
        return None
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        else:
            raise _fail("must be a string", source, line, key)
    value = value.strip()
    if required and not value:
        raise _fail("missing", source, line, key)
    if len(value) > max_len:
        raise _fail(f"longer than {max_len} characters", source, line, key)
    return value or None


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp (``2024-07-01T12:00:00Z`` or with an offset) as aware UTC.

    A ``datetime`` (from Parquet) is accepted; a naive one is taken as UTC. Times outside the
    years 1970 to 2100 (:data:`EARLIEST_TS`, :data:`LATEST_TS`) are rejected. Raises ValueError.
    """
    if isinstance(value, datetime):
        try:
            ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is outside the years 1970 to 2100") from None
        return _in_range(ts, value.isoformat())
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an RFC 3339 timestamp such as 2024-07-01T12:00:00Z")
    text = value.strip()
    if "T" not in text and "t" not in text and " " not in text:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time (date and time are required)")
    try:
        ts = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp") from None
    if ts.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset (add Z for UTC)")
    try:
        utc = ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable instant
        raise ValueError(f"{text!r} is outside the years 1970 to 2100") from None
    return _in_range(utc, repr(text))


def _in_range(ts: datetime, shown: str) -> datetime:
    if not EARLIEST_TS <= ts < LATEST_TS:
        raise ValueError(f"{shown} is outside the years 1970 to 2100")
    return ts


def _country(rec: Mapping[str, Any], key: str, source: str | None, line: int | None) -> str | None:
    value = _text(rec, key, source, line, max_len=8)
    if value is None:
        return None
    if not _COUNTRY.match(value):
        raise _fail(f"{value!r} is not an ISO 3166-1 alpha-2 country code", source, line, key)
    return value.upper()


def _ip(
    rec: Mapping[str, Any], key: str, source: str | None, line: int | None, *, required: bool
) -> str | None:
    value = _text(rec, key, source, line, required=required, max_len=64)
    if value is None:
        return None
    if ":" not in value and parse_address(value) is not None:
        return value  # a valid dotted quad is already canonical (the common case, 7x faster)
    try:
        return str(parse_ip(value))
    except ClientIPError:
        raise _fail(f"{value!r} is not an IP address", source, line, key) from None


def _forwarded(rec: Mapping[str, Any], source: str | None, line: int | None) -> tuple[str, ...]:
    value = rec.get("forwarded")
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        if len(value) > 4096:
            raise _fail("longer than 4096 characters", source, line, "forwarded")
        tokens = [t.strip() for t in value.split(",")]
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        tokens = [t.strip() for t in value]
    else:
        raise _fail(
            "must be a comma-separated string or a list of strings", source, line, "forwarded"
        )
    if len(tokens) > MAX_FORWARDED_HOPS:
        raise _fail(f"more than {MAX_FORWARDED_HOPS} hops", source, line, "forwarded")
    out: list[str] = []
    for token in tokens:
        t = token.strip('"[] ')
        if not t:
            continue
        try:
            out.append(str(parse_ip(t)))
        except ClientIPError:
            continue  # "unknown", obfuscated ids and ports are legal in the header: not evidence
    return tuple(out)


def _amount(rec: Mapping[str, Any], source: str | None, line: int | None) -> float | None:
    value = rec.get("amount")
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _fail("must be a number", source, line, "amount")
    if isinstance(value, str) and len(value) > 64:
        raise _fail("longer than 64 characters", source, line, "amount")
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise _fail(f"{value!r} is not a number", source, line, "amount") from None
    except OverflowError:  # an integer of hundreds of digits
        raise _fail(f"larger than {MAX_AMOUNT:g}", source, line, "amount") from None
    if not math.isfinite(amount):
        raise _fail("must be a finite number", source, line, "amount")
    if abs(amount) > MAX_AMOUNT:
        raise _fail(f"larger than {MAX_AMOUNT:g}", source, line, "amount")
    return amount


def _bool(rec: Mapping[str, Any], key: str, source: str | None, line: int | None) -> bool:
    value = rec.get(key)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    raise _fail("must be true or false", source, line, key)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unencodable(value: object, key: str = "") -> str | None:
    """The (top-level) key of the first string in ``value`` that is not encodable as UTF-8,
    "" for the record itself; None when all are fine. ASCII strings cost one C call each."""
    if isinstance(value, str):
        return key if not value.isascii() and _has_surrogate(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            name = str(k)
            if not name.isascii() and _has_surrogate(name):
                return key or "?"  # never echo the bad name itself
            found = _unencodable(v, key or name)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for item in value:
            found = _unencodable(item, key)
            if found is not None:
                return found
    return None


def content_id(text: str) -> str:
    """The id of an event without an ``id`` field: a BLAKE2b-128 hash of its text, hex."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def parse_record(
    rec: Mapping[str, Any],
    *,
    source: str | None = None,
    line: int | None = None,
    text: str | None = None,
) -> Event:
    """Turn one record (a decoded JSON object or CSV/Parquet row) into an :class:`Event`.

    ``text`` is the record's original text, hashed for the id when the record has no ``id``
    (defaults to the record as canonical JSON). Raises :class:`EventError`.
    """
    bad_key = _unencodable(rec)
    if bad_key is not None:
        # A lone surrogate (a "\ud800" escape, or an invalid UTF-8 byte read from a file)
        # cannot be stored or sent: one such record would fail its whole batch.
        raise _fail("not valid Unicode text (a lone surrogate)", source, line, bad_key or None)
    if text is not None and not text.isascii() and _has_surrogate(text):
        raise _fail("not valid UTF-8 text", source, line, None)
    if rec.get("type") == "request" and text is not None:
        fast = _fast_request(rec, text)
        if fast is not None:
            return fast
    raw_kind = rec.get("type")
    if raw_kind is None or raw_kind == "":
        raise _fail(
            "missing (one of request, payment, signup, appeal, exemption)", source, line, "type"
        )
    try:
        kind = EventKind(str(raw_kind).strip().lower())
    except ValueError:
        raise _fail(
            f"{raw_kind!r} is not one of request, payment, signup, appeal, exemption",
            source,
            line,
            "type",
        ) from None
    try:
        ts = parse_timestamp(rec.get("ts"))
    except ValueError as exc:
        raise _fail(str(exc), source, line, "ts") from None
    account = _text(rec, "account", source, line, required=True, max_len=MAX_ACCOUNT_CHARS)
    if account is None:  # _text raised already; this narrows the type
        raise _fail("missing", source, line, "account")
    explicit_id = _text(rec, "id", source, line, max_len=256)
    record_text = text if text is not None else json.dumps(rec, sort_keys=True, default=str)
    extra = {k: v for k, v in rec.items() if k not in _KNOWN}
    common: dict[str, Any] = {
        "id": explicit_id or content_id(record_text),
        "kind": kind,
        "ts": ts,
        "account": account,
        "extra": MappingProxyType(extra) if extra else _NO_EXTRA,
        "record": record_text,
        "org": _text(rec, "org", source, line, max_len=256),
        "operator": _text(rec, "operator", source, line, max_len=256),
        "note": _text(rec, "note", source, line),
    }
    if kind is EventKind.REQUEST:
        return Event(
            **common,
            ip=_ip(rec, "ip", source, line, required=True),
            forwarded=_forwarded(rec, source, line),
            api_key=_text(rec, "api_key", source, line, max_len=256),
            accept_language=_text(rec, "accept_language", source, line, max_len=512),
            user_agent=_text(rec, "user_agent", source, line, max_len=1024),
            path=_text(rec, "path", source, line, max_len=2048),
        )
    if kind is EventKind.PAYMENT:
        card_bin = _text(rec, "card_bin", source, line, max_len=32)
        if card_bin is not None:
            card_bin = card_bin.replace(" ", "").replace("-", "")
            if not _BIN.match(card_bin):
                raise _fail("must be the first 6 to 8 digits of the card", source, line, "card_bin")
        currency = _text(rec, "currency", source, line, max_len=8)
        if currency is not None and not _CURRENCY.match(currency):
            raise _fail(f"{currency!r} is not an ISO 4217 code", source, line, "currency")
        return Event(
            **common,
            card_bin=card_bin,
            card_country=_country(rec, "card_country", source, line),
            billing_country=_country(rec, "billing_country", source, line),
            amount=_amount(rec, source, line),
            currency=currency.upper() if currency else None,
        )
    if kind is EventKind.SIGNUP:
        return Event(
            **common,
            ip=_ip(rec, "ip", source, line, required=True),
            phone_country=_country(rec, "phone_country", source, line),
            email=_text(rec, "email", source, line, max_len=320),
        )
    if kind is EventKind.APPEAL:
        outcome = (_text(rec, "outcome", source, line, max_len=16) or "filed").lower()
        if outcome not in _APPEAL_OUTCOMES:
            raise _fail("must be filed, reinstated or rejected", source, line, "outcome")
        return Event(**common, outcome=outcome)
    return Event(**common, revoke=_bool(rec, "revoke", source, line))


_FAST_REQUEST_KEYS: Final = frozenset(
    {"id", "type", "ts", "account", "ip", "accept_language", "user_agent", "path", "api_key", "org"}
)
_REQUEST_KIND: Final = EventKind.REQUEST
_make_event = Event._make
# Small memos for the request fast path: real traffic repeats addresses and timestamps
# (whole seconds), and a dict hit costs a fraction of inet_pton or fromisoformat.
_CACHE_LIMIT: Final = 65_536
_GOOD_V4: dict[str, bool] = {}
_TS_CACHE: dict[str, datetime] = {}


def _short_text(value: object, limit: int) -> str | bool | None:
    """A string field as the general path would take it; False when the fast path must not
    decide (not a string, or too long)."""
    if value is None:
        return None
    if type(value) is not str or len(value) > limit:
        return False
    return value.strip() or None


def _fast_request(rec: Mapping[str, Any], text: str) -> Event | None:
    """The common request record, parsed without the general path's per-field calls; None
    when anything is unusual (the general path then parses it, or names what is wrong).

    Returns exactly what the general path would: same fields, same id, same ``record``."""
    if not _FAST_REQUEST_KEYS.issuperset(rec):
        return None
    get = rec.get
    ts_text = get("ts")
    account = get("account")
    ip = get("ip")
    if not (
        type(ts_text) is str
        and type(account) is str
        and type(ip) is str
        and 0 < len(account) <= MAX_ACCOUNT_CHARS
        and account == account.strip()
    ):
        return None
    if ip not in _GOOD_V4:
        if ":" in ip or parse_address(ip) is None:
            return None  # IPv6 is canonicalised by the general path; malformed is rejected
        if len(_GOOD_V4) >= _CACHE_LIMIT:
            _GOOD_V4.clear()
        _GOOD_V4[ip] = True  # a valid dotted quad is already canonical
    ts = _TS_CACHE.get(ts_text)
    if ts is None:
        if len(ts_text) < 20 or ts_text[10] not in "Tt":
            return None
        try:
            ts = datetime.fromisoformat(ts_text)
        except ValueError:
            return None
        if ts.tzinfo is None:
            return None
        if ts.tzinfo is not UTC:
            try:
                ts = ts.astimezone(UTC)
            except OverflowError:
                return None  # the general path names the problem
        if not EARLIEST_TS <= ts < LATEST_TS:
            return None
        if len(_TS_CACHE) >= _CACHE_LIMIT:
            _TS_CACHE.clear()
        _TS_CACHE[ts_text] = ts
    lang = _short_text(get("accept_language"), 512)
    agent = _short_text(get("user_agent"), 1024)
    path = _short_text(get("path"), 2048)
    api_key = _short_text(get("api_key"), 256)
    org = _short_text(get("org"), 256)
    explicit = _short_text(get("id"), 256)
    if lang is False or agent is False or path is False or api_key is False or org is False:
        return None
    if explicit is False:
        return None
    # Positional, in field order: Event(...) with keywords costs about three times more.
    return _make_event(
        (
            explicit or content_id(text),
            _REQUEST_KIND,
            ts,
            account,
            ip,
            (),  # forwarded
            org,
            api_key,
            lang,
            agent,
            path,
            None,  # card_bin
            None,  # card_country
            None,  # billing_country
            None,  # amount
            None,  # currency
            None,  # phone_country
            None,  # email
            None,  # operator
            None,  # note
            None,  # outcome
            False,  # revoke
            _NO_EXTRA,
            text,
            1,  # repeat
            None,  # last_epoch
        )
    )


def _fast_line(text: str) -> Event | None:
    """A JSON Lines line holding a common request, decoded by orjson; None otherwise.

    orjson is only trusted where its result provably equals the standard decoder's: the fast
    path accepts nothing but short strings in known fields, whereas orjson differs on NaN,
    lone surrogates and integers beyond 64 bits. Everything else (other kinds, unknown fields,
    anything odd or malformed) goes through :mod:`json` as before, with its error messages.
    """
    try:
        rec = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(rec) is dict and rec.get("type") == "request":
        return _fast_request(rec, text)
    return None


def parse_json_line(text: str, *, source: str | None = None, line: int | None = None) -> Event:
    """Parse one JSON Lines line; raises :class:`EventError`."""
    if len(text) > MAX_LINE_CHARS:
        raise _fail(f"line longer than {MAX_LINE_CHARS} characters", source, line, None)
    fast = _fast_line(text.strip())
    if fast is not None:
        return fast
    return _parse_json_line_general(text, source=source, line=line)


def _parse_json_line_general(text: str, *, source: str | None, line: int | None) -> Event:
    try:
        rec = loads_bounded(text)
    except ValueError as exc:  # malformed, nested too deeply, an integer of 5,000 digits ...
        raise _fail(f"invalid JSON: {exc}", source, line, None) from None
    if not isinstance(rec, dict):
        raise _fail("must be a JSON object", source, line, None)
    return parse_record(rec, source=source, line=line, text=text.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A line that could not be parsed: the error and the original text (for the reject file)."""

    error: EventError
    text: str

    def to_json(self) -> str:
        """One JSON Lines line for the reject file (always valid UTF-8: a line holding invalid
        bytes is written with ASCII escapes)."""
        record = {
            "source": self.error.source,
            "line": self.error.line,
            "field": self.error.field,
            "error": str(self.error),
            "raw": self.text,
        }
        text = json.dumps(record, ensure_ascii=False)
        return json.dumps(record) if _has_surrogate(text) else text


ReadItem = Event | Rejected


def read_json_lines(lines: Iterable[str], *, source: str) -> Iterator[ReadItem]:
    """Events (or rejections) from JSON Lines text; blank lines and ``#`` comments are skipped."""
    fast_line = _fast_line
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] == "#":
            continue
        try:
            if len(stripped) > MAX_LINE_CHARS:
                raise _fail(f"line longer than {MAX_LINE_CHARS} characters", source, number, None)
            event = fast_line(stripped)
            yield (
                event
                if event is not None
                else _parse_json_line_general(stripped, source=source, line=number)
            )
        except EventError as exc:
            yield Rejected(error=exc, text=raw.rstrip("\r\n")[:MAX_LINE_CHARS])
        except Exception as exc:  # one line must never stop the feed
            yield Rejected(
                error=_unexpected(exc, source, number), text=raw.rstrip("\r\n")[:MAX_LINE_CHARS]
            )


def _unexpected(exc: Exception, source: str | None, line: int | None) -> EventError:
    """An error no check above anticipated, as a rejection of this line only: a bad line is
    rejected, never a reason to stop the whole feed."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return _fail(f"cannot parse ({type(exc).__name__}: {detail})", source, line, None)


def read_csv(stream: Iterable[str], *, source: str) -> Iterator[ReadItem]:
    """Events from CSV with a header row naming the fields; empty cells are absent fields."""
    reader = csv.DictReader(stream)
    try:
        if reader.fieldnames is None:
            return
    except csv.Error as exc:
        raise EventError(f"unreadable CSV header: {exc}", source=source, line=1) from None
    number = 1
    while True:
        before = reader.reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a malformed row (stray quote, oversized field ...): only it
            number = reader.reader.line_num  # DictReader's own count lags on errors
            err = _fail(f"malformed CSV row: {exc}", source, number, None)
            yield Rejected(error=err, text="")
            if number == before:  # the reader cannot move past it
                return
            continue
        number = reader.line_num
        rec = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if None in row:
            err = _fail("more cells than header fields", source, number, None)
            yield Rejected(error=err, text=json.dumps(row, default=str))
            continue
        text = json.dumps(rec, sort_keys=True)
        try:
            yield parse_record(rec, source=source, line=number, text=text)
        except EventError as exc:
            yield Rejected(error=exc, text=text)
        except Exception as exc:  # one row must never stop the feed
            yield Rejected(error=_unexpected(exc, source, number), text=text)


def read_parquet(path: Path, *, source: str, batch_rows: int = 65_536) -> Iterator[ReadItem]:
    """Events from a Parquet file, one row per event (line numbers are 1-based row numbers)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - only this format needs pyarrow

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise EventError(f"not a readable Parquet file: {exc}", source=source) from exc
    number = 0
    batches = pf.iter_batches(batch_size=batch_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # pyarrow's own errors for a corrupt row group
            raise EventError(
                f"unreadable Parquet data after row {number}: {str(exc).splitlines()[0][:200]}",
                source=source,
            ) from None
        try:
            rows = batch.to_pylist()
        except (ValueError, OverflowError, ArithmeticError):
            # A value Python cannot hold (a timestamp past year 9999 ...): convert row by row
            # so that only the rows holding one are rejected.
            rows = _rows_one_by_one(batch, source, number)
        for row in rows:
            number += 1
            if isinstance(row, Rejected):
                yield row
                continue
            rec = {k: v for k, v in row.items() if v is not None and v != ""}
            text = json.dumps(rec, sort_keys=True, default=_json_default)
            try:
                yield parse_record(rec, source=source, line=number, text=text)
            except EventError as exc:
                yield Rejected(error=exc, text=text)
            except Exception as exc:  # one row must never stop the feed
                yield Rejected(error=_unexpected(exc, source, number), text=text)


def _rows_one_by_one(batch: Any, source: str, before: int) -> list[dict[str, Any] | Rejected]:
    rows: list[dict[str, Any] | Rejected] = []
    for i in range(batch.num_rows):
        try:
            rows.extend(batch.slice(i, 1).to_pylist())
        except (ValueError, OverflowError, ArithmeticError) as exc:
            error = _fail(f"a value out of range ({exc})", source, before + i + 1, None)
            rows.append(Rejected(error=error, text=""))
    return rows


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def read_events(path: str | Path) -> Iterator[ReadItem]:
    """Events from a file, by extension: ``.jsonl``/``.ndjson``/``.json`` (JSON Lines),
    ``.csv``, ``.parquet``. Raises :class:`EventError` when the file cannot be opened."""
    p = Path(path)
    source = str(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        if not p.is_file():
            raise EventError("no such file", source=source)
        yield from read_parquet(p, source=source)
        return
    try:
        handle = p.open(encoding="utf-8", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise EventError("no such file", source=source) from None
    except IsADirectoryError:
        raise EventError("is a directory", source=source) from None
    except OSError as exc:
        raise EventError(f"cannot read: {exc.strerror}", source=source) from None
    with handle:
        if suffix == ".csv":
            yield from read_csv(handle, source=source)
        elif suffix in (".jsonl", ".ndjson", ".json", ".log", ".txt", ""):
            yield from read_json_lines(handle, source=source)
        else:
            raise EventError(
                f"unknown file type {suffix!r} (expected .jsonl, .csv or .parquet)", source=source
            )


class _Oversized:
    """An integer literal too long for ``int()`` (over the interpreter's digit limit)."""

    __slots__ = ("digits",)

    def __init__(self, text: str) -> None:
        self.digits = len(text)


class _OversizedIntError(ValueError):
    pass


def _int_or_oversized(text: str) -> int | _Oversized:
    try:
        return int(text)
    except ValueError:
        return _Oversized(text)


def _refuse_oversized(value: object) -> object:
    if isinstance(value, _Oversized):
        raise _OversizedIntError(f"an integer of {value.digits} digits")
    return str(value)


def read_json_payload(body: str, *, source: str = "<request>") -> list[ReadItem]:
    """Events from a request body: JSON Lines, or one JSON array of event objects."""
    stripped = body.lstrip()
    if stripped.startswith("["):
        try:
            # One array level more than a line may nest: the array holding the records. An
            # integer too long to convert rejects its record only, as it rejects its line.
            records = loads_bounded(
                stripped, max_depth=MAX_JSON_DEPTH + 1, parse_int=_int_or_oversized
            )
        except ValueError as exc:
            raise EventError(f"invalid JSON: {exc}", source=source) from None
        if not isinstance(records, list):
            raise EventError("invalid JSON: expected an array of event objects", source=source)
        out: list[ReadItem] = []
        for i, rec in enumerate(records, start=1):
            try:
                text = json.dumps(rec, sort_keys=True, default=_refuse_oversized)
            except _OversizedIntError as exc:
                error = _fail(f"invalid JSON: {exc}", source, i, None)
                out.append(Rejected(error=error, text=json.dumps(rec, default=repr)[:200]))
                continue
            if not isinstance(rec, dict):
                out.append(
                    Rejected(error=_fail("must be a JSON object", source, i, None), text=text)
                )
                continue
            if len(text) > MAX_LINE_CHARS:  # the same bound as a JSON Lines line
                error = _fail(f"record longer than {MAX_LINE_CHARS} characters", source, i, None)
                out.append(Rejected(error=error, text=text[:MAX_LINE_CHARS]))
                continue
            try:
                out.append(parse_record(rec, source=source, line=i, text=text))
            except EventError as exc:
                out.append(Rejected(error=exc, text=text))
            except Exception as exc:  # one record must never stop the batch
                out.append(Rejected(error=_unexpected(exc, source, i), text=text))
        return out
    return list(read_json_lines(io.StringIO(body), source=source))
