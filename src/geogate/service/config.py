"""Configuration of ``geogate serve``: a TOML file, ``GEOGATE_*`` environment variables, flags.

Precedence, highest first: command-line flags, environment variables, the file, defaults.
Every value is parsed on entry into a typed field of the frozen :class:`ServiceConfig`; any
problem raises :class:`~geogate.errors.ConfigError` naming the file and key (or the variable),
so a bad configuration stops the server at start with one line, never at the first request.
The reference is ``docs/service.md``.
"""

from __future__ import annotations

import enum
import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from geogate.client_ip import TrustedProxies
from geogate.errors import ClientIPError, ConfigError
from geogate.notify.secret import Secret

DEFAULT_POLICY: Final = "builtin:unsupported-regions"
DEFAULT_PORT: Final = 8300
MAX_CONFIG_BYTES: Final = 1_000_000


class FailMode(enum.StrEnum):
    """What to do when the data needed for a decision (snapshot, account store) is unavailable.

    ``closed`` refuses the request (HTTP 503, decision path ``fail_closed``); ``open`` lets it
    through (decision path ``fail_open``). Both record reason ``intel_unavailable``.
    """

    CLOSED = "closed"
    OPEN = "open"

    @classmethod
    def parse(cls, text: str) -> FailMode:
        """``closed``/``open``, also spelled ``fail_closed``/``fail_open``; ValueError else."""
        value = text.strip().lower().replace("-", "_").removeprefix("fail_")
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"expected 'closed' or 'open', got {text!r}") from None


LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")


class ClientIPHeader(enum.StrEnum):
    """The forwarding header the trusted proxies maintain (nginx's ``real_ip_header``).

    Only this one is read: a client can send the other one through proxies that pass it on
    untouched, so believing both would let it choose its address.
    """

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Everything ``geogate serve`` needs, parsed.

    ``policies`` are policy files (several = versions of one policy) or ``builtin:NAME``;
    ``snapshot`` is a snapshot file, None for the embedded data. ``grpc_port`` None disables
    the Envoy gRPC ext_authz server. ``trusted_proxies`` are the networks whose
    ``X-Forwarded-For``/``Forwarded`` headers are believed (the proxies calling geogate and the
    load balancers in front of them); ``client_ip_header`` is the one forwarding header read
    (``x-forwarded-for`` or ``forwarded``). ``account_header`` names the request header carrying the
    account id at the proxy endpoints. ``admin_token`` None allows ``POST /admin/reload`` from
    loopback peers only.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    grpc_host: str | None = None  # None: same as host
    grpc_port: int | None = None
    policies: tuple[str, ...] = (DEFAULT_POLICY,)
    snapshot: str | None = None
    trusted_proxies: TrustedProxies = TrustedProxies()  # noqa: RUF009 - immutable value
    client_ip_header: ClientIPHeader = ClientIPHeader.X_FORWARDED_FOR
    fail_mode: FailMode = FailMode.CLOSED
    account_header: str = "x-geogate-account"
    admin_token: Secret | None = None
    max_body_bytes: int = 65_536
    max_staleness_days: float | None = None
    log_level: str = "info"
    access_log: bool = False
    blocked_accounts: tuple[str, ...] = ()
    source: str | None = None  # the config file, for messages

    @property
    def grpc_address(self) -> str | None:
        """``host:port`` of the gRPC server (IPv6 hosts bracketed), None when disabled."""
        if self.grpc_port is None:
            return None
        host = self.grpc_host or self.host
        return f"[{host}]:{self.grpc_port}" if ":" in host else f"{host}:{self.grpc_port}"


_SERVE_KEYS: Final = {
    "host",
    "port",
    "grpc_host",
    "grpc_port",
    "policy",
    "snapshot",
    "trusted_proxies",
    "client_ip_header",
    "fail_mode",
    "account_header",
    "admin_token",
    "max_body_bytes",
    "max_staleness_days",
    "log_level",
    "access_log",
}
_ACCOUNTS_KEYS: Final = {"blocked"}

