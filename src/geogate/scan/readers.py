"""Access-log readers: files, directories and globs in, normalised Arrow record batches out.

Every reader yields batches of :data:`RAW_SCHEMA` — when the request arrived, the address of
the connection (``peer``), the forwarding headers as logged, and who made it — whatever the
input looked like: JSON Lines (geogate's event format, the JSON access-log formats of the
nginx and Envoy configurations in ``docs/scan.md``, or any field names mapped with
``--field``), CSV, Parquet, or nginx ``combined`` with ``$http_x_forwarded_for`` appended.
Text inputs may be plain, gzip or zstd (recognised by their first bytes, not their name).

A line that cannot be read is counted and a few are kept as samples (:class:`ReadStats`); it
never stops the scan. Memory stays bounded: text is read in blocks of a few MiB and Parquet
row group by row group.
"""

from __future__ import annotations

import csv
import glob
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from geogate.errors import ConfigError

RAW_SCHEMA: Final = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("peer", pa.string()),
        ("xff", pa.string()),
        ("forwarded", pa.string()),
        ("account", pa.string()),
        ("org", pa.string()),
        ("user_agent", pa.string()),
        ("accept_language", pa.string()),
        ("api_key", pa.string()),
    ]
)
"""Columns of every batch a reader yields. ``peer`` is the address of the connection (or the
client address the platform already resolved); ``xff``/``forwarded`` are the raw headers."""

FIELDS: Final = tuple(RAW_SCHEMA.names)

#: Field names recognised without ``--field``, first match wins. They cover geogate's event
#: format (``ts``, ``ip``, ``account``), the JSON access-log formats in docs/scan.md for nginx
#: (``$realip_remote_addr`` as ``peer``) and Envoy (``downstream_direct_remote_address``), and
#: common names of other log shippers.
ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "ts": ("ts", "time", "timestamp", "time_iso8601", "start_time", "@timestamp", "time_local"),
    "peer": (
        "peer",
        "realip_remote_addr",
        "downstream_direct_remote_address",
        "ip",
        "remote_addr",
        "client_ip",
        "downstream_remote_address",
    ),
    "xff": ("xff", "x_forwarded_for", "http_x_forwarded_for", "forwarded_for"),
    "forwarded": ("http_forwarded", "forwarded_header"),
    "account": ("account", "http_x_geogate_account", "x_geogate_account", "account_id", "user"),
    "org": ("org", "organization", "org_id", "http_x_geogate_org"),
    "user_agent": ("user_agent", "http_user_agent", "ua"),
    "accept_language": ("accept_language", "http_accept_language"),
    "api_key": ("api_key",),
}

CLIENT_HINTS: Final = frozenset({"user_agent", "accept_language", "api_key"})
"""Fields only the account preview needs (read when ``ReadOptions.client_hints``)."""

FORMATS: Final = ("auto", "jsonl", "csv", "parquet", "nginx")
_TEXT_EXT: Final = {".jsonl", ".ndjson", ".json", ".log", ".txt", ".csv", ".access"}
_BLOCK_BYTES: Final = 1 << 20
_JSON_BLOCK_BYTES: Final = 8 << 20
MAX_LINE_CHARS: Final = 65_536
_SAMPLES: Final = 20

# nginx `combined` with "$http_x_forwarded_for" (optionally more quoted fields) appended.
_COMBINED = re.compile(
    rb'^(\S+) \S+ (\S+) \[([^\]]+)\] "(?:[^"\\]|\\.)*" \d{3} (?:\d+|-) '
    rb'"(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?'
)


