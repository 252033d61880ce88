"""The ``[notify]`` section of the geogate TOML configuration, parsed into frozen values.

Secrets can be written inline (``password = "..."``), named by environment variable
(``password_env = "NAME"``) or read from a file (``password_file = "path"``); exactly one of
the three. Unknown keys are errors, so a misspelt option never goes unnoticed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geogate.errors import ConfigError
from geogate.notify.notifier import Notifier
from geogate.notify.outbox import RetryPolicy
from geogate.notify.render import NoticeDefaults, check_email, check_url
from geogate.notify.smtp import SmtpConfig, SmtpNotifier
from geogate.notify.webhook import WebhookConfig, WebhookNotifier
from geogate.secret import Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    """Everything notice delivery needs: template defaults, where the templates live, the
    retry schedule, the batch size and the configured channels (either may be None)."""

    defaults: NoticeDefaults = field(default_factory=NoticeDefaults)
    templates_dir: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_limit: int = 100
    smtp: SmtpConfig | None = None
    webhook: WebhookConfig | None = None

    def notifiers(self) -> list[Notifier]:
        """The configured channels, SMTP first."""
        found: list[Notifier] = []
        if self.smtp is not None:
            found.append(SmtpNotifier(self.smtp))
        if self.webhook is not None:
            found.append(WebhookNotifier(self.webhook))
        return found


_TOP_KEYS = {
    "service_name",
    "appeal_url",
    "support_email",
    "templates_dir",
    "batch_limit",
    "retry",
    "smtp",
    "webhook",
}
_RETRY_KEYS = {"max_attempts", "first_delay_seconds", "factor", "max_delay_seconds"}
_SMTP_KEYS = {
    "host",
    "port",
    "starttls",
    "ssl",
    "username",
    "password",
    "password_env",
    "password_file",
    "from_address",
    "reply_to",
    "timeout_seconds",
    "ca_file",
    "allow_plaintext_auth",
}
_WEBHOOK_KEYS = {"url", "secret", "secret_env", "secret_file", "timeout_seconds", "allow_http"}


class _Section:
    """Typed reads from one TOML table, with errors that name the file and the dotted key."""

    def __init__(self, data: Any, *, prefix: str, path: str | None, allowed: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError("must be a table", path=path, key=prefix)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(allowed))}",
                path=path,
                key=prefix,
            )
        self.data = data
        self.prefix = prefix
        self.path = path

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, key=f"{self.prefix}.{key}")

    def _get(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int in Python; a port of `true` is not what anyone meant.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(key, f"expected {what}, got {type(value).__name__}")
        return value

    def text(self, key: str) -> str | None:
        value = self._get(key, (str,), "a string")
        return None if value is None else str(value)

    def number(self, key: str) -> float | None:
        value = self._get(key, (int, float), "a number")
        return None if value is None else float(value)

    def integer(self, key: str) -> int | None:
        value = self._get(key, (int,), "an integer")
        return None if value is None else int(value)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, (bool,), "true or false") or False)

    def secret(self, key: str, *, env: Mapping[str, str], base_dir: Path | None) -> Secret | None:
        given = [k for k in (key, f"{key}_env", f"{key}_file") if k in self.data]
        if len(given) > 1:
            raise self.error(key, f"set only one of {', '.join(given)}")
        if not given:
            return None
        if key in self.data:
            inline = self.text(key)
            return Secret(inline or "")
        if f"{key}_env" in self.data:
            name = self.text(f"{key}_env") or ""
            if name not in env:
                raise self.error(f"{key}_env", f"environment variable {name!r} is not set")
            return Secret(env[name])
        file = _resolve(self.text(f"{key}_file") or "", base_dir)
        try:
            return Secret(file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise self.error(f"{key}_file", f"cannot read {file}: {exc.strerror}") from None


def _located(exc: ConfigError, path: str | None) -> ConfigError:
    """``exc`` again with the config file's path (values validate themselves without it)."""
    message = str(exc)
    if exc.key and message.startswith(f"{exc.key}: "):
        message = message[len(exc.key) + 2 :]
    return ConfigError(message, path=path, key=exc.key)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _resolve(text: str, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def parse_notify_config(
    document: Mapping[str, Any],
    *,
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> NotifyConfig:
    """The ``[notify]`` table of a parsed TOML document (a document without one gives the
    defaults and no channels). ``env`` resolves ``*_env`` secrets; relative paths are taken
    from ``base_dir`` (the config file's folder). ConfigError names the file and the key."""
    env = env or {}
    raw = document.get("notify")
    if raw is None:
        return NotifyConfig()
    top = _Section(raw, prefix="notify", path=path, allowed=_TOP_KEYS)
    service_name = top.text("service_name")
    if not service_name:
        raise top.error("service_name", "is required (the product name notices mention)")
    defaults = _defaults(top, service_name)
    templates = top.text("templates_dir")
    templates_dir = _resolve(templates, base_dir) if templates else None
    if templates_dir is not None and not templates_dir.is_dir():
        raise top.error("templates_dir", f"{templates_dir} is not a folder")
    batch_limit = int(_or(top.integer("batch_limit"), 100))
    if batch_limit < 1:
        raise top.error("batch_limit", "must be at least 1")
    retry = RetryPolicy()
    if "retry" in top.data:
        section = _Section(top.data["retry"], prefix="notify.retry", path=path, allowed=_RETRY_KEYS)
        try:
            retry = RetryPolicy(
                max_attempts=int(_or(section.integer("max_attempts"), retry.max_attempts)),
                first_delay_seconds=_or(
                    section.number("first_delay_seconds"), retry.first_delay_seconds
                ),
                factor=_or(section.number("factor"), retry.factor),
                max_delay_seconds=_or(section.number("max_delay_seconds"), retry.max_delay_seconds),
            )
        except ConfigError as exc:
            raise _located(exc, path) from None
    smtp = None
    if "smtp" in top.data:
        smtp = _smtp(
            _Section(top.data["smtp"], prefix="notify.smtp", path=path, allowed=_SMTP_KEYS),
            env=env,
            base_dir=base_dir,
        )
    webhook = None
    if "webhook" in top.data:
        webhook = _webhook(
            _Section(
                top.data["webhook"], prefix="notify.webhook", path=path, allowed=_WEBHOOK_KEYS
            ),
            env=env,
            base_dir=base_dir,
        )
    return NotifyConfig(
        defaults=defaults,
        templates_dir=templates_dir,
        retry=retry,
        batch_limit=batch_limit,
        smtp=smtp,
        webhook=webhook,
    )


def load_notify_config(path: Path, *, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read ``path`` (TOML) and parse its ``[notify]`` table; ConfigError on any problem."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError("not valid TOML: nested too deeply", path=str(path)) from None
    except ValueError as exc:  # an integer beyond the interpreter's 4,300-digit limit
        detail = str(exc).split(";")[0].splitlines()[0] if str(exc) else "bad value"
        raise ConfigError(f"not valid TOML: {detail}", path=str(path)) from None
    return parse_notify_config(document, path=str(path), env=env, base_dir=path.parent)


def _defaults(top: _Section, service_name: str) -> NoticeDefaults:
    appeal_url = top.text("appeal_url")
    support_email = top.text("support_email")
    try:
        if appeal_url is not None:
            check_url(appeal_url)
    except ValueError as exc:
        raise top.error("appeal_url", str(exc)) from None
    try:
        if support_email is not None:
            check_email(support_email)
    except ValueError as exc:
        raise top.error("support_email", str(exc)) from None
    return NoticeDefaults(
        service_name=service_name, appeal_url=appeal_url, support_email=support_email
    )


def _smtp(section: _Section, *, env: Mapping[str, str], base_dir: Path | None) -> SmtpConfig:
    starttls = section.flag("starttls")
    use_ssl = section.flag("ssl")
    default_port = 465 if use_ssl else 587 if starttls else 25
    ca = section.text("ca_file")
    ca_file = _resolve(ca, base_dir) if ca else None
    if ca_file is not None and not ca_file.is_file():
        raise section.error("ca_file", f"{ca_file} is not a file")
    host = section.text("host")
    from_address = section.text("from_address")
    if not host:
        raise section.error("host", "is required")
    if not from_address:
        raise section.error("from_address", "is required")
    try:
        return SmtpConfig(
            host=host,
            port=int(_or(section.integer("port"), default_port)),
            from_address=from_address,
            starttls=starttls,
            ssl=use_ssl,
            username=section.text("username"),
            password=section.secret("password", env=env, base_dir=base_dir),
            reply_to=section.text("reply_to"),
            timeout_seconds=_or(section.number("timeout_seconds"), 10.0),
            ca_file=ca_file,
            allow_plaintext_auth=section.flag("allow_plaintext_auth"),
        )
    except ConfigError as exc:
        raise _located(exc, section.path) from None


def _webhook(section: _Section, *, env: Mapping[str, str], base_dir: Path | None) -> WebhookConfig:
    url = section.text("url")
    if not url:
        raise section.error("url", "is required")
    secret = section.secret("secret", env=env, base_dir=base_dir)
    if secret is None:
        raise section.error("secret", "is required (or secret_env / secret_file)")
    try:
        return WebhookConfig(
            url=url,
            secret=secret,
            timeout_seconds=_or(section.number("timeout_seconds"), 10.0),
            allow_http=section.flag("allow_http"),
        )
    except ConfigError as exc:
        raise _located(exc, section.path) from None
