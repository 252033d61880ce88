"""The Notifier port: something that delivers one rendered notice, or raises NotifyError."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from geogate.notify.language import Language
from geogate.notify.render import NoticeKind


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingNotice:
    """One delivery attempt of one notice: the rendered text plus what a receiver needs to
    route and deduplicate it.

    ``notice_id`` is stable across retries (used for the e-mail Message-ID and the webhook's
    delivery header); ``attempt`` counts from 1; ``at`` is when this attempt started (UTC).
    ``recipient`` is the e-mail address from the payload, if any.
    """

    notice_id: int
    account: str
    kind: NoticeKind
    policy_version: str
    language: Language
    recipient: str | None
    subject: str
    text: str
    html: str
    payload: Mapping[str, Any]
    attempt: int
    at: datetime


class Notifier(Protocol):
    """A delivery channel (SMTP, webhook).

    ``send`` returns once the receiver has accepted the notice and raises NotifyError
    otherwise, with ``is_permanent`` set when retrying cannot help.
    """

    @property
    def name(self) -> str:
        """Short channel name used in errors and reports (``"smtp"``)."""
        ...

    def accepts(self, notice: OutgoingNotice) -> bool:
        """Whether this channel can deliver ``notice`` at all (SMTP needs a recipient)."""
        ...

    def send(self, notice: OutgoingNotice) -> None:
        """Deliver ``notice``; NotifyError on failure."""
        ...