@dataclass
class ReadStats:
    """What reading saw: malformed lines (a count and the first few, with where they were),
    records skipped as not requests, and input bytes consumed (for the progress bar)."""

    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # well-formed records that are not requests (payment, signup ... events)
    bytes_read: int = 0  # of the file being read, compressed size

    def add(self, source: str, line: int, error: str, raw: bytes | str = b"") -> None:
        """Count one malformed line and keep it as a sample while there are few."""
        self.count += 1
        if len(self.samples) < _SAMPLES:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            self.samples.append({"source": source, "line": line, "error": error, "raw": text[:300]})

    def merge(self, other: ReadStats) -> None:
        """Add another collector's counts and samples (for parallel engines)."""
        self.count += other.count
        self.skipped += other.skipped
        self.samples.extend(other.samples[: max(0, _SAMPLES - len(self.samples))])


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadOptions:
    """How to read inputs: the format (``auto`` detects it per file), field-name overrides
    (canonical name -> name in the log), and the batch size in rows."""

    format: str = "auto"
    fields: Mapping[str, str] = field(default_factory=dict)
    batch_rows: int = 1_048_576
    #: Read the user agent, Accept-Language and API key (only the account preview needs them;
    #: inputs skip the columns otherwise).
    client_hints: bool = True

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(
                f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}", key="--format"
            )
        for name in self.fields:
            if name not in FIELDS:
                raise ConfigError(
                    f"unknown field {name!r}; fields are {', '.join(FIELDS)}", key="--field"
                )