ENV_PREFIX: Final = "GEOGATE_"
#: Environment variables read by :func:`load_config` (``GEOGATE_`` + upper-case key).
ENV_KEYS: Final = tuple(sorted(_SERVE_KEYS))


def _port(value: object, *, key: str, where: str | None, allow_none: bool = False) -> int | None:
    if allow_none and value in (None, "", "off"):
        return None
    if isinstance(value, bool):
        raise ConfigError("expected a port number (0-65535)", path=where, key=key)
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(
            f"expected a port number (0-65535), got {value!r}", path=where, key=key
        ) from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"port {number} is outside 0-65535", path=where, key=key)
    return number


def _strings(value: object, *, key: str, where: str | None) -> tuple[str, ...]:
    """A list of strings; a string is split on commas (the environment-variable form)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ConfigError(f"expected a list of strings, got {value!r}", path=where, key=key)


def _text(value: object, *, key: str, where: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a non-empty string, got {value!r}", path=where, key=key)
    return value.strip()


def _bool(value: object, *, key: str, where: str | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"expected true or false, got {value!r}", path=where, key=key)


def _apply(config: ServiceConfig, raw: Mapping[str, Any], *, where: str | None) -> ServiceConfig:
    """``config`` with the values of ``raw`` (keys as in the ``[serve]`` table) parsed in."""
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key in {"host", "grpc_host"}:
            host = _text(value, key=key, where=where).strip("[]")
            if host != "localhost":
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    raise ConfigError(
                        f"expected an IP address (or localhost), got {value!r}", path=where, key=key
                    ) from None
            changes[key] = host
        elif key == "port":
            changes["port"] = _port(value, key=key, where=where)
        elif key == "grpc_port":
            changes["grpc_port"] = _port(value, key=key, where=where, allow_none=True)
        elif key == "policy":
            policies = _strings(value, key=key, where=where)
            if not policies:
                raise ConfigError("at least one policy is needed", path=where, key=key)
            changes["policies"] = policies
        elif key == "snapshot":
            text = "" if value is None else _text(value, key=key, where=where)
            changes["snapshot"] = None if text in {"", "embedded"} else text
        elif key == "trusted_proxies":
            cidrs = _strings(value, key=key, where=where)
            try:
                changes["trusted_proxies"] = TrustedProxies.parse(cidrs)
            except ClientIPError as exc:
                raise ConfigError(str(exc), path=where, key=key) from None
        elif key == "client_ip_header":
            text = _text(value, key=key, where=where).lower()
            try:
                changes["client_ip_header"] = ClientIPHeader(text)
            except ValueError:
                raise ConfigError(
                    f"expected 'x-forwarded-for' or 'forwarded', got {value!r}", path=where, key=key
                ) from None
        elif key == "fail_mode":
            try:
                changes["fail_mode"] = FailMode.parse(_text(value, key=key, where=where))
            except ValueError as exc:
                raise ConfigError(str(exc), path=where, key=key) from None
        elif key == "account_header":
            header = _text(value, key=key, where=where).lower()
            if not all(c.isalnum() or c == "-" for c in header):
                raise ConfigError(f"{header!r} is not a header name", path=where, key=key)
            changes["account_header"] = header
        elif key == "admin_token":
            token = _text(value, key=key, where=where)
            if len(token) < 16:
                raise ConfigError("admin_token must be at least 16 characters", path=where, key=key)
            changes["admin_token"] = Secret(token)
        elif key == "max_body_bytes":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(f"expected a byte count, got {value!r}", path=where, key=key)
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(
                    f"expected a byte count, got {value!r}", path=where, key=key
                ) from None
            if not 256 <= number <= 16 * 1024 * 1024:
                raise ConfigError("must be between 256 and 16777216", path=where, key=key)
            changes["max_body_bytes"] = number
        elif key == "max_staleness_days":
            if value in (None, "", "off"):
                changes["max_staleness_days"] = None
                continue
            try:
                days = float(str(value))
            except ValueError:
                raise ConfigError(
                    f"expected a number of days, got {value!r}", path=where, key=key
                ) from None
            if days <= 0:
                raise ConfigError("must be a positive number of days", path=where, key=key)
            changes["max_staleness_days"] = days
        elif key == "log_level":
            level = _text(value, key=key, where=where).lower()
            if level not in LOG_LEVELS:
                raise ConfigError(
                    f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}", path=where, key=key
                )
            changes["log_level"] = level
        elif key == "access_log":
            changes["access_log"] = _bool(value, key=key, where=where)
        else:
            known = ", ".join(sorted(_SERVE_KEYS))
            raise ConfigError(f"unknown setting (known: {known})", path=where, key=key)
    return replace(config, **changes)


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[serve]`` and ``[accounts]`` tables of a TOML config file.

    Other top-level tables belong to other commands and are left alone. Raises ConfigError.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", path=str(p))
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such config file", path=str(p)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a TOML file", path=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(p)) from None
    serve = data.get("serve", {})
    accounts = data.get("accounts", {})
    for name, table in (("serve", serve), ("accounts", accounts)):
        if not isinstance(table, dict):
            raise ConfigError("expected a table", path=str(p), key=name)
    for key in accounts:
        if key not in _ACCOUNTS_KEYS:
            raise ConfigError(
                "unknown setting (known: blocked)", path=str(p), key=f"accounts.{key}"
            )
    return serve, accounts


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceConfig:
    """Build the configuration: defaults, then ``path`` (TOML), then ``env``, then ``overrides``.

    ``env`` is the process environment (pass ``os.environ``); only ``GEOGATE_<KEY>`` variables
    for the keys of the ``[serve]`` table are read, plus ``GEOGATE_CONFIG`` for the file when
    ``path`` is None. ``overrides`` are flag values keyed like the ``[serve]`` table (None
    values are ignored). Raises :class:`ConfigError` naming the file, key or variable.
    """
    environ = dict(env or {})
    config = ServiceConfig()
    file = path if path is not None else environ.get(f"{ENV_PREFIX}CONFIG") or None
    if file is not None:
        serve, accounts = read_config_file(file)
        config = _apply(config, serve, where=str(file))
        blocked = accounts.get("blocked", [])
        config = replace(
            config,
            blocked_accounts=_strings(blocked, key="accounts.blocked", where=str(file)),
            source=str(file),
        )
    from_env = {
        key: environ[f"{ENV_PREFIX}{key.upper()}"]
        for key in ENV_KEYS
        if f"{ENV_PREFIX}{key.upper()}" in environ
    }
    for key, value in from_env.items():
        config = _apply(config, {key: value}, where=f"{ENV_PREFIX}{key.upper()}")
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if flags:
        config = _apply(config, flags, where="command line")
    return config


def describe(config: ServiceConfig) -> dict[str, object]:
    """A JSON-ready view of ``config`` with the admin token masked (for logs and /readyz)."""
    return {
        "host": config.host,
        "port": config.port,
        "grpc": config.grpc_address,
        "policies": list(config.policies),
        "snapshot": config.snapshot or "embedded",
        "trusted_proxies": [str(n) for n in config.trusted_proxies.networks],
        "client_ip_header": config.client_ip_header.value,
        "fail_mode": config.fail_mode.value,
        "account_header": config.account_header,
        "admin_token": "***" if config.admin_token else None,
        "max_body_bytes": config.max_body_bytes,
        "max_staleness_days": config.max_staleness_days,
    }


def policy_specs(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """Flag values for ``--policy`` (repeatable) as the tuple the config holds, None if unset."""
    return tuple(values) if values else None
