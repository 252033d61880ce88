"""City names as location sources spell them, folded so that a policy and a snapshot agree.

A policy names a city inside a subdivision (``"UA-23/Zaporizhzhia"``); the snapshot keeps the
city its location source gave for ranges in the subdivisions built with city precision. The
two meet on :func:`city_key`: accents, apostrophes, case and a parenthesised district are
dropped (DB-IP writes ``"Kherson (Korabelnyi district)"`` and ``"Zaporizhzhya (Shevchenkovskiy
raion)"`` for parts of a city), and a small reviewed alias table joins the transliterations a
source mixes (``"Zaporizhzhya"``, ``"Zaporizhia"`` and ``"Zaporizhzhia"`` are one city).

:func:`canonical_city` is what the build keeps: the alias table's spelling for a known city,
else the source's name without the district; None for a "city" that is the subdivision's own
name (DB-IP's ``"Zaporizhzhia Oblast"`` rows locate the oblast, not a city in it).

A GeoNames id (``"UA-23/geonames:687700"``) names a city exactly where a source carries one
(MaxMind GeoIP2/GeoLite2 ``city.geoname_id``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_APOSTROPHES: Final = re.compile(r"[\u2019\u2018\u02bc\u02b9`'\u00b4]")
_DISTRICT: Final = re.compile(r"\s*\([^()]*\)\s*$")
_SPACES: Final = re.compile(r"[\s\-_.,]+")
_GEONAMES: Final = re.compile(r"^geonames:(\d{1,10})$")
# Words that make a "city" name the name of an administrative unit instead.
_UNIT_WORDS: Final = frozenset({"oblast", "oblast'", "region", "province", "raion", "krai"})

# Reviewed aliases: folded spelling -> canonical name, per ISO 3166-2 subdivision. Each entry is
# a spelling found in DB-IP city data (2026-06 release) for the same city, checked against the
# Ukrainian names' romanisations. Cities without an entry are matched on their folded name as
# the source spells it. Matching folds both sides, so a new entry takes effect without a
# rebuild; a rebuild also stores the canonical spelling.
_ALIASES: Final[dict[str, dict[str, str]]] = {
    "UA-09": {
        "sievierodonetsk": "Sievierodonetsk",
        "siverskodonetsk": "Sievierodonetsk",
        "syeverodonetsk": "Sievierodonetsk",
        "severodonetsk": "Sievierodonetsk",
    },
    "UA-23": {
        "zaporizhzhia": "Zaporizhzhia",
        "zaporizhzhya": "Zaporizhzhia",
        "zaporizhia": "Zaporizhzhia",
        "zaporizhzhe": "Zaporizhzhia",
        "zaporozhye": "Zaporizhzhia",
        "zaporozhe": "Zaporizhzhia",
    },
    "UA-65": {"kherson": "Kherson", "cherson": "Kherson"},
}
ALIASES: Final = _ALIASES
"""The reviewed alias table: subdivision -> folded spelling -> canonical city name."""

MAX_CITY_CHARS: Final = 100
"""Longest city name a policy may give (hostile-input limit)."""


def fold_city(name: str) -> str:
    """``name`` without accents, apostrophes, case, district suffix or repeated separators.

    ``"Kherson (Korabelnyi district)"`` -> ``"kherson"``; ``"Zaporiz'ka"`` -> ``"zaporizka"``.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _DISTRICT.sub("", _APOSTROPHES.sub("", text.casefold()))
    return " ".join(w for w in _SPACES.split(text) if w)


def city_key(subdivision: str, name: str) -> str:
    """The matching key of city ``name`` in ``subdivision``: a GeoNames reference
    (``"geonames:687700"``) as is, otherwise the folded canonical spelling."""
    text = name.strip()
    m = _GEONAMES.match(text.casefold())
    if m:
        return f"geonames:{int(m.group(1))}"
    folded = fold_city(text)
    canonical = _ALIASES.get(subdivision, {}).get(folded)
    return fold_city(canonical) if canonical is not None else folded


def canonical_city(subdivision: str, name: str | None) -> str | None:
    """The city name a snapshot keeps for a source's ``name`` in ``subdivision``: the alias
    table's spelling for a known city, else the name without its district suffix; None for an
    empty name or one that names an administrative unit (``"Zaporizhzhia Oblast"``)."""
    if not name or not name.strip():
        return None
    folded = fold_city(name)
    if not folded or any(w in _UNIT_WORDS for w in folded.split()):
        return None
    canonical = _ALIASES.get(subdivision, {}).get(folded)
    if canonical is not None:
        return canonical
    stripped = _DISTRICT.sub("", " ".join(name.split()))
    return stripped[:MAX_CITY_CHARS] or None


def is_geonames_ref(name: str) -> bool:
    """True for a ``geonames:ID`` city reference."""
    return _GEONAMES.match(name.strip().casefold()) is not None
