"""Subdivision names (as DB-IP and similar sources spell them) to ISO 3166-2 codes.

DB-IP's city data names the first-level subdivision in English (``"Kherson Oblast"``,
``"Kharkivs’ka Oblast’"``, ``"Sebastopol City"``) instead of giving a code. We match the name
against ``pycountry``'s subdivisions of the record's country after normalising both sides
(case, accents, apostrophes, words such as "Oblast", "Republic", "City"), then consult a small
reviewed alias table for spellings that no rule can reach (``"Transcarpathia"`` is UA-21).

Occupied Ukrainian territory: DB-IP files most Crimean networks under country RU with state
"Crimea" or "Sebastopol City" (and a few Luhansk ones likewise). Those names resolve to the
Ukrainian codes (UA-43, UA-40, UA-09, ...) whatever country the record carries; the record's
country itself is kept as the source said.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

import pycountry

# Words dropped from both sides before comparing (administrative kinds, not names).
_NOISE_WORDS: Final = frozenset(
    {
        "oblast",
        "oblast'",
        "oblasti",
        "republic",
        "respublika",
        "autonomous",
        "avtonomna",
        "city",
        "misto",
        "province",
        "region",
        "kray",
        "krai",
        "of",
        "the",
        "state",
        "governorate",
        "county",
        "district",
    }
)
_APOSTROPHES: Final = re.compile(r"[\u2019\u2018\u02bc\u02b9`'\u00b4]")
_SEPARATORS: Final = re.compile(r"[\s\-_.,/()]+")

# Reviewed aliases: normalised name -> ISO 3166-2 code, per country. Each entry is a spelling
# found in DB-IP city data (2026-06 release) that the normalised match cannot reach, checked
# against ISO 3166-2:UA. "Kyiv" alone is the oblast (UA-32): DB-IP names the city "Kyiv City".
_UA_ALIASES: Final[dict[str, str]] = {
    "vinnytsia": "UA-05",
    "vinnytsya": "UA-05",
    "vinnitsa": "UA-05",
    "vinnytska": "UA-05",
    "volyn": "UA-07",
    "luhansk": "UA-09",
    "lugansk": "UA-09",
    "dnipropetrovsk": "UA-12",
    "dnipro": "UA-12",
    "donetsk": "UA-14",
    "zhytomyr": "UA-18",
    "zakarpattia": "UA-21",
    "zakarpattya": "UA-21",
    "transcarpathia": "UA-21",
    "zaporizhzhia": "UA-23",
    "zaporizhzhya": "UA-23",
    "zaporizhia": "UA-23",
    "zaporizhzhe": "UA-23",
    "zaporozhye": "UA-23",
    "ivano frankivsk": "UA-26",
    "kyiv": "UA-32",
    "kiev": "UA-32",
    "kyivska": "UA-32",
    "kirovohrad": "UA-35",
    "kirovograd": "UA-35",
    "kropyvnytskyi": "UA-35",
    "sevastopol": "UA-40",
    "sebastopol": "UA-40",
    "crimea": "UA-43",
    "krym": "UA-43",
    "lviv": "UA-46",
    "mykolaiv": "UA-48",
    "mykolayiv": "UA-48",
    "nikolaev": "UA-48",
    "odesa": "UA-51",
    "odessa": "UA-51",
    "poltava": "UA-53",
    "rivne": "UA-56",
    "sumy": "UA-59",
    "ternopil": "UA-61",
    "kharkiv": "UA-63",
    "kharkivska": "UA-63",
    "kherson": "UA-65",
    "khmelnytskyi": "UA-68",
    "khmelnytskyy": "UA-68",
    "khmelnytskiy": "UA-68",
    "khmelnitskiy": "UA-68",
    "cherkasy": "UA-71",
    "chernihiv": "UA-74",
    "chernivtsi": "UA-77",
}
# "Kyiv City" normalises to "kyiv" too; keep the city apart before noise words are dropped.
_UA_CITY_NAMES: Final[dict[str, str]] = {"kyiv city": "UA-30", "kiev city": "UA-30"}

# Names that mean occupied Ukrainian territory when a source files them under another country.
_OCCUPIED_UA: Final = frozenset({"UA-43", "UA-40", "UA-14", "UA-09", "UA-23", "UA-65"})
# Crimea and Sevastopol resolve to UA whatever the country; the other occupied oblasts only
# when filed under RU (their names are not distinctive enough to apply to any country).
_ANY_COUNTRY: Final = frozenset({"UA-43", "UA-40"})
_FILED_UNDER_OCCUPIER: Final = frozenset({"RU"})

ALIASES: Final[dict[str, dict[str, str]]] = {"UA": _UA_ALIASES}
"""The reviewed alias table, per country (normalised name -> ISO 3166-2 code)."""


def normalise_name(name: str) -> str:
    """Fold a subdivision name for matching: no accents, apostrophes or kind words.

    ``"Kharkivs’ka Oblast’"`` -> ``"kharkivska"``; ``"Republic of Crimea"`` -> ``"crimea"``.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _APOSTROPHES.sub("", text.casefold())
    words = [w for w in _SEPARATORS.split(text) if w and w not in _NOISE_WORDS]
    return " ".join(words)


def _variants(norm: str) -> tuple[str, ...]:
    """Extra keys for Slavic adjectival forms: "sverdlovskaya" also answers "sverdlovsk"."""
    out = [norm]
    for ending, repl in (("skaya", "sk"), ("skiy", "sk"), ("skyi", "sk"), ("ska", "sk")):
        if norm.endswith(ending):
            out.append(norm[: -len(ending)] + repl)
    return tuple(out)


@functools.cache
def _country_index(country: str) -> dict[str, str]:
    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    subs = pycountry.subdivisions.get(country_code=country)  # type: ignore[no-untyped-call]
    for sub in subs or ():
        if getattr(sub, "parent_code", None):
            continue  # second-level units would shadow first-level names
        for key in _variants(normalise_name(str(sub.name))):
            if key in index and index[key] != sub.code:
                ambiguous.add(key)
            index.setdefault(key, str(sub.code))
        index.setdefault(normalise_name(str(sub.code).split("-", 1)[1]), str(sub.code))
    for key in ambiguous:
        del index[key]
    index.update(ALIASES.get(country, {}))
    return index


@functools.cache
def resolve_subdivision(country: str | None, name: str | None) -> str | None:
    """The ISO 3166-2 code for a subdivision ``name`` given by a source for ``country``.

    Returns None when the name is empty or cannot be matched (the build report lists those).
    Crimea and Sevastopol resolve to UA-43 / UA-40 whatever the country; the other occupied
    oblasts (Donetsk, Luhansk, Zaporizhzhia, Kherson) also resolve to UA when filed under RU.
    """
    if not name or not name.strip():
        return None
    cc = (country or "").upper()
    raw = " ".join(name.casefold().replace("’", "").replace("'", "").split())
    if cc == "UA" or raw in _UA_CITY_NAMES:
        city = _UA_CITY_NAMES.get(raw)
        if city is not None and cc in ("UA", ""):
            return city
    norm = normalise_name(name)
    if not norm:
        return None
    ua = _country_index("UA")
    for key in _variants(norm):
        code = ua.get(key)
        if code in _ANY_COUNTRY or (code in _OCCUPIED_UA and cc in _FILED_UNDER_OCCUPIER):
            return code
    if len(cc) != 2 or not cc.isalpha():
        return None
    index = _country_index(cc)
    for key in _variants(norm):
        code = index.get(key)
        if code is not None:
            return code
    return None
