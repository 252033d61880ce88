"""The whole geogate exception hierarchy.

Public functions raise only these. Each error carries the fields that locate the problem
(file, line, key, address) so that the CLI and the HTTP service can print one clear line.
"""

from __future__ import annotations


class GeogateError(Exception):
    """Root of every error geogate raises on purpose."""

    exit_code: int = 1
    http_status: int = 500

    def one_line(self) -> str:
        """The error as one line for a terminal or a log, without a traceback."""
        return str(self).splitlines()[0] if str(self) else type(self).__name__


class ConfigError(GeogateError):
    """A configuration file, flag or environment variable is wrong."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ":".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class PolicyError(GeogateError):
    """A policy is invalid or cannot be loaded."""

    exit_code = 2


class PolicySyntaxError(PolicyError):
    """A policy file is malformed; carries the path, the line (when known) and the key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = path or "<policy>"
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.key = key
        self.detail = message


class ClientIPError(GeogateError):
    """A client address or forwarded header is malformed, too long or has too many hops."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, value: str | None = None) -> None:
        super().__init__(f"{message}: {value!r}" if value is not None else message)
        self.value = value


class IntelDataError(GeogateError):
    """IP intelligence data is missing, corrupt or stale."""

    exit_code = 3
    http_status = 503

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class StoreError(GeogateError):
    """The account store failed."""

    exit_code = 4
    http_status = 503


class StoreUnavailable(StoreError):
    """The account store cannot be reached."""


class StateConflict(StoreError):
    """An account state change conflicts with the current state."""

    exit_code = 5
    http_status = 409


class EventError(GeogateError):
    """A malformed event: carries the source (file), the line and the field."""

    exit_code = 2
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = source or "<event>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.field = field


class NotifyError(GeogateError):
    """A notice could not be rendered or delivered.

    ``is_permanent`` says whether retrying can help: a refused recipient or a payload the
    templates cannot render is permanent; a closed port, a timeout or a 5xx reply is not.
    ``channel`` names the notifier (``"smtp"``, ``"webhook"``, ``"render"``).
    """

    exit_code = 6
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        channel: str | None = None,
        notice_id: int | str | None = None,
        is_permanent: bool = False,
    ) -> None:
        where = channel or "notify"
        if notice_id is not None:
            where += f" notice {notice_id}"
        super().__init__(f"{where}: {message}")
        self.channel = channel
        self.notice_id = notice_id
        self.is_permanent = is_permanent
        self.detail = message
