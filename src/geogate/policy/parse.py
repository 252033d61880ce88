"""Reading policy files (TOML) into :class:`Policy` values, with errors that point at the line.

The format is documented in ``docs/policy-format.md``. Every problem becomes a
:class:`PolicySyntaxError` carrying the file, the line (when it can be found) and the key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import MappingProxyType

from geogate.clock import in_range
from geogate.errors import PolicyError, PolicySyntaxError
from geogate.policy.model import (
    DEFAULT_ANONYMIZER_ACTIONS,
    Action,
    Anonymizer,
    Exemptions,
    Mode,
    Policy,
    PolicySet,
    Region,
    Rule,
)

_TOP_KEYS = {"policy", "rules", "anonymizers", "exemptions", "accounts"}
_POLICY_KEYS = {
    "id",
    "version",
    "mode",
    "effective",
    "valid_from",
    "on_unknown",
    "on_disputed",
    "description",
}
_RULE_KEYS = {"id", "regions", "action", "effective", "note"}
_EXEMPTION_KEYS = {"accounts", "networks"}
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
MAX_POLICY_BYTES = 1_000_000


class _Locator:
    """Finds the line of a key in TOML text, for error messages (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, table: str | None, key: str | None, index: int | None = None) -> int | None:
        """1-based line of ``key`` inside ``[table]`` (the ``index``-th ``[[table]]``)."""
        current: str | None = None
        seen = -1
        header_line: int | None = None
        for number, raw in enumerate(self.lines, start=1):
            m = self._HEADER.match(raw)
            if m:
                current = m.group(2)
                if table is None and key == current:
                    return number
                if current == table:
                    seen += 1
                    if index is None or seen == index:
                        header_line = number
                continue
            in_table = current == table and (index is None or seen == index)
            if table is None:
                in_table = current is None
            if in_table and key and re.match(rf"^\s*{re.escape(key)}\s*=", raw):
                return number
        return header_line


