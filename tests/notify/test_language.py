"""Picking the template language from an account's Accept-Language-like tags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.notify.language import MAX_LANGUAGE_CHARS, Language, pick_language


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("zh", Language.ZH_HANS),
        ("zh-CN", Language.ZH_HANS),
        ("zh_CN", Language.ZH_HANS),
        ("zh-Hans", Language.ZH_HANS),
        ("zh-Hans-HK", Language.ZH_HANS),  # an explicit script beats the region
        ("zh-SG", Language.ZH_HANS),
        ("ZH-cn", Language.ZH_HANS),
        ("zh-TW", Language.ZH_HANT),
        ("zh-HK", Language.ZH_HANT),
        ("zh-MO", Language.ZH_HANT),
        ("zh-Hant", Language.ZH_HANT),
        ("zh-Hant-CN", Language.ZH_HANT),
        ("yue", Language.ZH_HANT),
        ("ru-RU", Language.RU),
        ("en-GB", Language.EN),
        ("fa-IR", Language.EN),  # no Persian templates: English
        ("", Language.EN),
        (None, Language.EN),
    ],
)
def test_single_tag_picks_the_expected_templates(tags: str | None, expected: Language) -> None:
    assert pick_language(tags) is expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", Language.ZH_HANS),
        ("fa-IR,ru;q=0.7,en;q=0.5", Language.RU),  # first supported by preference
        ("en;q=0.5, ru;q=0.9", Language.RU),  # order by q, not position
        ("ru;q=0, en", Language.EN),  # q=0 means "not acceptable"
        ("*, zh-TW;q=0.5", Language.ZH_HANT),
        ("de-DE,fr;q=0.8", Language.EN),
        ("ru;q=abc,zh", Language.ZH_HANS),  # a malformed q drops that entry only
        ("<script>,ru", Language.RU),
    ],
)
def test_accept_language_lists_follow_preference(tags: str, expected: Language) -> None:
    assert pick_language(tags) is expected


def test_default_is_used_when_nothing_matches() -> None:
    assert pick_language("de", default=Language.RU) is Language.RU


def test_overlong_input_is_cut_before_parsing() -> None:
    # A supported tag beyond the limit is never looked at.
    tags = "x-" + "a" * MAX_LANGUAGE_CHARS + ",ru"
    assert pick_language(tags) is Language.EN


@given(st.text(max_size=400))
def test_any_input_gives_a_supported_language_without_raising(tags: str) -> None:
    assert pick_language(tags) in set(Language)


@given(st.sampled_from(["zh-CN", "zh-TW", "ru", "en"]), st.text(alphabet=",; =q.", max_size=20))
def test_a_leading_supported_tag_wins_whatever_follows(tag: str, tail: str) -> None:
    assert pick_language(tag + "," + tail) is pick_language(tag)