def parse_field_options(items: Sequence[str]) -> dict[str, str]:
    """``["peer=remote", "ts=when"]`` -> ``{"peer": "remote", "ts": "when"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise ConfigError(f"{item!r} is not FIELD=NAME", key="--field")
        out[name.strip()] = column.strip()
    return out


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Files named by paths, directories (all files below, sorted) and globs.

    Raises :class:`ConfigError` for a name that matches nothing.
    """
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            )
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(glob.glob(spec, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise ConfigError("no such file, directory or matching glob", path=spec)
            found.extend(files)
    return found


def _compression(path: Path) -> str | None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


def _stem(path: Path) -> Path:
    """The name without a compression suffix (``a.jsonl.gz`` -> ``a.jsonl``)."""
    return path.with_suffix("") if path.suffix in {".gz", ".zst", ".zstd"} else path


def detect_format(path: Path) -> str:
    """``parquet``, ``csv``, ``jsonl`` or ``nginx`` from the name, else from the first line."""
    if path.suffix == ".parquet":
        return "parquet"
    with path.open("rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    suffix = _stem(path).suffix
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    for line in _lines(path, limit_blocks=1):
        text = line.strip()
        if text and not text.startswith(b"#"):
            return "jsonl" if text.startswith(b"{") else "nginx"
    return "jsonl"


def _lines(
    path: Path, *, limit_blocks: int | None = None, stats: ReadStats | None = None
) -> Iterator[bytes]:
    """Lines of a (possibly compressed) text file, without their end of line."""
    codec = _compression(path)
    with path.open("rb") as raw:
        stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec) if codec else None
        tail = b""
        blocks = 0
        skipping = False
        while True:
            try:
                block = stream.read(_BLOCK_BYTES) if stream is not None else raw.read(_BLOCK_BYTES)
            except (OSError, pa.ArrowInvalid) as exc:
                # A truncated or corrupt gzip/zstd stream: keep what was read before it.
                if stats is not None:
                    stats.add(str(path), 0, f"read stopped: {exc}")
                break
            if not block:
                break
            if stats is not None:
                stats.bytes_read = raw.tell()
            blocks += 1
            if skipping:
                block, skipping = _skip_line(block)
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            yield from lines
            if len(tail) > MAX_LINE_CHARS:  # too long already: its start stands for it
                yield tail[: MAX_LINE_CHARS + 1]
                tail, skipping = b"", True
            if limit_blocks is not None and blocks >= limit_blocks:
                return
        if tail:
            yield tail


def _skip_line(data: bytes) -> tuple[bytes, bool]:
    """``data`` after the end of the line being skipped, and whether it is still skipped."""
    end = data.find(b"\n")
    return (b"", True) if end < 0 else (data[end + 1 :], False)


class _Columns:
    """Column builders for one batch of :data:`RAW_SCHEMA` (timestamps still as text/numbers)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in FIELDS}
        self._lists = tuple(self.cols.items())
        self.lines: list[int] = []

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, line: int, values: Mapping[str, Any]) -> None:
        get = values.get
        for name, column in self._lists:
            column.append(get(name))
        self.lines.append(line)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value not in {"", "-"} else None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or None
    return str(value)


def _parse_ts_values(values: Sequence[Any], fmt: str | None) -> tuple[pa.Array, list[int]]:
    """Timestamps from text (RFC 3339, or ``fmt`` for strptime) or epoch seconds.

    Returns the array (null where unreadable) and the positions that were unreadable.
    """
    if all(isinstance(v, str) for v in values):
        texts = pa.array(values, pa.string())
        try:
            if fmt is None:
                return pc.cast(texts, pa.timestamp("us", tz="UTC")), []
            parsed = pc.strptime(texts, format=fmt, unit="us", error_is_null=False)
            return pc.cast(parsed, pa.timestamp("us", tz="UTC")), []
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some value is malformed: find it one by one below
    out: list[datetime | None] = []
    bad: list[int] = []
    for i, v in enumerate(values):
        out.append(_one_ts(v, fmt))
        if out[-1] is None:
            bad.append(i)
    return pa.array(out, pa.timestamp("us", tz="UTC")), bad


def _one_ts(value: Any, fmt: str | None) -> datetime | None:
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        text = str(value).strip()
        if fmt is not None:
            parsed = datetime.strptime(text, fmt)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return None  # a time without an offset is ambiguous: rejected, like events
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _finish(
    cols: _Columns, source: str, malformed: ReadStats, *, ts_format: str | None = None
) -> pa.RecordBatch | None:
    """Turn collected values into a RAW_SCHEMA batch; rows without a readable time or peer
    are counted as malformed."""
    if not len(cols):
        return None
    ts, bad = _parse_ts_values(cols.cols["ts"], ts_format)
    arrays = [ts] + [pa.array(cols.cols[n], pa.string()) for n in FIELDS[1:]]
    batch = pa.RecordBatch.from_arrays(arrays, schema=RAW_SCHEMA)
    for i in bad:
        malformed.add(source, cols.lines[i], f"ts: unreadable time {cols.cols['ts'][i]!r}")
    if bad:
        keep = pc.is_valid(batch.column(0))
        batch = batch.filter(keep)
    return batch


def _resolve_names(names: Sequence[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Canonical field -> column name present in ``names``."""
    present = set(names)
    out: dict[str, str] = {}
    for canon in FIELDS:
        if canon in overrides:
            out[canon] = overrides[canon]
            continue
        for alias in ALIASES[canon]:
            if alias in present:
                out[canon] = alias
                break
    return out


def _blocks(path: Path, *, stats: ReadStats, block_bytes: int) -> Iterator[bytes]:
    """A (possibly compressed) text file in blocks of whole lines (the last block may end
    without a newline). A truncated or corrupt stream ends the file where it breaks; what
    was read before (in steps of 1 MiB) is kept."""
    codec = _compression(path)
    with path.open("rb") as raw:
        stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec) if codec else None
        parts: list[bytes] = []
        size = 0
        skipping = False
        while True:
            try:
                chunk = stream.read(_BLOCK_BYTES) if stream is not None else raw.read(_BLOCK_BYTES)
            except (OSError, pa.ArrowInvalid) as exc:
                stats.add(str(path), 0, f"read stopped: {exc}")
                break
            if not chunk:
                break
            stats.bytes_read = raw.tell()
            if skipping:
                chunk, skipping = _skip_line(chunk)
            parts.append(chunk)
            size += len(chunk)
            if size < block_bytes:
                continue
            block = b"".join(parts)
            cut = block.rfind(b"\n")
            if cut < 0:
                # A block without a line end: the line is far too long. Its start stands for
                # it (counted as over-long), the rest is skipped: memory stays bounded.
                yield block[: MAX_LINE_CHARS + 1] + b"\n"
                parts, size, skipping = [], 0, True
                continue
            yield block[: cut + 1]
            parts = [block[cut + 1 :]]
            size = len(parts[0])
        if size:
            yield b"".join(parts)


def _json_names(opts: ReadOptions) -> dict[str, tuple[str, ...]]:
    """Canonical field -> the JSON names it is read from, in order of preference."""
    skip = frozenset() if opts.client_hints else CLIENT_HINTS
    return {
        canon: (opts.fields[canon],) if canon in opts.fields else ALIASES[canon]
        for canon in FIELDS
        if canon not in skip
    }


def _lines_start_objects(block: bytes, lines: int) -> bool:
    """Whether every line of ``block`` starts with ``{`` (no blank line, no comment, no
    leading whitespace): then Arrow's rows are its lines when their counts agree."""
    return block[:1] == b"{" and block.count(b"\n{") == lines - 1


def _has_long_line(block: bytes) -> bool:
    """Whether some line of ``block`` may be longer than MAX_LINE_CHARS: true whenever one
    is (such a line covers a whole window of half that size without a newline), sometimes
    when none is (then the exact line-by-line reader decides)."""
    window = MAX_LINE_CHARS // 2
    return any(block.find(b"\n", i, i + window) < 0 for i in range(0, len(block), window))


_JSON_TYPES: Final = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


class _JsonBlocks:
    """JSON Lines blocks parsed by Arrow's JSON reader.

    The fields of a block's first line are declared (mapped fields as strings, so that Arrow
    does not turn a time into a timestamp of its own; others with the first line's type) and
    any other field is an error: the fast path for logs of one shape. A block whose lines
    differ is parsed again with the other fields inferred, so that other names of a field
    are still read; a mapped field that is not text, or a line that is not a JSON object,
    sends the block to the line-by-line reader, which reads it exactly.
    """

    def __init__(self, opts: ReadOptions) -> None:
        self.names = _json_names(opts)
        self.mapped = frozenset(["type", *(n for names in self.names.values() for n in names)])
        self.read = pajson.ReadOptions(block_size=4 << 20)
        self._parse: dict[tuple[tuple[str, str], ...], tuple[pajson.ParseOptions, ...]] = {}

    def _options(self, first_line: bytes) -> tuple[pajson.ParseOptions, ...]:
        """Strict and lenient parse options for a block starting with ``first_line``."""
        try:
            sample = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            sample = None
        fields: list[tuple[str, pa.DataType]] = []
        if isinstance(sample, dict):
            for key, value in sample.items():
                if key in self.mapped:
                    fields.append((key, pa.string()))
                elif value.__class__ in _JSON_TYPES:
                    fields.append((key, _JSON_TYPES[value.__class__]))
        shape = tuple((k, str(t)) for k, t in fields)
        options = self._parse.get(shape)
        if options is None:
            mapped = pa.schema([f for f in fields if f[0] in self.mapped])
            options = self._parse[shape] = (
                pajson.ParseOptions(
                    explicit_schema=pa.schema(fields), unexpected_field_behavior="error"
                ),
                pajson.ParseOptions(explicit_schema=mapped, unexpected_field_behavior="infer"),
            )
        return options

    def table(self, block: bytes, lines: int) -> pa.Table | None:
        """The block's objects, one row per line — or None when the block needs the exact
        line-by-line reader: a line that is not a JSON object, a mapped field that is not a
        string, a blank, comment or over-long line."""
        if not _lines_start_objects(block, lines) or _has_long_line(block):
            return None
        for options in self._options(block[: block.find(b"\n")]):
            try:
                table = pajson.read_json(
                    pa.BufferReader(block), read_options=self.read, parse_options=options
                )
            except (pa.ArrowInvalid, UnicodeDecodeError):
                continue
            if table.num_rows != lines:
                return None
            for column in table.schema:
                if column.name in self.mapped and column.type not in (pa.string(), pa.null()):
                    return None
            return table
        return None


def _blank_to_null(column: pa.Array) -> pa.Array:
    blank = pc.or_(pc.equal(column, ""), pc.equal(column, "-"))
    if not pc.any(blank).as_py():
        return column
    return pc.if_else(blank, pa.scalar(None, pa.string()), column)


def _json_rows(
    table: pa.Table,
    names: Mapping[str, tuple[str, ...]],
    *,
    source: str,
    malformed: ReadStats,
    first_line: int,
    block: bytes,
) -> pa.RecordBatch | None:
    """RAW_SCHEMA rows of a parsed block (row ``i`` is line ``first_line + i``): objects
    that are not requests are skipped and counted, those without a time or client address
    counted as malformed."""
    lines = np.arange(table.num_rows)
    kind = (
        table.column("type").combine_chunks()
        if "type" in table.column_names
        else pa.nulls(table.num_rows, pa.string())
    )
    if kind.null_count < len(kind):
        keep = pc.or_kleene(pc.is_null(kind), pc.equal(kind, "request"))
        malformed.skipped += len(kind) - pc.sum(keep).as_py()
        table = table.filter(keep)
        lines = lines[keep.to_numpy(zero_copy_only=False)]
    if table.num_rows == 0:
        return None
    columns: dict[str, pa.Array] = {}
    n = table.num_rows
    for canon, options in names.items():
        present = [
            table.column(name).combine_chunks()
            for name in options
            if name in table.column_names and table.schema.field(name).type == pa.string()
        ]
        if not present:
            value = pa.nulls(n, pa.string())
        else:
            value = present[0] if len(present) == 1 else pc.coalesce(*present)
        columns[canon] = value if canon == "ts" else _blank_to_null(value)
    peer, ts = columns["peer"], columns["ts"]
    if peer.null_count or ts.null_count:
        no_peer = pc.is_null(peer).to_numpy(zero_copy_only=False)
        no_ts = pc.is_null(ts).to_numpy(zero_copy_only=False) & ~no_peer
        texts = block.split(b"\n") if len(malformed.samples) < _SAMPLES else None
        for i in np.flatnonzero(no_peer | no_ts).tolist():
            what = "no client address (peer/ip field)" if no_peer[i] else "no time (ts field)"
            raw = texts[lines[i]].strip() if texts is not None else b""
            malformed.add(source, first_line + int(lines[i]), what, raw)
        keep = pa.array(~(no_peer | no_ts))
        columns = {k: v.filter(keep) for k, v in columns.items()}
        lines = lines[~(no_peer | no_ts)]
    if not len(lines):
        return None
    stamps, bad = _parse_ts_array(columns["ts"])
    for i in bad:
        malformed.add(
            source,
            first_line + int(lines[i]),
            f"ts: unreadable time {columns['ts'][i].as_py()!r}",
        )
    n = len(lines)
    arrays = [stamps] + [
        columns[c] if c in columns else pa.nulls(n, pa.string()) for c in FIELDS[1:]
    ]
    batch = pa.RecordBatch.from_arrays(arrays, schema=RAW_SCHEMA)
    return batch.filter(pc.is_valid(stamps)) if bad else batch


def _parse_ts_array(texts: pa.Array) -> tuple[pa.Array, list[int]]:
    """Timestamps from RFC 3339 text; the positions that are unreadable (null in the
    result), found one by one only when the vectorised cast fails."""
    try:
        return pc.cast(texts, pa.timestamp("us", tz="UTC")), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _parse_ts_values(texts.to_pylist(), None)


def _json_lines(
    lines: Sequence[bytes],
    first_line: int,
    opts: ReadOptions,
    names: Mapping[str, tuple[str, ...]],
    source: str,
    malformed: ReadStats,
) -> pa.RecordBatch | None:
    """RAW_SCHEMA rows of JSON lines parsed one by one (``orjson``): every malformed line
    is counted and sampled, every valid one kept."""
    cols = _Columns()
    # Per set of keys seen (log lines of one format share it): the names present per field.
    plans: dict[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]] = {}
    loads = orjson.loads
    for lineno, raw in enumerate(lines, start=first_line):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if len(line) > MAX_LINE_CHARS:
            malformed.add(source, lineno, f"line longer than {MAX_LINE_CHARS} characters", line)
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            malformed.add(source, lineno, f"not JSON: {exc}", line)
            continue
        if not isinstance(obj, dict):
            malformed.add(source, lineno, "not a JSON object", line)
            continue
        kind = obj.get("type")
        if kind is not None and kind != "request":
            malformed.skipped += 1
            continue
        keys = tuple(obj)
        plan = plans.get(keys)
        if plan is None:
            present = set(keys)
            plan = tuple(
                (canon, tuple(n for n in options if n in present))
                for canon, options in names.items()
            )
            plans[keys] = plan
        values: dict[str, Any] = {}
        for canon, present_names in plan:
            # The first of the field's names with a value (as Arrow's coalesce does).
            v = next((obj[n] for n in present_names if obj[n] is not None), None)
            if canon != "ts":
                v = v if v.__class__ is str and v not in {"", "-"} else _text(v)
            values[canon] = v
        if values["peer"] is None:
            malformed.add(source, lineno, "no client address (peer/ip field)", line)
            continue
        if values["ts"] is None:
            malformed.add(source, lineno, "no time (ts field)", line)
            continue
        cols.add(lineno, values)
    return _finish(cols, source, malformed)


