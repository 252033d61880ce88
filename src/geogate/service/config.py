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
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from geogate.accounts_api.tokens import ApiToken, Role
from geogate.client_ip import ClientIPHeader, TrustedProxies
from geogate.errors import ClientIPError, ConfigError
from geogate.secret import Secret

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

__all__ = ["ClientIPHeader", "FailMode", "ServiceConfig", "load_config"]


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
    loopback peers only. ``watch_seconds`` above 0 polls the policy and snapshot files that
    often and reloads when one changes (:mod:`geogate.service.watch`); 0 (the default) is off.

    The ``accounts_*`` fields come from the ``[accounts]`` table. ``accounts_db`` (a masked
    DSN: ``sqlite:///FILE`` or ``postgresql://...``) connects the service to the account
    store; None keeps the static ``blocked_accounts`` list only. The blocked set is read from
    the store every ``accounts_refresh_seconds``; when refreshes keep failing, the last set is
    used for at most ``accounts_max_stale_seconds`` after the last success, then the fail mode
    applies. ``accounts_tokens`` enable the account API (none: it is not mounted).
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
    max_concurrent_requests: int = 1024
    max_queue_delay_ms: float = 200.0
    retry_after_seconds: int = 1
    max_staleness_days: float | None = None
    log_level: str = "info"
    access_log: bool = False
    workers: int = 0  # processes serving the port; 0: one per core (os.cpu_count())
    watch_seconds: float = 0.0  # poll policy and snapshot files, reload on change; 0: off
    blocked_accounts: tuple[str, ...] = ()
    accounts_db: Secret | None = None
    accounts_refresh_seconds: float = 10.0
    accounts_max_stale_seconds: float = 300.0
    accounts_tokens: tuple[ApiToken, ...] = ()
    source: str | None = None  # the config file, for messages

    def __post_init__(self) -> None:
        # Built in Python, the trusted proxies are easily given as CIDR strings; a tuple of
        # strings would otherwise be kept as it is and silently trust no proxy at all.
        proxies: object = self.trusted_proxies
        if not isinstance(proxies, TrustedProxies):
            if isinstance(proxies, str) or not isinstance(proxies, Sequence):
                raise ConfigError(
                    "expected a TrustedProxies or a list of CIDRs", key="trusted_proxies"
                )
            try:
                parsed = TrustedProxies.parse(str(c) for c in proxies)
            except ClientIPError as exc:
                raise ConfigError(str(exc), key="trusted_proxies") from None
            object.__setattr__(self, "trusted_proxies", parsed)

    @property
    def worker_count(self) -> int:
        """How many processes serve: ``workers``, or the number of cores when it is 0."""
        return self.workers or (os.cpu_count() or 1)

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
    "max_concurrent_requests",
    "max_queue_delay_ms",
    "retry_after_seconds",
    "max_staleness_days",
    "log_level",
    "access_log",
    "workers",
    "watch_seconds",
}
_ACCOUNTS_KEYS: Final = {
    "blocked",
    "db",
    "db_env",
    "db_file",
    "refresh_seconds",
    "max_stale_seconds",
    "tokens",
}
_TOKEN_KEYS: Final = {"name", "role", "secret", "secret_env", "secret_file"}
MIN_TOKEN_CHARS: Final = 16

