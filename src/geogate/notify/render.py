"""Notices rendered from Jinja2 templates: a subject, a plain-text body and an HTML body.

The templates ship in ``geogate/notify/templates/<language>/<kind>.{subject,txt,html}.j2``; an
operator may override any of them from a folder of the same layout. HTML templates are
autoescaped (selected by the ``.html.j2`` suffix), text and subject templates are not, and every
template runs in Jinja's immutable sandbox with undefined names as errors.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from geogate.errors import NotifyError
from geogate.notify.language import Language, pick_language
from geogate.notify.localize import format_date, format_datetime, region_name
from geogate.policy.model import Region

# Payload strings end up in mail headers and bodies; longer ones are refused, not truncated.
MAX_FIELD_CHARS = 512
MAX_SUBJECT_CHARS = 200
MAX_REGIONS = 20

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NoticeKind(enum.StrEnum):
    """What a notice tells the account holder."""

    WARNING = "warning"  # used from an unsupported region; will be blocked from a date
    BLOCKED = "blocked"
    REINSTATED = "reinstated"

    @classmethod
    def parse(cls, text: str) -> NoticeKind:
        """``warning``/``blocked``/``reinstated`` (case-insensitive); NotifyError otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(k.value for k in cls)
            raise NotifyError(
                f"unknown notice kind {text!r} (expected one of {names})",
                channel="render",
                is_permanent=True,
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeDefaults:
    """Deployment-wide values the templates use when a notice's payload does not set them."""

    service_name: str = "Example API"
    appeal_url: str | None = None
    support_email: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeContext:
    """Everything a notice template may show, parsed from an outbox payload.

    ``regions`` are the unsupported regions the evidence points to (possibly none);
    ``effective_at`` is when blocking starts; ``blocked_at`` when the account was blocked.
    Templates word themselves around whatever is missing.
    """

    kind: NoticeKind
    account: str
    policy_version: str
    reference: str
    service_name: str
    email: str | None = None
    display_name: str | None = None
    regions: tuple[Region, ...] = ()
    region_name: str | None = None
    effective_at: datetime | None = None
    blocked_at: datetime | None = None
    appeal_url: str | None = None
    support_email: str | None = None
    categories: tuple[str, ...] = ()

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        kind: NoticeKind,
        account: str,
        policy_version: str,
        reference: str,
        defaults: NoticeDefaults | None = None,
    ) -> NoticeContext:
        """Parse an outbox payload; NotifyError (permanent) names the first bad key.

        Keys: ``email``, ``display_name``, ``region`` (an ISO 3166 code) and/or ``regions``
        (a list of them), ``region_name`` (overrides the names looked up from the codes),
        ``effective_at`` and ``blocked_at`` (RFC 3339; a blocked notice falls back to ``at``,
        the time of the state change), ``appeal_url`` (http or https), ``support_email``,
        ``service_name``. All are optional; other keys are ignored here (the webhook still
        forwards them).
        """
        base = defaults or NoticeDefaults()
        blocked_at = _when(payload, "blocked_at")
        if blocked_at is None and kind is NoticeKind.BLOCKED:
            blocked_at = _when(payload, "at")
        return cls(
            kind=kind,
            account=_check_text("account", account),
            policy_version=_check_text("policy_version", policy_version),
            reference=reference,
            service_name=_text(payload, "service_name") or base.service_name,
            email=_email(payload, "email"),
            display_name=_text(payload, "display_name"),
            regions=_regions(payload),
            region_name=_text(payload, "region_name"),
            effective_at=_when(payload, "effective_at"),
            blocked_at=blocked_at,
            appeal_url=_url(payload, "appeal_url") or base.appeal_url,
            support_email=_email(payload, "support_email") or base.support_email,
            categories=_categories(payload),
        )

    def variables(self, language: Language) -> dict[str, Any]:
        """The names templates see, with dates and region names written for ``language``."""
        name = self.region_name
        if name is None and self.regions:
            separator = "、" if language in (Language.ZH_HANS, Language.ZH_HANT) else ", "
            name = separator.join(region_name(r.code, language) for r in self.regions)
        return {
            "kind": self.kind.value,
            "language": language.value,
            "account": self.account,
            "policy_version": self.policy_version,
            "reference": self.reference,
            "service_name": self.service_name,
            "email": self.email,
            "display_name": self.display_name,
            "regions": [r.code for r in self.regions],
            "region_name": name,
            # How many regions region_name names, for singular/plural wording.
            "region_count": len(self.regions) or (1 if name else 0),
            "effective_at": _fmt(self.effective_at, language, format_datetime),
            "effective_date": _fmt(self.effective_at, language, format_date),
            "blocked_at": _fmt(self.blocked_at, language, format_datetime),
            "appeal_url": self.appeal_url,
            "support_email": self.support_email,
            "categories": list(self.categories),
            "evidence_text": evidence_text(self.categories, language),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedNotice:
    """A notice ready to send: one-line subject, plain text and HTML, in ``language``."""

    kind: NoticeKind
    language: Language
    subject: str
    text: str
    html: str


class NoticeRenderer:
    """Renders notices from the shipped templates, or from ``templates_dir`` where it has a file.

    One renderer can be shared between threads: Jinja environments are thread-safe once built.
    """

    def __init__(
        self, *, templates_dir: Path | None = None, defaults: NoticeDefaults | None = None
    ) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("geogate.notify", "templates")]
        if templates_dir is not None:
            loaders.insert(0, jinja2.FileSystemLoader(templates_dir))
        self.defaults = defaults or NoticeDefaults()
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2", "html"), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def context(
        self,
        payload: Mapping[str, Any],
        *,
        kind: NoticeKind,
        account: str,
        policy_version: str,
        reference: str,
    ) -> NoticeContext:
        """Parse ``payload`` with this renderer's defaults (see NoticeContext.from_payload)."""
        return NoticeContext.from_payload(
            payload,
            kind=kind,
            account=account,
            policy_version=policy_version,
            reference=reference,
            defaults=self.defaults,
        )

    def render(self, context: NoticeContext, *, language: Language | str | None) -> RenderedNotice:
        """Render ``context`` in the template language best matching ``language``.

        ``language`` may be a Language or an Accept-Language-like string (``zh-CN``); unknown
        or missing gives English. The subject is collapsed to one line and cut to
        MAX_SUBJECT_CHARS. Raises NotifyError (permanent) when a template is missing or fails,
        or the subject comes out empty.
        """
        lang = language if isinstance(language, Language) else pick_language(language)
        names = context.variables(lang)
        stem = f"{lang.value}/{context.kind.value}"
        subject = " ".join(self._render(f"{stem}.subject.j2", names).split())
        if not subject:
            raise NotifyError(
                f"template {stem}.subject.j2 gave an empty subject",
                channel="render",
                is_permanent=True,
            )
        if len(subject) > MAX_SUBJECT_CHARS:  # e.g. a very long account id
            subject = subject[: MAX_SUBJECT_CHARS - 1].rstrip() + "…"
        return RenderedNotice(
            kind=context.kind,
            language=lang,
            subject=subject,
            text=self._render(f"{stem}.txt.j2", names),
            html=self._render(f"{stem}.html.j2", names),
        )

    def _render(self, name: str, names: dict[str, Any]) -> str:
        try:
            return self._env.get_template(name).render(names)
        except jinja2.TemplateError as exc:
            raise NotifyError(
                f"template {name}: {type(exc).__name__}: {exc}", channel="render", is_permanent=True
            ) from exc