def read_jsonl(path: Path, opts: ReadOptions, malformed: ReadStats) -> Iterator[pa.RecordBatch]:
    """JSON Lines: one object per line. Objects with a ``type`` other than ``request``
    (geogate's payment, signup ... events) are skipped and counted as such.

    Blocks of a few MiB are parsed by Arrow's JSON reader (the mapped fields as strings);
    a block with a line Arrow cannot read exactly as the line parser would — not a JSON
    object, a mapped field that is a number or a list, a comment, blank or over-long line —
    is read line by line instead, so its valid lines are kept and the rest counted.
    """
    source = str(path)
    parser = _JsonBlocks(opts)
    pending: list[pa.RecordBatch] = []
    rows = 0
    line = 1
    for block in _blocks(path, stats=malformed, block_bytes=_JSON_BLOCK_BYTES):
        count = block.count(b"\n") + (not block.endswith(b"\n"))
        table = parser.table(block, count)
        if table is not None:
            batch = _json_rows(
                table,
                parser.names,
                source=source,
                malformed=malformed,
                first_line=line,
                block=block,
            )
        else:
            texts = block.split(b"\n")
            if block.endswith(b"\n"):
                texts.pop()
            batch = _json_lines(texts, line, opts, parser.names, source, malformed)
        line += count
        if batch is not None and batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= opts.batch_rows:
                yield _concat(pending)
                pending, rows = [], 0
    if pending:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches(max_chunksize=table.num_rows)[0]


