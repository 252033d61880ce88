"""Rendering notices from the shipped templates: every language and kind, escaping, payload
parsing and the errors that make a notice undeliverable."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from geogate.errors import NotifyError
from geogate.notify.language import Language
from geogate.notify.render import (
    MAX_SUBJECT_CHARS,
    NoticeContext,
    NoticeDefaults,
    NoticeKind,
    NoticeRenderer,
    RenderedNotice,
    sample_payload,
)

RENDERER = NoticeRenderer(defaults=NoticeDefaults(service_name="Acme API"))


def render(
    kind: NoticeKind = NoticeKind.WARNING,
    language: str | None = "en",
    renderer: NoticeRenderer = RENDERER,
    **payload: Any,
) -> RenderedNotice:
    data = sample_payload(kind) | payload
    context = renderer.context(
        data, kind=kind, account="acct_42", policy_version="deny@2026-01", reference="GN-000007"
    )
    return renderer.render(context, language=language)


def test_every_language_has_subject_text_and_html_for_every_kind() -> None:
    root = files("geogate.notify") / "templates"
    for language in Language:
        for kind in NoticeKind:
            for part in ("subject", "txt", "html"):
                assert (root / language.value / f"{kind.value}.{part}.j2").is_file(), (
                    language,
                    kind,
                    part,
                )


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", list(NoticeKind))
def test_each_template_renders_with_account_reference_and_policy(
    language: Language, kind: NoticeKind
) -> None:
    notice = render(kind, language.value)
    assert notice.language is language
    assert notice.kind is kind
    assert "\n" not in notice.subject
    for body in (notice.text, notice.html):
        assert "acct_42" in body
        assert "GN-000007" in body
        assert "deny@2026-01" in body
        assert "Acme API" in body
    assert notice.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{language.value}">' in notice.html


def test_english_warning_names_region_date_and_how_to_appeal() -> None:
    notice = render(NoticeKind.WARNING, "en-US")
    assert notice.subject == (
        "Action required: Acme API access from unsupported regions ends on 1 March 2026"
    )
    assert "has been used from China" in notice.text
    assert "From 1 March 2026, 00:00 UTC" in notice.text
    assert "To appeal, open https://example.com/appeal" in notice.text
    assert '<a href="https://example.com/appeal"' in notice.html


def test_simplified_chinese_warning_uses_chinese_dates_and_region_names() -> None:
    notice = render(NoticeKind.WARNING, "zh-CN", region="RU")
    assert notice.language is Language.ZH_HANS
    assert "2026年3月1日" in notice.subject
    assert "曾在俄罗斯使用" in notice.text
    assert "自 2026年3月1日 00:00（UTC） 起" in notice.text
    assert "申诉请访问 https://example.com/appeal" in notice.text


def test_traditional_chinese_for_taiwan_and_hong_kong() -> None:
    for tag in ("zh-TW", "zh-HK"):
        notice = render(NoticeKind.BLOCKED, tag)
        assert notice.language is Language.ZH_HANT
        assert "帳戶" in notice.subject  # Traditional form; Simplified would be 账户


def test_russian_blocked_notice() -> None:
    notice = render(NoticeKind.BLOCKED, "ru-RU", region="IR")
    assert notice.subject == "Ваш аккаунт acct_42 в Acme API заблокирован"
    assert "с 2 марта 2026 г., 09:30 UTC" in notice.text
    assert "«Иран»" in notice.text


def test_occupied_ukrainian_regions_have_readable_names() -> None:
    assert "Crimea" in render(region="UA-43").text
    assert "克里米亚" in render(language="zh", region="UA-43").text


def test_unknown_language_falls_back_to_english() -> None:
    assert render(language="fa-IR").language is Language.EN
    assert render(language=None).language is Language.EN


def test_appeal_falls_back_to_support_email_then_reply() -> None:
    renderer = NoticeRenderer(defaults=NoticeDefaults(service_name="Acme API"))
    by_mail = render(renderer=renderer, appeal_url=None, support_email="appeals@example.com")
    assert "write to appeals@example.com" in by_mail.text
    assert '<a href="mailto:appeals@example.com">' in by_mail.html
    neither = render(renderer=renderer, appeal_url=None)
    assert "reply to this message" in neither.text


def test_defaults_fill_what_the_payload_leaves_out() -> None:
    renderer = NoticeRenderer(
        defaults=NoticeDefaults(service_name="Acme API", appeal_url="https://acme.test/appeal")
    )
    notice = render(renderer=renderer, appeal_url=None)
    assert "https://acme.test/appeal" in notice.text


def test_html_body_escapes_payload_values_and_text_body_keeps_them() -> None:
    hostile = '<script>alert("x")</script> & <b>'
    notice = render(display_name=hostile, region_name='"><img src=x onerror=alert(1)>')
    assert "<script>" not in notice.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in notice.html
    assert "<img" not in notice.html
    # Plain text is not HTML: escaping it would show entities to the reader.
    assert hostile in notice.text


def test_subject_is_not_escaped_and_stays_on_one_line() -> None:
    notice = render(service_name="Tom & Jerry API")
    assert "Tom & Jerry API" in notice.subject
    assert "Tom &amp; Jerry API" in notice.html


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=80).filter(str.strip))
def test_any_display_name_reaches_the_html_escaped(name: str) -> None:
    notice = render(display_name=name)
    assert str(escape(name.strip())) in notice.html
    assert name.strip() in notice.text


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"region": "China"}, "region"),
        ({"regions": ["CN", "Mars"]}, "regions"),
        ({"regions": "CN"}, "regions"),
        ({"regions": [86]}, "regions"),
        ({"regions": ["CN"] * 21}, "regions"),
        ({"effective_at": "next spring"}, "effective_at"),
        ({"effective_at": "2026-03-01T00:00:00"}, "effective_at"),  # no UTC offset
        ({"effective_at": 1772323200}, "effective_at"),
        ({"email": "a@example.com\r\nBcc: x@evil.test"}, "email"),
        ({"email": "A <a@example.com>"}, "email"),
        ({"email": "a@example.com, b@example.com"}, "email"),
        ({"email": "not-an-address"}, "email"),
        ({"appeal_url": "javascript:alert(1)"}, "appeal_url"),
        ({"appeal_url": "ftp://example.com/appeal"}, "appeal_url"),
        ({"display_name": "x" * 600}, "display_name"),
        ({"display_name": 42}, "display_name"),
    ],
)
def test_bad_payloads_are_permanent_errors_naming_the_key(
    payload: dict[str, Any], key: str
) -> None:
    with pytest.raises(NotifyError) as caught:
        render(**payload)
    assert caught.value.is_permanent
    assert repr(key) in str(caught.value)


def test_blocked_and_reinstated_need_no_region_or_date() -> None:
    for kind in (NoticeKind.BLOCKED, NoticeKind.REINSTATED):
        context = NoticeContext.from_payload(
            {"email": "a@example.com"},
            kind=kind,
            account="acct_1",
            policy_version="p@1",
            reference="GN-000001",
        )
        notice = NoticeRenderer().render(context, language="en")
        assert "acct_1" in notice.text


def test_blocked_without_region_says_so_neutrally() -> None:
    notice = render(NoticeKind.BLOCKED, region=None)
    assert "Our checks link this account to a region where" in notice.text


def test_unknown_kind_is_a_permanent_error() -> None:
    with pytest.raises(NotifyError) as caught:
        NoticeKind.parse("fired")
    assert caught.value.is_permanent


def test_operator_templates_override_shipped_ones_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "warning.subject.j2").write_text(
        "Heads up, {{ account }}: {{ effective_date }}", encoding="utf-8"
    )
    renderer = NoticeRenderer(templates_dir=tmp_path)
    notice = render(renderer=renderer)
    assert notice.subject == "Heads up, acct_42: 1 March 2026"
    assert "has been used from China" in notice.text  # body still from the package


def test_broken_operator_template_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "warning.txt.j2").write_text("{{ no_such_name }}", encoding="utf-8")
    with pytest.raises(NotifyError) as caught:
        render(renderer=NoticeRenderer(templates_dir=tmp_path))
    assert caught.value.is_permanent
    assert "warning.txt.j2" in str(caught.value)


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "warning.txt.j2").write_text(
        "{{ account.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8"
    )
    with pytest.raises(NotifyError):
        render(renderer=NoticeRenderer(templates_dir=tmp_path))


def test_empty_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "warning.subject.j2").write_text("  \n ", encoding="utf-8")
    with pytest.raises(NotifyError, match="subject"):
        render(renderer=NoticeRenderer(templates_dir=tmp_path))


# The payload the account engine queues (geogate.accounts.engine): regions as a list, the
# transition time as "at", possibly no effective date, extra keys for the webhook.
ENGINE_PAYLOAD = {
    "account": "acct_42",
    "state": "warned",
    "policy": "deny@2026-01",
    "effective_at": None,
    "regions": ["CN", "HK", "CN"],
    "rules": ["direct_unsupported"],
    "reasons": ["12 requests from CN"],
    "at": "2026-02-03T04:05:00+00:00",
    "email": "dev@example.com",
}


def test_engine_payload_with_several_regions_and_no_date_renders_in_every_language() -> None:
    for language in Language:
        for kind in (NoticeKind.WARNING, NoticeKind.BLOCKED):
            context = RENDERER.context(
                ENGINE_PAYLOAD,
                kind=kind,
                account="acct_42",
                policy_version="deny@2026-01",
                reference="GN-000001",
            )
            assert [r.code for r in context.regions] == ["CN", "HK"]  # deduplicated
            notice = RENDERER.render(context, language=language)
            assert "None" not in notice.text
            assert "None" not in notice.subject
    en = RENDERER.render(
        RENDERER.context(
            ENGINE_PAYLOAD,
            kind=NoticeKind.WARNING,
            account="acct_42",
            policy_version="deny@2026-01",
            reference="GN-000001",
        ),
        language="en",
    )
    assert "used from China, Hong Kong, regions where Acme API is not available" in en.text
    assert en.subject == "Action required: Acme API access from unsupported regions is ending"
    assert "you can appeal." in en.text


def test_blocked_notice_takes_the_transition_time_when_blocked_at_is_missing() -> None:
    context = RENDERER.context(
        ENGINE_PAYLOAD,
        kind=NoticeKind.BLOCKED,
        account="acct_42",
        policy_version="deny@2026-01",
        reference="GN-000001",
    )
    notice = RENDERER.render(context, language="zh-CN")
    assert "已自 2026年2月3日 04:05（UTC） 起被停用" in notice.text
    assert "与中国、香港相关联" in notice.text
    assert "不支持这些地区" in notice.text


def test_warning_without_region_or_date_still_reads_well() -> None:
    for language, expected in [
        ("en", "has been used from a region where Acme API is not available."),
        ("zh-CN", "曾在 Acme API 不支持的地区使用。"),
        ("zh-TW", "曾在 Acme API 不支援的地區使用。"),
        ("ru", "использовался из региона, где Acme API недоступен."),
    ]:
        notice = render(language=language, region=None, effective_at=None)
        assert expected in notice.text


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", list(NoticeKind))
@pytest.mark.parametrize("full", [True, False])
def test_text_bodies_have_clean_paragraphs(
    language: Language, kind: NoticeKind, full: bool
) -> None:
    payload = sample_payload(kind) if full else {}
    context = RENDERER.context(
        payload, kind=kind, account="acct_42", policy_version="p@1", reference="GN-000001"
    )
    notice = RENDERER.render(context, language=language)
    assert "\n\n\n" not in notice.text
    assert "{" not in notice.text
    assert "}" not in notice.text
    lines = notice.text.splitlines()
    assert all(line == line.strip() for line in lines)
    # Greeting, then at least two paragraphs, then the signature block.
    assert notice.text.count("\n\n") >= 3
    assert lines[-3] == "--"


def test_overlong_subject_is_cut_not_refused() -> None:
    context = RENDERER.context(
        {}, kind=NoticeKind.BLOCKED, account="a" * 400, policy_version="p@1", reference="GN-1"
    )
    notice = RENDERER.render(context, language="en")
    assert len(notice.subject) == MAX_SUBJECT_CHARS
    assert notice.subject.endswith("…")