#: What a block notice says it is based on, per evidence category and language.
_EVIDENCE: dict[Language, tuple[str, str, dict[str, str]]] = {
    Language.EN: (
        "The block is based on evidence from after the enforcement date: ",
        "; ",
        {
            "payment": "a payment with a card or billing address from there",
            "direct_access": "requests made directly from there",
            "continued_use_through_anonymizers": (
                "continued use from there through VPNs, proxies or datacenter networks"
            ),
            "relay": "access relayed to users there through a shared service or proxy",
            "signup": "the sign-up details",
        },
    ),
    Language.RU: (
        "Блокировка основана на данных, полученных после даты вступления ограничений в силу: ",
        "; ",
        {
            "payment": "оплата картой или с платёжным адресом из этого региона",
            "direct_access": "запросы напрямую из этого региона",
            "continued_use_through_anonymizers": (
                "продолжение использования оттуда через VPN, прокси или сети дата-центров"
            ),
            "relay": (
                "перепродажа доступа пользователям в этом регионе через общий сервис или прокси"
            ),
            "signup": "данные регистрации",
        },
    ),
    Language.ZH_HANS: (
        "停用依据的是生效日期之后的证据：",
        "；",
        {
            "payment": "使用该地区的银行卡或账单地址付款",
            "direct_access": "直接从该地区发出的请求",
            "continued_use_through_anonymizers": "通过 VPN、代理或数据中心网络继续从该地区使用",
            "relay": "通过共享服务或代理向该地区用户转售访问",
            "signup": "注册信息",
        },
    ),
    Language.ZH_HANT: (
        "停用依據的是生效日期之後的證據：",
        "；",
        {
            "payment": "使用該地區的銀行卡或帳單地址付款",
            "direct_access": "直接從該地區發出的請求",
            "continued_use_through_anonymizers": "透過 VPN、代理或資料中心網路繼續從該地區使用",
            "relay": "透過共用服務或代理向該地區使用者轉售存取",
            "signup": "註冊資訊",
        },
    ),
}
EVIDENCE_CATEGORIES = frozenset(_EVIDENCE[Language.EN][2])