def _unescape(value: bytes) -> str | None:
    text = value.decode("utf-8", "replace")
    if "\\x" in text:
        text = re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return None if text in {"", "-"} else text


def read_nginx(path: Path, opts: ReadOptions, malformed: ReadStats) -> Iterator[pa.RecordBatch]:
    """nginx ``combined`` + ``"$http_x_forwarded_for"``: ``$remote_addr`` is the peer,
    ``$remote_user`` (when not ``-``) the account, ``$time_local`` the time."""
    source = str(path)
    cols = _Columns()
    match = _COMBINED.match
    for lineno, raw in enumerate(_lines(path, stats=malformed), start=1):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        m = match(line) if len(line) <= MAX_LINE_CHARS else None
        if m is None:
            malformed.add(source, lineno, "not an nginx combined line", line)
            continue
        peer, user, when, agent, xff = m.groups()
        cols.add(
            lineno,
            {
                "ts": when.decode("ascii", "replace"),
                "peer": peer.decode("ascii", "replace"),
                "account": _unescape(user),
                "user_agent": _unescape(agent),
                "xff": _unescape(xff) if xff is not None else None,
            },
        )
        if len(cols) >= opts.batch_rows:
            batch = _finish(cols, source, malformed, ts_format="%d/%b/%Y:%H:%M:%S %z")
            if batch is not None:
                yield batch
            cols = _Columns()
    batch = _finish(cols, source, malformed, ts_format="%d/%b/%Y:%H:%M:%S %z")
    if batch is not None:
        yield batch


