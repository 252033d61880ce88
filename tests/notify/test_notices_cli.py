"""``geogate notices preview`` and ``geogate notices send`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from geogate.cli.main import main
from geogate.store.sql import SqlStore

from .receivers import SmtpServer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_preview_renders_a_chinese_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "notices", "preview", "--kind", "warning", "--lang", "zh-CN")
    assert code == 0
    first, second, *_ = out.splitlines()
    assert first.startswith("Subject: 重要提醒：自 2026年3月1日 起")
    assert second == "Content-Language: zh-Hans"
    assert "曾在中国使用" in out


def test_preview_html_part_and_payload_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"display_name": "<b>Bob</b>", "region": "IR"}', encoding="utf-8")
    code, out, _ = run(
        capsys,
        "notices", "preview", "--kind", "blocked", "--lang", "ru", "--part", "html",
        "--payload", str(payload),
    )  # fmt: skip
    assert code == 0
    assert "Content-Language: ru" in out
    assert "&lt;b&gt;Bob&lt;/b&gt;" in out
    assert "«Иран»" in out


def test_preview_uses_service_name_from_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "geogate.toml"
    config.write_text('[notify]\nservice_name = "Acme API"\n', encoding="utf-8")
    code, out, _ = run(capsys, "notices", "preview", "--kind", "reinstated", "-c", str(config))
    assert code == 0
    assert out.startswith("Subject: Your Acme API account acct_example has been reinstated")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["notices", "preview", "--kind", "fired"], "--kind"),
        (["notices", "preview", "--part", "pdf"], "--part"),
    ],
)
def test_preview_bad_options_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_send_delivers_the_stores_outbox_by_smtp(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, smtp_server: SmtpServer
) -> None:
    db = tmp_path / "store.db"
    store = SqlStore.open(str(db))
    store.enqueue_notice(
        "acct_1",
        "warning",
        "deny@1",
        "zh-CN",
        {"email": "dev@example.com", "region": "CN", "effective_at": "2026-03-01T00:00:00Z"},
    )
    store.close()
    config = tmp_path / "geogate.toml"
    config.write_text(
        '[notify]\nservice_name = "Acme API"\n'
        f'[notify.smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\n'
        'from_address = "Acme API <no-reply@acme.example>"\n',
        encoding="utf-8",
    )

    code, out, err = run(capsys, "notices", "send", "--db", str(db), "--config", str(config))
    assert (code, err) == (0, "")
    assert "sent notice 1 (warning, account acct_1, attempt 1) via smtp" in out
    assert out.splitlines()[-1] == "1 notice: 1 sent, 0 to retry, 0 failed"
    [got] = smtp_server.received
    assert got.message["Content-Language"] == "zh-Hans"

    code, out, _ = run(capsys, "notices", "send", "--db", str(db), "--config", str(config))
    assert code == 0
    assert out.strip() == "0 notices: 0 sent, 0 to retry, 0 failed"
    assert len(smtp_server.received) == 1


def test_send_without_a_channel_is_a_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "notices", "send", "--db", str(tmp_path / "store.db"))
    assert code == 2
    assert "no delivery channel" in err
