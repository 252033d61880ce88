"""Every parser that takes outside input, as a fuzz target: the call, the errors it may raise
on purpose, seed inputs and a Hypothesis strategy of hostile text.

The contract checked for each target, whatever the input: it returns, or raises one of its
``allowed`` errors (geogate's own, carrying a one-line message). Anything else — OverflowError,
RecursionError, IndexError, a bare ValueError from a library — is a bug: at an HTTP edge it
would be a 500, in ingest a jammed feed. Used by the CI suite (``test_fuzz_parsers.py``, a
bounded number of examples) and by the long run (``scripts/fuzz_long.py``, a million inputs per
target).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from geogate.accounts.config import parse_accounts_table
from geogate.accounts.events import (
    Event,
    parse_json_line,
    parse_timestamp,
    read_csv,
    read_json_payload,
)
from geogate.client_ip import (
    TrustedProxies,
    parse_forwarded,
    parse_ip,
    resolve_client_ip,
)
from geogate.clock import parse_instant
from geogate.errors import (
    ClientIPError,
    ConfigError,
    EventError,
    GeogateError,
    PolicySyntaxError,
)
from geogate.json_limits import loads_bounded
from geogate.notify.config import load_notify_config
from geogate.policy.parse import parse_policy
from geogate.service.config import load_config

TRUSTED = TrustedProxies.parse(["127.0.0.0/8", "10.0.0.0/8", "::1"])


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing."""

    name: str
    call: Callable[[str], object]
    allowed: tuple[type[BaseException], ...]
    seeds: tuple[str, ...]


def _one_line(exc: BaseException) -> None:
    """geogate errors promise one line without a traceback."""
    if isinstance(exc, GeogateError):
        assert "\n" not in exc.one_line()


def _resolve_xff(text: str) -> object:
    return resolve_client_ip("10.0.0.1", x_forwarded_for=text, trusted=TRUSTED)


def _resolve_forwarded(text: str) -> object:
    return resolve_client_ip("10.0.0.1", forwarded=text, trusted=TRUSTED, header="forwarded")


def _storable(items: object) -> object:
    """Every event parsed must be storable and sendable: all its text valid UTF-8 (a lone
    surrogate would fail the store's whole batch, not just this event)."""
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, Event):
            json.dumps(item._asdict(), default=str, ensure_ascii=False).encode("utf-8")
            json.dumps(dict(item.extra), ensure_ascii=False).encode("utf-8")
    return items


def _json_line(text: str) -> object:
    return _storable(parse_json_line(text, source="fuzz", line=1))


def _json_lines_body(text: str) -> object:
    return _storable(read_json_payload(text, source="fuzz"))


def _csv(text: str) -> object:
    # newline="" as files are read
    return _storable(list(read_csv(io.StringIO(text, newline=""), source="fuzz.csv")))


def _timestamp(text: str) -> object:
    try:
        return parse_timestamp(text)
    except ValueError as exc:  # parse_timestamp's documented error; callers wrap it
        raise EventError(str(exc)) from None


def _instant(text: str) -> object:
    try:
        return parse_instant(text)
    except ValueError as exc:  # documented; the HTTP and CLI edges turn it into a 400 / exit 2
        raise ConfigError(str(exc)) from None


def _json(text: str) -> object:
    try:
        return loads_bounded(text)
    except ValueError as exc:  # the documented error of loads_bounded
        raise ConfigError(str(exc)) from None


def _policy(text: str) -> object:
    return parse_policy(text, path="fuzz.toml")


def _accounts_table(text: str) -> object:
    """The ``[accounts]`` table of a policy, parsed as ``policy check`` and ingestion do."""
    policy = parse_policy('[policy]\nid = "f"\n' + text, path="fuzz.toml")
    return parse_accounts_table(policy.accounts, path="fuzz.toml")


def _service_config(text: str) -> object:
    path = _scratch() / "geogate.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return load_config(path, env={})


def _notify_config(text: str) -> object:
    path = _scratch() / "notify.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return load_notify_config(path, env={})


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    if not _SCRATCH:
        import tempfile  # noqa: PLC0415

        # A RAM file system where there is one: the long run writes a file per input.
        shm = Path("/dev/shm")
        base = str(shm) if shm.is_dir() else None
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="geogate-fuzz-", dir=base)))
    return _SCRATCH[0]