def _as_datetime(value: object) -> datetime:
    """TOML dates and date-times become aware UTC datetimes (a bare date means 00:00 UTC).

    Raises ValueError for other values and for instants outside the years 1970 to 2100."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return in_range(value.replace(tzinfo=UTC))
        try:
            return in_range(value.astimezone(UTC))
        except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
            raise ValueError(f"{value.isoformat()} is outside the years 1970 to 2100") from None
    if isinstance(value, date):
        return in_range(datetime.combine(value, time(0, 0), tzinfo=UTC))
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValueError(f"expected a date or date-time (e.g. 2024-07-09), got {value!r}")


class _Reader:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.loc = _Locator(text)

    def fail(
        self, message: str, *, table: str | None, key: str | None, index: int | None = None
    ) -> PolicySyntaxError:
        dotted = table or ""
        if index is not None:
            dotted += f"[{index}]"
        if key:
            dotted = f"{dotted}.{key}" if dotted else key
        return PolicySyntaxError(
            message, path=self.path, line=self.loc.line_of(table, key, index), key=dotted
        )

    def check_keys(
        self, data: Mapping[str, object], allowed: set[str], table: str | None, index: int | None
    ) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"unknown key (expected one of {', '.join(sorted(allowed))})",
                    table=table,
                    key=key,
                    index=index,
                )

    def string(
        self, data: Mapping[str, object], key: str, table: str | None, index: int | None = None
    ) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail("must be a non-empty string", table=table, key=key, index=index)
        return value.strip()

    def when(
        self, data: Mapping[str, object], key: str, table: str | None, index: int | None = None
    ) -> datetime | None:
        if key not in data:
            return None
        try:
            return _as_datetime(data[key])
        except ValueError as exc:
            raise self.fail(str(exc), table=table, key=key, index=index) from None

    def action(
        self,
        data: Mapping[str, object],
        key: str,
        table: str | None,
        default: Action,
        index: int | None = None,
    ) -> Action:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, str):
            raise self.fail("must be allow, warn or deny", table=table, key=key, index=index)
        try:
            return Action.parse(value)
        except ValueError as exc:
            raise self.fail(str(exc), table=table, key=key, index=index) from None

    def string_list(
        self, data: Mapping[str, object], key: str, table: str | None, index: int | None = None
    ) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("must be a list of strings", table=table, key=key, index=index)
        return [v for v in value if isinstance(v, str)]


def parse_policy(text: str, *, path: str = "<policy>") -> Policy:
    """Parse one policy from TOML text; raises :class:`PolicySyntaxError` naming file, line, key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        message = _TOML_POS.sub("", str(exc)).strip()
        raise PolicySyntaxError(
            f"invalid TOML: {message}", path=path, line=int(m.group(1)) if m else None
        ) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise PolicySyntaxError("invalid TOML: nested too deeply", path=path) from None
    except ValueError as exc:  # an integer beyond the interpreter's 4,300-digit limit
        detail = str(exc).split(";")[0].splitlines()[0] if str(exc) else "bad value"
        raise PolicySyntaxError(f"invalid TOML: {detail}", path=path) from None
    r = _Reader(text, path)
    r.check_keys(data, _TOP_KEYS, None, None)

    head = data.get("policy")
    if not isinstance(head, dict):
        raise r.fail("missing [policy] table", table=None, key="policy")
    r.check_keys(head, _POLICY_KEYS, "policy", None)
    policy_id = r.string(head, "id", "policy")
    version = head.get("version", "1")
    if not isinstance(version, str | int):
        raise r.fail("must be a string", table="policy", key="version")
    try:
        mode = Mode(str(head.get("mode", Mode.DENY_LIST.value)))
    except ValueError:
        raise r.fail("must be 'deny-list' or 'allow-list'", table="policy", key="mode") from None
    effective = r.when(head, "effective", "policy")

    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise r.fail("must be an array of tables ([[rules]])", table=None, key="rules")
    rules: list[Rule] = []
    ids: set[str] = set()
    seen_regions: dict[str, str] = {}
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise r.fail("must be a table", table="rules", key=None, index=i)
        r.check_keys(raw, _RULE_KEYS, "rules", i)
        rule_id = r.string(raw, "id", "rules", i)
        if rule_id in ids:
            raise r.fail(f"duplicate rule id {rule_id!r}", table="rules", key="id", index=i)
        ids.add(rule_id)
        codes = r.string_list(raw, "regions", "rules", i)
        if not codes:
            raise r.fail("must list at least one region", table="rules", key="regions", index=i)
        regions: set[Region] = set()
        for code in codes:
            try:
                region = Region.parse(code)
            except ValueError as exc:
                raise r.fail(str(exc), table="rules", key="regions", index=i) from None
            if region.key in seen_regions:
                raise r.fail(
                    f"region {region.code} is already in rule {seen_regions[region.key]!r}",
                    table="rules",
                    key="regions",
                    index=i,
                )
            seen_regions[region.key] = rule_id
            regions.add(region)
        default_action = Action.DENY if mode is Mode.DENY_LIST else Action.ALLOW
        action = r.action(raw, "action", "rules", default_action, i)
        if action is Action.WARN:
            raise r.fail(
                "must be allow or deny (a deny warns before its effective date)",
                table="rules",
                key="action",
                index=i,
            )
        rule_effective = r.when(raw, "effective", "rules", i)
        note = raw.get("note", "")
        if not isinstance(note, str):
            raise r.fail("must be a string", table="rules", key="note", index=i)
        rules.append(
            Rule(
                id=rule_id,
                regions=frozenset(regions),
                action=action,
                effective_at=rule_effective if rule_effective is not None else effective,
                note=note,
            )
        )

    anonymizers = dict(DEFAULT_ANONYMIZER_ACTIONS)
    raw_anon = data.get("anonymizers", {})
    if not isinstance(raw_anon, dict):
        raise r.fail("must be a table", table=None, key="anonymizers")
    r.check_keys(raw_anon, {a.value for a in Anonymizer}, "anonymizers", None)
    for name in raw_anon:
        kind = Anonymizer(name)
        anonymizers[kind] = r.action(raw_anon, name, "anonymizers", anonymizers[kind])

    raw_ex = data.get("exemptions", {})
    if not isinstance(raw_ex, dict):
        raise r.fail("must be a table", table=None, key="exemptions")
    r.check_keys(raw_ex, _EXEMPTION_KEYS, "exemptions", None)
    networks = []
    for cidr in r.string_list(raw_ex, "networks", "exemptions"):
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise r.fail(
                f"{cidr!r} is not an IP network (CIDR)", table="exemptions", key="networks"
            ) from None
    accounts = frozenset(a.strip() for a in r.string_list(raw_ex, "accounts", "exemptions"))

    raw_accounts = data.get("accounts", {})
    if not isinstance(raw_accounts, dict):
        raise r.fail("must be a table", table=None, key="accounts")

    description = head.get("description", "")
    if not isinstance(description, str):
        raise r.fail("must be a string", table="policy", key="description")
    try:
        return Policy(
            id=policy_id,
            version=str(version),
            mode=mode,
            rules=tuple(rules),
            effective_at=effective,
            valid_from=r.when(head, "valid_from", "policy"),
            on_unknown=r.action(head, "on_unknown", "policy", Action.WARN),
            on_disputed=r.action(head, "on_disputed", "policy", Action.WARN),
            anonymizers=MappingProxyType(anonymizers),
            exemptions=Exemptions(accounts=accounts, networks=tuple(networks)),
            description=description.strip(),
            source=path,
            accounts=MappingProxyType(raw_accounts),
        )
    except PolicyError as exc:
        raise PolicySyntaxError(str(exc), path=path) from None


