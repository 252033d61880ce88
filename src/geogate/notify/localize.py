"""Dates and region names written the way each notice language writes them."""

from __future__ import annotations

import functools
import gettext
from datetime import UTC, datetime

import pycountry

from geogate.notify.language import Language

_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Russian dates use the genitive month name ("1 марта 2026 г.").
_RU_MONTHS = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)

# English and Chinese names for the Ukrainian subdivisions the presets name: the iso-codes
# English names are Ukrainian transliterations ("Avtonomna Respublika Krym") and there is no
# Chinese catalogue for ISO 3166-2, so notices would otherwise show names readers do not know.
_SUBDIVISION_NAMES: dict[str, dict[Language, str]] = {
    "UA-43": {Language.EN: "Crimea", Language.ZH_HANS: "克里米亚", Language.ZH_HANT: "克里米亞"},
    "UA-40": {
        Language.EN: "Sevastopol",
        Language.ZH_HANS: "塞瓦斯托波尔",
        Language.ZH_HANT: "塞瓦斯托波爾",
    },
    "UA-14": {
        Language.EN: "Donetsk oblast",
        Language.ZH_HANS: "顿涅茨克州",
        Language.ZH_HANT: "頓涅茨克州",
    },
    "UA-09": {
        Language.EN: "Luhansk oblast",
        Language.ZH_HANS: "卢甘斯克州",
        Language.ZH_HANT: "盧甘斯克州",
    },
    "UA-23": {
        Language.EN: "Zaporizhzhia oblast",
        Language.ZH_HANS: "扎波罗热州",
        Language.ZH_HANT: "札波羅熱州",
    },
    "UA-65": {
        Language.EN: "Kherson oblast",
        Language.ZH_HANS: "赫尔松州",
        Language.ZH_HANT: "赫爾松州",
    },
}

# The iso-codes translation catalogue that pycountry ships for each language.
_CATALOGUE = {Language.ZH_HANS: "zh_CN", Language.ZH_HANT: "zh_TW", Language.RU: "ru"}


def format_date(at: datetime, language: Language) -> str:
    """The calendar date of ``at`` in UTC, e.g. ``1 March 2026`` or ``2026年3月1日``."""
    day = at.astimezone(UTC)
    if language is Language.RU:
        return f"{day.day} {_RU_MONTHS[day.month - 1]} {day.year} г."
    if language in (Language.ZH_HANS, Language.ZH_HANT):
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {_EN_MONTHS[day.month - 1]} {day.year}"


def format_datetime(at: datetime, language: Language) -> str:
    """``at`` as a date and a UTC time, e.g. ``1 March 2026, 00:00 UTC``.

    The time is always shown with its zone: an enforcement date at midnight UTC is still the
    previous evening in the Americas.
    """
    utc = at.astimezone(UTC)
    clock = f"{utc:%H:%M}"
    if language in (Language.ZH_HANS, Language.ZH_HANT):
        return f"{format_date(utc, language)} {clock}（UTC）"
    return f"{format_date(utc, language)}, {clock} UTC"


@functools.lru_cache(maxsize=16)
def _translations(domain: str, language: Language) -> gettext.NullTranslations:
    catalogue = _CATALOGUE.get(language)
    if catalogue is None:
        return gettext.NullTranslations()
    return gettext.translation(domain, pycountry.LOCALES_DIR, languages=[catalogue], fallback=True)


@functools.lru_cache(maxsize=1024)
def region_name(code: str, language: Language) -> str:
    """The name of an ISO 3166-1 country or ISO 3166-2 subdivision code in ``language``.

    Uses the common name where ISO has one (``Iran`` rather than ``Iran, Islamic Republic
    of``); falls back to English, then to the code itself for a code ISO does not know.
    """
    if "-" in code:
        known = _SUBDIVISION_NAMES.get(code, {})
        if language in known:
            return known[language]
        subdivision = pycountry.subdivisions.get(code=code)  # type: ignore[no-untyped-call]
        if subdivision is None:
            return code
        return str(_translations("iso3166-2", language).gettext(subdivision.name))
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    name = getattr(country, "common_name", None) or country.name
    return str(_translations("iso3166-1", language).gettext(name))