ENV_PREFIX: Final = "GEOGATE_"
#: Environment variables read by :func:`load_config` (``GEOGATE_`` + upper-case key).
ENV_KEYS: Final = tuple(sorted(_SERVE_KEYS))
#: Environment variables for the ``[accounts]`` table: variable -> key. ``GEOGATE_DB`` is the
#: variable the ``geogate accounts``/``ingest``/``enforce`` commands read too, so one setting
#: points the CLI and the service at the same store.
ACCOUNTS_ENV: Final = {
    f"{ENV_PREFIX}DB": "db",
    f"{ENV_PREFIX}ACCOUNTS_REFRESH_SECONDS": "refresh_seconds",
    f"{ENV_PREFIX}ACCOUNTS_MAX_STALE_SECONDS": "max_stale_seconds",
}


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
        elif key in _LIMITS:
            low, high, kind = _LIMITS[key]
            changes[key] = _bounded(value, key=key, where=where, low=low, high=high, kind=kind)
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
        elif key == "workers":
            try:
                count = int(str(value)) if not isinstance(value, bool) else -1
            except ValueError:
                count = -1
            if not 0 <= count <= 512:
                raise ConfigError(
                    f"expected a number of processes 0-512 (0: one per core), got {value!r}",
                    path=where,
                    key=key,
                )
            changes["workers"] = count
        elif key == "watch_seconds":
            seconds = _bounded(value, key=key, where=where, low=0, high=86_400, kind=float)
            if 0 < seconds < 0.1:
                raise ConfigError("must be 0 (off) or at least 0.1 seconds", path=where, key=key)
            changes["watch_seconds"] = seconds
        else:
            known = ", ".join(sorted(_SERVE_KEYS))
            raise ConfigError(f"unknown setting (known: {known})", path=where, key=key)
    return replace(config, **changes)


#: Overload settings: key -> (lowest, highest, type); 0 turns a limit off.
_LIMITS: Final[Mapping[str, tuple[float, float, type]]] = {
    "max_concurrent_requests": (0, 1_000_000, int),
    "max_queue_delay_ms": (0, 60_000, float),
    "retry_after_seconds": (1, 3600, int),
}


def _bounded(
    value: object, *, key: str, where: str | None, low: float, high: float, kind: type
) -> float:
    """A number within [low, high]; whole when ``kind`` is int."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(str(value).strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"expected {what}, got {value!r}", path=where, key=key) from None
    if not low <= number <= high:
        raise ConfigError(f"must be between {low:g} and {high:g}", path=where, key=key)
    return number  # type: ignore[no-any-return]


def _seconds(value: object, *, key: str, where: str | None, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"expected a number of seconds, got {value!r}", path=where, key=key)
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(
            f"expected a number of seconds, got {value!r}", path=where, key=key
        ) from None
    if not low <= number <= high:
        raise ConfigError(f"must be between {low:g} and {high:g} seconds", path=where, key=key)
    return number


def _resolve(text: str, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _secret(
    table: Mapping[str, Any],
    key: str,
    *,
    prefix: str,
    where: str | None,
    env: Mapping[str, str],
    base_dir: Path | None,
) -> Secret | None:
    """``key`` inline, ``key_env`` (an environment variable's name) or ``key_file`` (a file
    holding it, relative to the config file): exactly one of them, or None for none."""
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in table]
    if len(given) > 1:
        raise ConfigError(f"set only one of {', '.join(given)}", path=where, key=f"{prefix}{key}")
    if not given:
        return None
    name = given[0]
    value = _text(table[name], key=f"{prefix}{name}", where=where)
    if name == key:
        return Secret(value)
    if name.endswith("_env"):
        if not env.get(value):
            raise ConfigError(
                f"environment variable {value!r} is not set", path=where, key=f"{prefix}{name}"
            )
        return Secret(env[value].strip())
    file = _resolve(value, base_dir)
    try:
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read {file}: {reason}", path=where, key=f"{prefix}{name}"
        ) from None
    if not text:
        raise ConfigError(f"{file} is empty", path=where, key=f"{prefix}{name}")
    return Secret(text)


def _db(value: str, *, key: str, where: str | None) -> Secret:
    """A database URL checked for its scheme (the store's own rules), kept masked."""
    from geogate.store.sql import normalise_url  # noqa: PLC0415 - SQLAlchemy only when needed

    try:
        normalise_url(value)
    except ConfigError as exc:
        # The message names the scheme only, never the rest of the URL.
        message = str(exc).split(": ", 1)[-1]
        raise ConfigError(message, path=where, key=key) from None
    return Secret(value.strip())


def _tokens(
    value: object, *, where: str | None, env: Mapping[str, str], base_dir: Path | None
) -> tuple[ApiToken, ...]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(
            "expected [[accounts.tokens]] tables (name, role, secret)",
            path=where,
            key="accounts.tokens",
        )
    tokens: list[ApiToken] = []
    for i, table in enumerate(value):
        prefix = f"accounts.tokens[{i}]."
        unknown = sorted(set(table) - _TOKEN_KEYS)
        if unknown:
            known = ", ".join(sorted(_TOKEN_KEYS))
            raise ConfigError(
                f"unknown setting (known: {known})", path=where, key=f"{prefix}{unknown[0]}"
            )
        if "name" not in table:
            raise ConfigError("is required", path=where, key=f"{prefix}name")
        name = _text(table["name"], key=f"{prefix}name", where=where)
        try:
            role = Role.parse(_text(table.get("role", ""), key=f"{prefix}role", where=where))
        except ValueError as exc:
            raise ConfigError(str(exc), path=where, key=f"{prefix}role") from None
        secret = _secret(table, "secret", prefix=prefix, where=where, env=env, base_dir=base_dir)
        if secret is None:
            raise ConfigError(
                "is required (or secret_env / secret_file)", path=where, key=f"{prefix}secret"
            )
        if len(secret.reveal()) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"must be at least {MIN_TOKEN_CHARS} characters", path=where, key=f"{prefix}secret"
            )
        if any(t.name == name for t in tokens):
            raise ConfigError(f"a second token named {name!r}", path=where, key=f"{prefix}name")
        if any(t.secret == secret for t in tokens):
            raise ConfigError("the same secret as another token", path=where, key=f"{prefix}secret")
        tokens.append(ApiToken(name, role, secret))
    return tuple(tokens)