def with_line(error: PolicySyntaxError) -> PolicySyntaxError:
    """``error`` with its line filled in from the file when it names a dotted key but no line
    (errors raised on an already parsed table, such as ``[accounts]``); else ``error``."""
    if error.line is not None or not error.key or not error.path:
        return error
    try:
        text = Path(error.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return error
    table, _, key = error.key.rpartition(".")
    line = _Locator(text).line_of(table or None, key)
    if line is None:
        return error
    return PolicySyntaxError(error.detail, path=error.path, line=line, key=error.key)


def region_line(policy: Policy, rule: Rule, region: Region) -> int | None:
    """1-based line of ``region`` in the ``regions`` list of ``rule`` in the file ``policy``
    was read from (the line of ``regions =`` when the entry is not found on its own), or None
    when the file cannot be read."""
    if not policy.source:
        return None
    try:
        text = Path(policy.source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    index = next((i for i, r in enumerate(policy.rules) if r is rule), None)
    loc = _Locator(text)
    start = loc.line_of("rules", "regions", index)
    if start is None:
        return None
    wanted = region.city or region.code
    for number in range(start, len(loc.lines) + 1):
        line = loc.lines[number - 1]
        if number > start and (line.lstrip().startswith("[") and "=" not in line):
            break  # the next table
        if wanted in line:
            return number
    return start


def load_policy(path: str | Path) -> Policy:
    """Read and parse one policy file; unreadable files raise :class:`PolicySyntaxError`."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_POLICY_BYTES:
            raise PolicySyntaxError(f"file is larger than {MAX_POLICY_BYTES} bytes", path=str(p))
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicySyntaxError("no such file", path=str(p)) from None
    except IsADirectoryError:
        raise PolicySyntaxError("is a directory, expected a .toml file", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise PolicySyntaxError(f"not UTF-8 text ({exc.reason})", path=str(p)) from None
    except OSError as exc:
        raise PolicySyntaxError(f"cannot read: {exc.strerror}", path=str(p)) from None
    return parse_policy(text, path=str(p))


def load_policy_set(paths: Sequence[str | Path]) -> PolicySet:
    """Load several policy files as versions of one policy (see :class:`PolicySet`)."""
    policies = [load_policy(p) for p in paths]
    return PolicySet.of(policies)


BUILTIN_DIR = Path(__file__).with_name("presets")


def builtin_policy_path(name: str) -> Path:
    """Path of a shipped preset (``"unsupported-regions"``, ``"supported-countries"``)."""
    path = BUILTIN_DIR / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
        raise PolicyError(f"no built-in policy {name!r} (built-ins: {names})")
    return path


def resolve_policy_path(spec: str | Path) -> Path:
    """A policy given as a file path, or as ``builtin:NAME`` for a shipped preset."""
    text = str(spec)
    if text.startswith("builtin:"):
        return builtin_policy_path(text.removeprefix("builtin:"))
    return Path(text)
