"""Which template language a notice is written in, from an Accept-Language-like tag list."""

from __future__ import annotations

import enum
import re

# Longer values are cut before parsing: a stored language comes from a client header and must
# not make rendering expensive (RFC 9110 sets no limit; browsers send well under 200 bytes).
MAX_LANGUAGE_CHARS = 256
MAX_LANGUAGE_ENTRIES = 16

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")

# Chinese regions whose default script is Traditional (BCP 47 / CLDR likely subtags).
_TRADITIONAL_REGIONS = frozenset({"TW", "HK", "MO"})


class Language(enum.StrEnum):
    """A language the shipped templates are written in; the value is the BCP 47 tag and the
    name of the template folder."""

    EN = "en"
    ZH_HANS = "zh-Hans"
    ZH_HANT = "zh-Hant"
    RU = "ru"


DEFAULT_LANGUAGE = Language.EN


def _match_tag(tag: str) -> Language | None:
    """The template language for one tag (``zh-CN`` -> zh-Hans), or None when not supported."""
    parts = tag.replace("_", "-").lower().split("-")
    primary, rest = parts[0], parts[1:]
    if primary == "en":
        return Language.EN
    if primary == "ru":
        return Language.RU
    if primary == "yue":  # Cantonese is written in Traditional characters by default
        return Language.ZH_HANT
    if primary not in {"zh", "cmn"}:
        return None
    for sub in rest:
        if sub == "hans":
            return Language.ZH_HANS
        if sub == "hant":
            return Language.ZH_HANT
    for sub in rest:
        if len(sub) == 2 and sub.upper() in _TRADITIONAL_REGIONS:
            return Language.ZH_HANT
    return Language.ZH_HANS


def pick_language(tags: str | None, *, default: Language = DEFAULT_LANGUAGE) -> Language:
    """The best template language for an Accept-Language-like list such as ``zh-CN,en;q=0.8``.

    Entries are tried by descending q-value (ties keep their order); the first one we have
    templates for wins. ``zh``, ``zh-CN`` and ``zh-Hans`` give Simplified Chinese; ``zh-TW``,
    ``zh-HK``, ``zh-MO`` and ``zh-Hant`` give Traditional Chinese. Malformed entries, ``*`` and
    ``q=0`` are ignored; nothing usable gives ``default``. Never raises.
    """
    if not tags:
        return default
    entries: list[tuple[float, int, str]] = []
    for index, raw in enumerate(tags[:MAX_LANGUAGE_CHARS].split(",")[:MAX_LANGUAGE_ENTRIES]):
        tag, _, params = raw.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        quality = 1.0
        if params:
            name, _, value = params.strip().partition("=")
            if name.strip().lower() != "q" or not _QVALUE.match(value.strip()):
                continue
            quality = float(value)
        if quality > 0:
            entries.append((-quality, index, tag))
    for _, _, tag in sorted(entries):
        language = _match_tag(tag)
        if language is not None:
            return language
    return default