def _apply_accounts(
    config: ServiceConfig,
    raw: Mapping[str, Any],
    *,
    where: str | None,
    env: Mapping[str, str],
    base_dir: Path | None = None,
) -> ServiceConfig:
    """``config`` with the values of ``raw`` (keys as in the ``[accounts]`` table) parsed in."""
    changes: dict[str, Any] = {}
    unknown = sorted(set(raw) - _ACCOUNTS_KEYS)
    if unknown:
        known = ", ".join(sorted(_ACCOUNTS_KEYS))
        raise ConfigError(
            f"unknown setting (known: {known})", path=where, key=f"accounts.{unknown[0]}"
        )
    if "blocked" in raw:
        changes["blocked_accounts"] = _strings(raw["blocked"], key="accounts.blocked", where=where)
    db = _secret(raw, "db", prefix="accounts.", where=where, env=env, base_dir=base_dir)
    if db is not None:
        key = "accounts." + next(k for k in ("db", "db_env", "db_file") if k in raw)
        changes["accounts_db"] = _db(db.reveal(), key=key, where=where)
    if "refresh_seconds" in raw:
        changes["accounts_refresh_seconds"] = _seconds(
            raw["refresh_seconds"], key="accounts.refresh_seconds", where=where, low=0.1, high=3600
        )
    if "max_stale_seconds" in raw:
        changes["accounts_max_stale_seconds"] = _seconds(
            raw["max_stale_seconds"],
            key="accounts.max_stale_seconds",
            where=where,
            low=0.1,
            high=7 * 86_400,
        )
    if "tokens" in raw:
        changes["accounts_tokens"] = _tokens(raw["tokens"], where=where, env=env, base_dir=base_dir)
    return replace(config, **changes)


