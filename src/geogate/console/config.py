"""The ``[console]`` table of the service's configuration file: console users and sessions.

Operators sign in to the console either with an account API token (``[[accounts.tokens]]``,
the same tokens and roles as the HTTP API: nothing is duplicated) or with a user name and
password from ``[[console.users]]``; a password is stored only as an Argon2id hash (make one
with ``python -m geogate.console.passwords``)::

    [console]
    session_minutes = 120        # a session ends this long after sign-in
    secure_cookies = "auto"      # "auto": Secure when served over TLS; true / false to force

    [[console.users]]
    name = "dana"                # recorded as the actor of Dana's actions (operator:dana)
    role = "operator"            # or "viewer"
    password_hash = "$argon2id$v=19$m=65536,t=3,p=4$..."

A user may not share a name with an API token (both are actors in the audit log).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from geogate.accounts_api.tokens import Role
from geogate.errors import ConfigError

_CONSOLE_KEYS: Final = {"session_minutes", "secure_cookies", "users"}
_USER_KEYS: Final = {"name", "role", "password_hash"}


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """A console user: name (the actor recorded for their actions), role, Argon2 hash."""

    name: str
    role: Role
    password_hash: str

    def __repr__(self) -> str:
        return f"ConsoleUser(name={self.name!r}, role={self.role.name.lower()}, hash='***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSettings:
    """Parsed ``[console]`` table. ``secure_cookies`` None means: Secure when the request came
    over TLS."""

    users: tuple[ConsoleUser, ...] = ()
    session_minutes: int = 120
    secure_cookies: bool | None = None


def parse_console(raw: object, *, where: str | None) -> ConsoleSettings:
    """The ``[console]`` table ``raw`` parsed; ConfigError naming the file and key otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError("expected a table", path=where, key="console")
    unknown = sorted(set(raw) - _CONSOLE_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown setting (known: {', '.join(sorted(_CONSOLE_KEYS))})",
            path=where,
            key=f"console.{unknown[0]}",
        )
    minutes = raw.get("session_minutes", 120)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 10_080:
        raise ConfigError(
            "must be a whole number of minutes, 1 to 10080",
            path=where,
            key="console.session_minutes",
        )
    secure = raw.get("secure_cookies", "auto")
    if secure not in ("auto", True, False):
        raise ConfigError('must be "auto", true or false', path=where, key="console.secure_cookies")
    users_raw = raw.get("users", [])
    if not isinstance(users_raw, list) or not all(isinstance(u, dict) for u in users_raw):
        raise ConfigError("expected [[console.users]] tables", path=where, key="console.users")
    users: list[ConsoleUser] = []
    for i, table in enumerate(users_raw):
        prefix = f"console.users[{i}]."
        bad = sorted(set(table) - _USER_KEYS)
        if bad:
            raise ConfigError(
                f"unknown setting (known: {', '.join(sorted(_USER_KEYS))})",
                path=where,
                key=prefix + bad[0],
            )
        name = table.get("name")
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 64:
            raise ConfigError(
                "must be a name of 1 to 64 characters", path=where, key=prefix + "name"
            )
        try:
            role = Role.parse(str(table.get("role", "")))
        except ValueError as exc:
            raise ConfigError(str(exc), path=where, key=prefix + "role") from None
        hashed = table.get("password_hash")
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            raise ConfigError(
                "must be an Argon2 hash ($argon2id$...; python -m geogate.console.passwords)",
                path=where,
                key=prefix + "password_hash",
            )
        if any(u.name == name.strip() for u in users):
            raise ConfigError(f"a second user named {name!r}", path=where, key=prefix + "name")
        users.append(ConsoleUser(name.strip(), role, hashed))
    return ConsoleSettings(
        users=tuple(users),
        session_minutes=minutes,
        secure_cookies=None if secure == "auto" else bool(secure),
    )


def load_console_settings(source: str | None) -> ConsoleSettings:
    """The ``[console]`` table of the configuration file ``source`` (defaults without one)."""
    if source is None:
        return ConsoleSettings()
    try:
        data: dict[str, Any] = tomllib.loads(Path(source).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the [console] table: {exc}", path=source) from None
    if "console" not in data:
        return ConsoleSettings()
    return parse_console(data["console"], where=source)