def evidence_text(categories: tuple[str, ...], language: Language) -> str | None:
    """One sentence naming what a block is based on, in ``language`` (None without categories)."""
    if not categories:
        return None
    lead, sep, names = _EVIDENCE.get(language, _EVIDENCE[Language.EN])
    end = "。" if language in (Language.ZH_HANS, Language.ZH_HANT) else "."
    return lead + sep.join(names[c] for c in categories if c in names) + end


def _categories(payload: Mapping[str, Any]) -> tuple[str, ...]:
    value = payload.get("categories")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad("categories", "must be a list of evidence categories")
    return tuple(v for v in value if v in EVIDENCE_CATEGORIES)


def sample_payload(kind: NoticeKind) -> dict[str, Any]:
    """An example payload of each kind, for ``geogate notices preview`` and the docs."""
    payload: dict[str, Any] = {
        "email": "dev@example.com",
        "display_name": "Example Dev",
        "region": "CN",
        "effective_at": "2026-03-01T00:00:00Z",
        "appeal_url": "https://example.com/appeal",
    }
    if kind is NoticeKind.BLOCKED:
        payload["blocked_at"] = "2026-03-02T09:30:00Z"
        payload["categories"] = ["direct_access", "continued_use_through_anonymizers"]
    return payload


def _bad(key: str, message: str) -> NotifyError:
    return NotifyError(f"payload key {key!r}: {message}", channel="render", is_permanent=True)


def _check_text(key: str, value: str) -> str:
    if len(value) > MAX_FIELD_CHARS:
        raise _bad(key, f"longer than {MAX_FIELD_CHARS} characters")
    if _CONTROL.search(value):
        raise _bad(key, "contains control characters")
    return value


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(key, f"expected a string, got {type(value).__name__}")
    return _check_text(key, value.strip())


def check_email(value: str) -> str:
    """``value`` if it is one plain address (``user@example.com``); ValueError otherwise.

    A display name, a second address or a line break would let a payload add mail headers.
    """
    _, address = parseaddr(value)
    if address != value or value.count("@") != 1 or " " in value or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not one e-mail address")
    local, domain = value.split("@")
    if not local or "." not in domain.strip("."):
        raise ValueError(f"{value!r} is not one e-mail address")
    return value


def check_url(value: str) -> str:
    """``value`` if it is an absolute http or https URL; ValueError otherwise (a
    ``javascript:`` link in an HTML notice would run when clicked)."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc or " " in value:
        raise ValueError(f"{value!r} is not an http or https URL")
    if _CONTROL.search(value):
        raise ValueError(f"{value!r} contains control characters")
    return value


def _email(payload: Mapping[str, Any], key: str) -> str | None:
    value = _text(payload, key)
    try:
        return None if value is None else check_email(value)
    except ValueError as exc:
        raise _bad(key, str(exc)) from None


def _url(payload: Mapping[str, Any], key: str) -> str | None:
    value = _text(payload, key)
    try:
        return None if value is None else check_url(value)
    except ValueError as exc:
        raise _bad(key, str(exc)) from None


def _regions(payload: Mapping[str, Any]) -> tuple[Region, ...]:
    items: list[tuple[str, Any]] = []
    if payload.get("region") not in (None, ""):
        items.append(("region", payload["region"]))
    many = payload.get("regions")
    if many is not None:
        if not isinstance(many, list | tuple):
            raise _bad("regions", f"expected a list of region codes, got {type(many).__name__}")
        if len(many) > MAX_REGIONS:
            raise _bad("regions", f"more than {MAX_REGIONS} regions")
        items.extend(("regions", item) for item in many)
    found: list[Region] = []
    for key, item in items:
        if not isinstance(item, str):
            raise _bad(key, f"expected a region code, got {type(item).__name__}")
        try:
            region = Region.parse(item)
        except ValueError as exc:
            raise _bad(key, str(exc)) from None
        if region not in found:
            found.append(region)
    return tuple(found)


def _when(payload: Mapping[str, Any], key: str) -> datetime | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _bad(key, f"{value!r} is not an RFC 3339 date-time") from None
    else:
        raise _bad(key, f"expected an RFC 3339 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        raise _bad(key, f"{value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def _fmt(
    at: datetime | None, language: Language, fmt: Callable[[datetime, Language], str]
) -> str | None:
    return None if at is None else fmt(at, language)
