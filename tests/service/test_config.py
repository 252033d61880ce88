"""Configuration of ``geogate serve``: file, environment and flags, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.service.support import DEPLOY

from geogate.client_ip import resolve_client_ip
from geogate.errors import ConfigError
from geogate.service.config import ClientIPHeader, FailMode, ServiceConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "geogate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_safe() -> None:
    config = load_config()
    assert config == ServiceConfig()
    assert config.host == "127.0.0.1"
    assert config.fail_mode is FailMode.CLOSED
    assert not config.trusted_proxies  # nothing trusted until configured
    assert config.grpc_address is None


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[serve]\n"
        'host = "::1"\nport = 9000\ngrpc_port = 9001\n'
        'policy = ["builtin:unsupported-regions", "builtin:supported-countries"]\n'
        'trusted_proxies = ["10.0.0.0/8"]\nfail_mode = "fail_open"\n'
        'client_ip_header = "Forwarded"\naccount_header = "X-Account-Id"\n'
        "[accounts]\nblocked = ['a1', 'a2']\n"
        "[store]\ndsn = 'ignored: owned by another command'\n",
    )
    config = load_config(path)
    assert (config.host, config.port, config.grpc_address) == ("::1", 9000, "[::1]:9001")
    assert config.policies == ("builtin:unsupported-regions", "builtin:supported-countries")
    assert config.fail_mode is FailMode.OPEN
    assert config.client_ip_header is ClientIPHeader.FORWARDED
    assert config.account_header == "x-account-id"
    assert config.blocked_accounts == ("a1", "a2")
    env = {"GEOGATE_PORT": "9100", "GEOGATE_TRUSTED_PROXIES": "127.0.0.1, ::1"}
    config = load_config(path, env=env)
    assert config.port == 9100
    assert [str(n) for n in config.trusted_proxies.networks] == ["127.0.0.1/32", "::1/128"]
    config = load_config(
        path, env=env, overrides={"port": 9200, "policy": ["p.toml"], "host": None}
    )
    assert (config.port, config.policies, config.host) == (9200, ("p.toml",), "::1")


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[serve]\nport = 9300\n")
    assert load_config(env={"GEOGATE_CONFIG": str(path)}).port == 9300


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[serve]\nport = 70000\n", "geogate.toml:port: port 70000 is outside 0-65535"),
        ("[serve]\nport = 'http'\n", "geogate.toml:port: expected a port number"),
        ("[serve]\nprot = 1\n", "geogate.toml:prot: unknown setting"),
        ("[serve]\nfail_mode = 'maybe'\n", "geogate.toml:fail_mode: expected 'closed' or 'open'"),
        ("[serve]\ntrusted_proxies = ['10.0.0.0/33']\n", "geogate.toml:trusted_proxies: not a"),
        ("[serve]\npolicy = []\n", "geogate.toml:policy: at least one policy"),
        ("[serve]\nadmin_token = 'short'\n", "geogate.toml:admin_token: admin_token must be"),
        ("[serve]\nmax_body_bytes = 10\n", "geogate.toml:max_body_bytes: must be between"),
        ("[serve]\naccount_header = 'x y'\n", "geogate.toml:account_header: 'x y' is not"),
        ("[serve]\nclient_ip_header = 'x-real-ip'\n", "geogate.toml:client_ip_header: expected"),
        ("[serve]\nlog_level = 'loud'\n", "geogate.toml:log_level: expected one of"),
        ("[serve]\naccess_log = 'maybe'\n", "geogate.toml:access_log: expected true or false"),
        ("[serve\n", "geogate.toml: invalid TOML"),
        ("serve = 3\n", "geogate.toml:serve: expected a table"),
        ("[accounts]\nblock = []\n", "geogate.toml:accounts.block: unknown setting"),
    ],
)
def test_bad_file_values_name_file_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = info.value.one_line()
    assert where in line
    assert "\n" not in str(info.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="GEOGATE_GRPC_PORT:grpc_port: expected a port"):
        load_config(env={"GEOGATE_GRPC_PORT": "lots"})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_admin_token_is_masked(tmp_path: Path) -> None:
    config = load_config(overrides={"admin_token": "0123456789abcdef-secret"})
    assert "secret" not in repr(config)
    assert config.admin_token is not None
    assert config.admin_token.reveal() == "0123456789abcdef-secret"


@given(st.text(max_size=40))
def test_any_port_text_parses_or_raises_config_error(text: str) -> None:
    """Property: a port value from the environment never raises anything but ConfigError."""
    try:
        config = load_config(env={"GEOGATE_PORT": text})
    except ConfigError:
        return
    assert 0 <= config.port <= 65535


def test_the_example_config_in_deploy_loads() -> None:
    config = load_config(DEPLOY / "geogate.toml")
    assert config.grpc_address == "127.0.0.1:8301"
    assert config.fail_mode is FailMode.CLOSED
    assert [str(n) for n in config.trusted_proxies.networks] == ["127.0.0.1/32", "::1/128"]


def test_trusted_proxies_given_as_strings_in_python_are_parsed() -> None:
    # A tuple of CIDR strings would otherwise be kept and silently trust no proxy.
    config = ServiceConfig(trusted_proxies=("127.0.0.1", "10.0.0.0/8"))  # type: ignore[arg-type]
    client = resolve_client_ip(
        "10.1.2.3", x_forwarded_for="203.0.113.9", trusted=config.trusted_proxies
    )
    assert str(client.ip) == "203.0.113.9"
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'nope'"):
        ServiceConfig(trusted_proxies=("nope",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="trusted_proxies"):
        ServiceConfig(trusted_proxies="10.0.0.0/8")  # type: ignore[arg-type]
