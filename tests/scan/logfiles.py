"""Write the same requests in every input format the scanner reads (test helper)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def event_jsonl(table: pa.Table) -> bytes:
    """geogate's documented event format."""
    lines = []
    for r in _rows(table):
        lines.append(
            orjson.dumps(
                {
                    "type": "request",
                    "ts": _iso(r["ts"]),
                    "account": r["account"],
                    "org": r["org"],
                    "ip": r["ip"],
                    "user_agent": r["user_agent"],
                    "accept_language": r["accept_language"],
                }
            )
        )
    return b"\n".join(lines) + b"\n"


def nginx_json(table: pa.Table, *, peer: str | None = None) -> bytes:
    """The nginx `geogate_json` log_format of docs/scan.md (the client behind `peer`)."""
    lines = []
    for r in _rows(table):
        lines.append(
            orjson.dumps(
                {
                    "time": r["ts"].astimezone(timezone(timedelta(hours=8))).isoformat(),
                    "realip_remote_addr": peer or r["ip"],
                    "remote_addr": r["ip"],
                    "http_x_forwarded_for": r["ip"] if peer else "",
                    "http_forwarded": "",
                    "http_x_geogate_account": r["account"],
                    "http_x_geogate_org": r["org"],
                    "request": "POST /v1/chat/completions HTTP/1.1",
                    "status": 200,
                    "http_user_agent": r["user_agent"],
                    "http_accept_language": r["accept_language"],
                }
            )
        )
    return b"\n".join(lines) + b"\n"


def envoy_json(table: pa.Table, *, peer: str | None = None) -> bytes:
    """The Envoy json_format of docs/scan.md."""
    lines = []
    for r in _rows(table):
        lines.append(
            orjson.dumps(
                {
                    "start_time": r["ts"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "downstream_direct_remote_address": peer or r["ip"],
                    "downstream_remote_address": r["ip"],
                    "x_forwarded_for": r["ip"] if peer else None,
                    "x_geogate_account": r["account"],
                    "http_x_geogate_org": r["org"],
                    "method": "POST",
                    "path": "/v1/chat/completions",
                    "response_code": 200,
                    "user_agent": r["user_agent"],
                    "accept_language": r["accept_language"],
                }
            )
        )
    return b"\n".join(lines) + b"\n"


def nginx_combined(table: pa.Table, *, peer: str | None = None) -> bytes:
    """nginx `combined` + "$http_x_forwarded_for"; the account as $remote_user."""
    lines = []
    for r in _rows(table):
        when = r["ts"].strftime("%d/%b/%Y:%H:%M:%S +0000")
        xff = r["ip"] if peer else "-"
        lines.append(
            f'{peer or r["ip"]} - {r["account"]} [{when}] "POST /v1/chat HTTP/1.1" 200 512 '
            f'"-" "{r["user_agent"]}" "{xff}"'.encode()
        )
    return b"\n".join(lines) + b"\n"


def csv_text(table: pa.Table) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ts", "ip", "account", "org", "user_agent", "accept_language"])
    for r in _rows(table):
        w.writerow(
            [_iso(r["ts"]), r["ip"], r["account"], r["org"], r["user_agent"], r["accept_language"]]
        )
    return buf.getvalue().encode()


TEXT_FORMATS: dict[str, tuple[str, Callable[[pa.Table], bytes]]] = {
    "events": (".jsonl", event_jsonl),
    "nginx-json": (".log", nginx_json),
    "envoy-json": (".log", envoy_json),
    "nginx-combined": (".log", nginx_combined),
    "csv": (".csv", csv_text),
}


def write_text(path: Path, data: bytes, compression: str | None) -> Path:
    """``data`` at ``path`` (+ .gz / .zst), compressed with pyarrow's codecs."""
    if compression is None:
        path.write_bytes(data)
        return path
    suffix = {"gzip": ".gz", "zstd": ".zst"}[compression]
    target = path.with_name(path.name + suffix)
    with pa.CompressedOutputStream(str(target), compression) as out:
        out.write(data)
    return target


def write_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path