REQUEST = (
    '{"type":"request","ts":"2024-07-01T09:12:03Z","account":"a-1","ip":"203.0.113.9",'
    '"forwarded":"198.51.100.1, unknown","accept_language":"zh-CN"}'
)
PAYMENT = (
    '{"type":"payment","ts":"2024-07-01T10:00:00+08:00","account":"a","card_bin":"6228 4800",'
    '"card_country":"CN","amount":20.5,"currency":"usd"}'
)
POLICY = """[policy]
id = "p"
version = "2"
mode = "deny-list"
effective = 2024-07-09
[[rules]]
id = "cn"
regions = ["CN", "HK", "UA-43"]
effective = 2024-07-09T00:00:00+08:00
[anonymizers]
tor = "deny"
[exemptions]
accounts = ["x"]
networks = ["10.0.0.0/8"]
[accounts]
flag_score = 0.3
[accounts.rules.language]
weight = 0.2
"""

TARGETS: tuple[Target, ...] = (
    Target("parse_ip", parse_ip, (ClientIPError,), ("1.2.3.4", "::ffff:1.2.3.4", "fe80::1%1")),
    Target(
        "x_forwarded_for",
        _resolve_xff,
        (ClientIPError,),
        ("1.2.3.4, 10.0.0.2", "[2001:db8::1]:443, unknown", "_hidden, 1.2.3.4:80"),
    ),
    Target(
        "forwarded",
        _resolve_forwarded,
        (ClientIPError,),
        (
            'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
            'for=59.224.0.1;ext="x, for=8.8.8.8 y"',
            'for="_gazonk", For="\\"a\\\\b"',
        ),
    ),
    Target("forwarded_elements", parse_forwarded, (ClientIPError,), ('for=a;by=b, for="c,d"',)),
    Target(
        "event_timestamp",
        _timestamp,
        (EventError,),
        ("2024-07-01T12:00:00Z", "0001-01-01T00:00:00+01:00"),
    ),
    Target("instant", _instant, (ConfigError,), ("2024-07-10", "2024-07-10T00:00:00+14:00")),
    Target("json_bounded", _json, (ConfigError,), ('{"a": [1, 2.5, "x\\"y"]}', "[" * 40)),
    Target("event_line", _json_line, (EventError,), (REQUEST, PAYMENT)),
    Target(
        "event_body",
        _json_lines_body,
        (EventError,),
        (f"[{REQUEST},{PAYMENT}]", f"{REQUEST}\n{PAYMENT}"),
    ),
    Target(
        "event_csv",
        _csv,
        (EventError,),
        ("type,ts,account,ip\nrequest,2024-07-01T00:00:00Z,a,1.2.3.4\n",),
    ),
    Target("policy", _policy, (PolicySyntaxError,), (POLICY,)),
    Target(
        "accounts_table", _accounts_table, (PolicySyntaxError,), ("[accounts]\nwindow_days = 3\n",)
    ),
    Target(
        "service_config",
        _service_config,
        (ConfigError,),
        ('[serve]\nport = 8300\ntrusted_proxies = ["10.0.0.0/8"]\nmax_queue_delay_ms = 20\n',),
    ),
    Target(
        "notify_config",
        _notify_config,
        (ConfigError,),
        (
            '[notify]\nservice_name = "x"\n[notify.smtp]\nhost = "127.0.0.1"\nport = 25\n'
            'from = "a@example.com"\n[notify.retry]\nmax_attempts = 3\n',
        ),
    ),
)
"""Every parser of outside input; keep in step with ``docs/service.md`` and ``SECURITY.md``."""


def check(target: Target, text: str) -> None:
    """Run ``target`` on ``text``: it returns or raises one of its allowed errors."""
    try:
        target.call(text)
    except target.allowed as exc:
        _one_line(exc)


# ----- Hypothesis strategies: structure-aware hostile text ----------------------------------

_SPECIAL = st.sampled_from(
    [
        "\\ud800",
        "\\udc80",
        "\udce9",
        "[",
        "]",
        "{",
        "}",
        '"',
        "\\",
        ",",
        ";",
        "=",
        ":",
        "\x00",
        "\ud800",
        "\n",
        "9" * 400,
        "9" * 5000,
        "1e999",
        "NaN",
        "-0",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-14:00",
        "for=",
        "unknown",
        "_obf",
        "::ffff:",
        "[" * 200,
        "{" * 200,
        "ts",
        "type",
        "request",
        "amount",
    ]
)


def hostile_text(seeds: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Text near the seeds: the seeds spliced with special tokens, plus arbitrary text."""
    splice = st.tuples(
        st.sampled_from(seeds),
        st.integers(0, 10_000),
        st.lists(st.one_of(_SPECIAL, st.text(max_size=8)), max_size=6),
    ).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)] + "".join(t[2]) + t[0][t[1] % (len(t[0]) + 1) :])
    return st.one_of(
        splice,
        st.text(max_size=200),
        st.lists(_SPECIAL, max_size=10).map("".join),
        st.sampled_from(seeds),
    )


def json_values() -> st.SearchStrategy[str]:
    """JSON documents (as text) of any shape, including deep and huge numbers."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
    return values.map(json.dumps)