def _normalise_table(
    table: pa.Table | pa.RecordBatch,
    names: Mapping[str, str],
    source: str,
    malformed: ReadStats,
    first_line: int,
    *,
    row_sources: pa.Array | None = None,
) -> pa.RecordBatch | None:
    """Columnar inputs (CSV, Parquet): pick and convert the mapped columns. Rows without a
    time or client address are counted as malformed (``row_sources``: the file of each row,
    when a batch mixes files)."""
    n = table.num_rows
    if n == 0:
        return None
    arrays: list[pa.Array] = []
    ts_col = table.column(names["ts"])
    if isinstance(ts_col, pa.ChunkedArray):
        ts_col = ts_col.combine_chunks()
    if pa.types.is_timestamp(ts_col.type):
        ts = ts_col if ts_col.type.tz else pc.assume_timezone(ts_col, "UTC")
        ts = pc.cast(ts, pa.timestamp("us", tz="UTC"))
        bad: list[int] = []
    else:
        ts, bad = _parse_ts_values(ts_col.to_pylist(), None)
    arrays.append(ts)
    for canon in FIELDS[1:]:
        col = names.get(canon)
        if col is None:
            arrays.append(pa.nulls(n, pa.string()))
            continue
        values = table.column(col)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            if canon in {"peer", "account", "org"}:
                arrays.append(values)
                continue
            values = values.cast(pa.string())
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        arrays.append(values)
    schema = RAW_SCHEMA
    for i, array in enumerate(arrays):
        if pa.types.is_dictionary(array.type):
            schema = schema.set(i, pa.field(RAW_SCHEMA.names[i], array.type))
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    missing = pc.or_(pc.is_null(batch.column(0)), pc.is_null(batch.column(1)))
    if bad or pc.any(missing).as_py():
        idx = pc.indices_nonzero(missing).to_pylist()
        for i in idx[:_SAMPLES]:
            what = "ts: unreadable time" if not ts[i].is_valid else "no client address"
            where = source if row_sources is None else str(row_sources[i].as_py())
            malformed.add(where, first_line + i, what)
        malformed.count += max(0, len(idx) - _SAMPLES)
        batch = batch.filter(pc.invert(missing))
    return batch


