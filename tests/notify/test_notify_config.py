"""The [notify] TOML section: what it accepts, the secrets it masks and the errors it names."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from geogate.errors import ConfigError
from geogate.notify.config import NotifyConfig, load_notify_config, parse_notify_config
from geogate.notify.outbox import RetryPolicy
from geogate.notify.smtp import SmtpNotifier
from geogate.notify.webhook import WebhookNotifier

FULL = """
[notify]
service_name = "Acme API"
appeal_url = "https://acme.example/appeal"
support_email = "appeals@acme.example"
batch_limit = 50

[notify.retry]
max_attempts = 5
first_delay_seconds = 30
factor = 4
max_delay_seconds = 3600

[notify.smtp]
host = "smtp.acme.example"
starttls = true
username = "geogate"
password_env = "TEST_SMTP_PASSWORD"
from_address = "Acme API <no-reply@acme.example>"
reply_to = "appeals@acme.example"
timeout_seconds = 5

[notify.webhook]
url = "https://hooks.acme.example/geogate"
secret_file = "webhook.secret"
timeout_seconds = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "geogate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_section_parses_into_typed_values(tmp_path: Path) -> None:
    (tmp_path / "webhook.secret").write_text("whsec-from-file\n", encoding="utf-8")
    cfg = load_notify_config(write(tmp_path, FULL), env={"TEST_SMTP_PASSWORD": "pw-from-env"})
    assert cfg.defaults.service_name == "Acme API"
    assert cfg.defaults.appeal_url == "https://acme.example/appeal"
    assert cfg.defaults.support_email == "appeals@acme.example"
    assert cfg.batch_limit == 50
    assert cfg.retry == RetryPolicy(
        max_attempts=5, first_delay_seconds=30, factor=4, max_delay_seconds=3600
    )
    assert cfg.smtp is not None
    assert cfg.smtp.port == 587  # the STARTTLS submission port by default
    assert cfg.smtp.starttls
    assert not cfg.smtp.ssl
    assert cfg.smtp.password is not None
    assert cfg.smtp.password.reveal() == "pw-from-env"
    assert cfg.smtp.timeout_seconds == 5
    assert cfg.webhook is not None
    assert cfg.webhook.secret.reveal() == "whsec-from-file"
    assert [type(n) for n in cfg.notifiers()] == [SmtpNotifier, WebhookNotifier]
    # No secret shows up when the whole configuration is printed.
    assert "pw-from-env" not in repr(cfg)
    assert "whsec-from-file" not in repr(cfg)


def test_ssl_defaults_to_port_465_and_plain_to_25() -> None:
    doc = tomllib.loads(
        '[notify]\nservice_name = "A"\n'
        '[notify.smtp]\nhost = "h.example"\nssl = true\nfrom_address = "a@b.example"\n'
    )
    cfg = parse_notify_config(doc)
    assert cfg.smtp is not None
    assert cfg.smtp.port == 465
    doc["notify"]["smtp"].pop("ssl")
    cfg = parse_notify_config(doc)
    assert cfg.smtp is not None
    assert cfg.smtp.port == 25


def test_no_section_means_defaults_and_no_channel() -> None:
    cfg = parse_notify_config({"serve": {"port": 8080}})
    assert cfg == NotifyConfig()
    assert cfg.notifiers() == []


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        ('[notify]\nservice_name = "A"\ncolour = "red"', "notify", "unknown key(s) colour"),
        ("[notify]\nbatch_limit = 5", "notify.service_name", "is required"),
        ('[notify]\nservice_name = "A"\nbatch_limit = 0', "notify.batch_limit", "at least 1"),
        ('[notify]\nservice_name = "A"\nbatch_limit = "ten"', "notify.batch_limit", "integer"),
        (
            '[notify]\nservice_name = "A"\nappeal_url = "javascript:x"',
            "notify.appeal_url",
            "javascript:x",
        ),
        ('[notify]\nservice_name = "A"\n[notify.retry]\nmax_attempts = 0', "max_attempts", "1"),
        ('[notify]\nservice_name = "A"\n[notify.smtp]\nfrom_address = "a@b.c"', "host", "required"),
        (
            '[notify]\nservice_name = "A"\n[notify.smtp]\nhost = "h"\nfrom_address = "a@b.c"\n'
            "port = true",
            "notify.smtp.port",
            "integer",
        ),
        (
            '[notify]\nservice_name = "A"\n[notify.smtp]\nhost = "h"\nfrom_address = "a@b.c"\n'
            'password = "x"\npassword_env = "Y"',
            "notify.smtp.password",
            "only one",
        ),
        (
            '[notify]\nservice_name = "A"\n[notify.smtp]\nhost = "h"\nfrom_address = "a@b.c"\n'
            'username = "u"\npassword_env = "MISSING_VAR"',
            "notify.smtp.password_env",
            "MISSING_VAR",
        ),
        (
            '[notify]\nservice_name = "A"\n[notify.smtp]\nhost = "h.example"\n'
            'from_address = "a@b.c"\nusername = "u"\npassword = "p"',
            "notify.smtp",
            "AUTH",
        ),
        (
            '[notify]\nservice_name = "A"\n[notify.webhook]\nurl = "https://h.example/x"',
            "notify.webhook.secret",
            "required",
        ),
        (
            '[notify]\nservice_name = "A"\n[notify.webhook]\nurl = "http://h.example/x"\n'
            'secret = "k"',
            "notify.webhook.url",
            "https",
        ),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, toml: str, key: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_notify_config(path, env={})
    text = str(caught.value)
    assert text.startswith(str(path))
    assert key in text
    assert message in text


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_notify_config(write(tmp_path, "[notify\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_notify_config(tmp_path / "absent.toml")


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "mail-templates" / "en").mkdir(parents=True)
    (tmp_path / "ca.pem").write_text("not read until a connection is made", encoding="utf-8")
    cfg = load_notify_config(
        write(
            tmp_path,
            '[notify]\nservice_name = "A"\ntemplates_dir = "mail-templates"\n'
            '[notify.smtp]\nhost = "h.example"\nstarttls = true\nfrom_address = "a@b.example"\n'
            'ca_file = "ca.pem"\n',
        )
    )
    assert cfg.templates_dir == tmp_path / "mail-templates"
    assert cfg.smtp is not None
    assert cfg.smtp.ca_file == tmp_path / "ca.pem"


def test_missing_templates_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        load_notify_config(
            write(tmp_path, '[notify]\nservice_name = "A"\ntemplates_dir = "nope"\n')
        )


def test_the_example_in_the_docs_parses() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "notices.md").read_text(encoding="utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = parse_notify_config(
        tomllib.loads(example),
        env={"GEOGATE_SMTP_PASSWORD": "pw", "GEOGATE_WEBHOOK_SECRET": "whsec"},
    )
    assert cfg.retry == RetryPolicy()
    assert len(cfg.notifiers()) == 2