def _check_accounts(config: ServiceConfig) -> None:
    """Consistency of the ``[accounts]`` settings once every source is applied."""
    where = config.source
    if config.accounts_tokens and config.accounts_db is None:
        raise ConfigError(
            "the account API needs a store: set accounts.db (or GEOGATE_DB)",
            path=where,
            key="accounts.tokens",
        )
    if config.accounts_max_stale_seconds < config.accounts_refresh_seconds:
        raise ConfigError(
            f"must be at least refresh_seconds ({config.accounts_refresh_seconds:g})",
            path=where,
            key="accounts.max_stale_seconds",
        )


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
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError("invalid TOML: nested too deeply", path=str(p)) from None
    except ValueError as exc:  # an integer beyond the interpreter's 4,300-digit limit
        detail = str(exc).split(";")[0].splitlines()[0] if str(exc) else "bad value"
        raise ConfigError(f"invalid TOML: {detail}", path=str(p)) from None
    serve = data.get("serve", {})
    accounts = data.get("accounts", {})
    for name, table in (("serve", serve), ("accounts", accounts)):
        if not isinstance(table, dict):
            raise ConfigError("expected a table", path=str(p), key=name)
    unknown = sorted(set(accounts) - _ACCOUNTS_KEYS)
    if unknown:
        known = ", ".join(sorted(_ACCOUNTS_KEYS))
        raise ConfigError(
            f"unknown setting (known: {known})", path=str(p), key=f"accounts.{unknown[0]}"
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
    for the keys of the ``[serve]`` table are read, the :data:`ACCOUNTS_ENV` ones for the
    ``[accounts]`` table, plus ``GEOGATE_CONFIG`` for the file when ``path`` is None (``env``
    also resolves ``*_env`` secrets). ``overrides`` are flag values keyed like the ``[serve]``
    table, plus ``db`` for ``accounts.db`` (None values are ignored). Raises
    :class:`ConfigError` naming the file, key or variable.
    """
    environ = dict(env or {})
    config = ServiceConfig()
    file = path if path is not None else environ.get(f"{ENV_PREFIX}CONFIG") or None
    if file is not None:
        serve, accounts = read_config_file(file)
        config = _apply(config, serve, where=str(file))
        config = _apply_accounts(
            config, accounts, where=str(file), env=environ, base_dir=Path(file).parent
        )
        config = replace(config, source=str(file))
    from_env = {
        key: environ[f"{ENV_PREFIX}{key.upper()}"]
        for key in ENV_KEYS
        if f"{ENV_PREFIX}{key.upper()}" in environ
    }
    for key, value in from_env.items():
        config = _apply(config, {key: value}, where=f"{ENV_PREFIX}{key.upper()}")
    for variable, key in ACCOUNTS_ENV.items():
        if environ.get(variable):
            config = _apply_accounts(config, {key: environ[variable]}, where=variable, env=environ)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    db_flag = flags.pop("db", None)
    if flags:
        config = _apply(config, flags, where="command line")
    if db_flag is not None:
        config = _apply_accounts(config, {"db": db_flag}, where="command line", env=environ)
    _check_accounts(config)
    return config


def db_label(db: Secret | None) -> str | None:
    """The store a DSN names, safe to log: a SQLite URL whole (it holds no credentials), any
    other URL as its scheme only (user, password, host and options may all be sensitive)."""
    if db is None:
        return None
    url = db.reveal().strip()
    if "://" not in url:
        return f"sqlite:///{url}"
    scheme = url.split("://", 1)[0]
    return url if scheme.startswith("sqlite") else f"{scheme}://***"


def describe(config: ServiceConfig) -> dict[str, object]:
    """A JSON-ready view of ``config`` with secrets masked (for logs and ``serve --check``)."""
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
        "max_concurrent_requests": config.max_concurrent_requests,
        "max_queue_delay_ms": config.max_queue_delay_ms,
        "retry_after_seconds": config.retry_after_seconds,
        "max_staleness_days": config.max_staleness_days,
        "workers": config.worker_count,
        "watch_seconds": config.watch_seconds or None,
        "accounts": {
            "db": db_label(config.accounts_db),
            "refresh_seconds": config.accounts_refresh_seconds,
            "max_stale_seconds": config.accounts_max_stale_seconds,
            "static_blocked": len(config.blocked_accounts),
            "tokens": [f"{t.name} ({t.role.name.lower()})" for t in config.accounts_tokens],
        },
    }


def policy_specs(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """Flag values for ``--policy`` (repeatable) as the tuple the config holds, None if unset."""
    return tuple(values) if values else None