def normalise_columns(
    batch: pa.RecordBatch, *, sources: pa.Array, malformed: ReadStats
) -> pa.RecordBatch | None:
    """A batch whose columns already carry the canonical field names (as the Spark engine
    selects them from Parquet), converted to :data:`RAW_SCHEMA`; ``sources`` names each row's
    file for the malformed-row samples (whose line is 0: a split does not know its offset)."""
    names = {canon: canon for canon in FIELDS if canon in batch.schema.names}
    return _normalise_table(batch, names, "", malformed, 0, row_sources=sources)


def parquet_names(columns: Sequence[str], opts: ReadOptions, source: str) -> dict[str, str]:
    """Canonical field -> column of a Parquet file with ``columns``; raises
    :class:`ConfigError` when the time or the address column is missing."""
    names = _resolve_names(columns, opts.fields)
    _need(names, source)
    if not opts.client_hints:
        names = {k: v for k, v in names.items() if k not in CLIENT_HINTS}
    return names


def _need(names: Mapping[str, str], source: str) -> None:
    for canon in ("ts", "peer"):
        if canon not in names:
            raise ConfigError(f"no {canon} column (map it with --field {canon}=NAME)", path=source)


def read_csv(path: Path, opts: ReadOptions, malformed: ReadStats) -> Iterator[pa.RecordBatch]:
    """CSV with a header row; columns named as in the JSON formats or mapped with ``--field``."""
    source = str(path)

    def on_invalid(row: Any) -> str:
        what = f"CSV: {row.actual_columns} columns where the header has {row.expected_columns}"
        malformed.add(source, int(row.number or 0), what, row.text or "")
        return "skip"

    first = next((line for line in _lines(path, limit_blocks=1) if line.strip()), b"")
    columns = next(csv.reader([first.decode("utf-8", "replace")]), [])
    names = _resolve_names(columns, opts.fields)
    _need(names, source)
    types = dict.fromkeys(columns, pa.string())
    codec = _compression(path)
    raw = path.open("rb")
    stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec) if codec else raw
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=8 << 20),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, null_values=["", "-"]
            ),
        )
        line = 2
        for batch in reader:
            out = _normalise_table(batch, names, source, malformed, line)
            line += batch.num_rows
            malformed.bytes_read = raw.tell()
            if out is not None:
                yield out
    finally:
        raw.close()


def parquet_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous ranges of a Parquet file's row groups with about equal
    rows (``[(0, n)]`` for a file that is not Parquet or has one row group)."""
    try:
        meta = pq.ParquetFile(str(path)).metadata
    except (pa.ArrowInvalid, OSError):
        return [(0, 0)]
    groups = meta.num_row_groups
    if groups < 2 or parts < 2:
        return [(0, groups)]
    rows = np.cumsum([meta.row_group(i).num_rows for i in range(groups)])
    cuts = np.searchsorted(rows, rows[-1] * np.arange(1, parts) / parts, side="left") + 1
    bounds = sorted({0, *(int(c) for c in cuts if 0 < c < groups), groups})
    return list(pairwise(bounds))


def part_bytes(path: Path, row_groups: tuple[int, int] | None) -> int:
    """The bytes of ``path`` a part stands for (its share of the rows, for a range of row
    groups), for progress bars."""
    size = os.path.getsize(path)
    if row_groups is None:
        return size
    meta = pq.ParquetFile(str(path)).metadata
    rows = sum(meta.row_group(i).num_rows for i in range(*row_groups))
    return int(size * rows / max(1, meta.num_rows))


def read_parquet(
    path: Path,
    opts: ReadOptions,
    malformed: ReadStats,
    *,
    row_groups: tuple[int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Parquet, row group by row group (``row_groups``: only ``[start, stop)`` of them); the
    address column is read dictionary-encoded so that each distinct address is parsed and
    looked up once per batch."""
    source = str(path)
    try:
        pf = pq.ParquetFile(str(path), read_dictionary=None)
    except (pa.ArrowInvalid, OSError) as exc:
        malformed.add(source, 0, f"not a readable Parquet file: {exc}")
        return
    names = parquet_names(pf.schema_arrow.names, opts, source)
    wanted = sorted(set(names.values()))
    # Addresses and account ids repeat: read them dictionary-encoded (no string copies, and
    # each distinct value is parsed and hashed once per batch).
    as_dict = [names[k] for k in ("peer", "account", "org") if k in names]
    pf = pq.ParquetFile(str(path), read_dictionary=as_dict)
    size = os.path.getsize(path)
    total = pf.metadata.num_rows
    row = 1
    groups = None
    if row_groups is not None:
        groups = list(range(*row_groups))
        row += sum(pf.metadata.row_group(i).num_rows for i in range(row_groups[0]))
    first = row
    batches = pf.iter_batches(batch_size=opts.batch_rows, columns=wanted, row_groups=groups)
    for batch in _joined(batches, opts):
        out = _normalise_table(batch, names, source, malformed, row)
        row += batch.num_rows
        malformed.bytes_read = int(size * min(1.0, (row - first) / max(1, total)))
        if out is not None:
            yield out


def _joined(batches: Iterator[pa.RecordBatch], opts: ReadOptions) -> Iterator[pa.RecordBatch]:
    """Consecutive batches joined up to ``opts.batch_rows`` rows (Parquet's batches end at
    row groups, often smaller than a batch), with one dictionary per column: each distinct
    address is then judged once per batch, and the per-batch partial aggregates are fewer."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= opts.batch_rows:
            yield _join(pending)
            pending, rows = [], 0
    if pending:
        yield _join(pending)


def _join(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).unify_dictionaries().combine_chunks()
    return table.to_batches(max_chunksize=table.num_rows)[0]


_READERS: Final = {
    "jsonl": read_jsonl,
    "nginx": read_nginx,
    "csv": read_csv,
    "parquet": read_parquet,
}


def read_file(
    path: Path,
    opts: ReadOptions,
    malformed: ReadStats,
    *,
    row_groups: tuple[int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of one input file, in its format (``opts.format`` or detected);
    ``row_groups`` reads a range of a Parquet file's row groups only."""
    fmt = opts.format if opts.format != "auto" else detect_format(path)
    try:
        if row_groups is not None and fmt == "parquet":
            yield from read_parquet(path, opts, malformed, row_groups=row_groups)
            return
        yield from _READERS[fmt](path, opts, malformed)
    except (OSError, pa.ArrowInvalid) as exc:
        # A truncated gzip/zstd stream: keep what was read, record where it stopped.
        malformed.add(str(path), 0, f"read stopped: {exc}")


def input_bytes(paths: Sequence[Path]) -> int:
    """Total size on disk of the inputs (for the progress bar's ETA)."""
    return sum(os.path.getsize(p) for p in paths)
