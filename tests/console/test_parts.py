"""The console's pure parts: the [console] table, password hashes, signed sessions, the
sign-in limiter, the world map and the lookup of a forwarded chain."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.service.support import geogate_argv

from geogate.accounts_api.tokens import Role
from geogate.client_ip import TrustedProxies
from geogate.console.config import load_console_settings, parse_console
from geogate.console.passwords import hash_password, verify_password
from geogate.console.sessions import SessionStore, SignInLimiter, session_key
from geogate.console.views import lookup, policy_map_classes
from geogate.console.worldmap import country_paths, world_svg
from geogate.errors import ConfigError
from geogate.service.config import ServiceConfig
from geogate.service.engine import load_engine


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"colour": "blue"}, "console.colour"),
        ({"session_minutes": 0}, "console.session_minutes"),
        ({"session_minutes": True}, "console.session_minutes"),
        ({"secure_cookies": "yes"}, "console.secure_cookies"),
        (
            {"users": [{"name": "a", "role": "admin", "password_hash": "$argon2id$x"}]},
            "console.users[0].role",
        ),
        (
            {"users": [{"name": "a", "role": "viewer", "password_hash": "plain"}]},
            "console.users[0].password_hash",
        ),
        (
            {"users": [{"name": "", "role": "viewer", "password_hash": "$argon2id$x"}]},
            "console.users[0].name",
        ),
        (
            {"users": [{"name": "a", "role": "viewer", "password_hash": "$argon2id$x", "pw": 1}]},
            "console.users[0].pw",
        ),
    ],
)
def test_a_bad_console_table_names_the_file_and_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_console(table, where="geogate.toml")
    assert str(err.value).startswith(f"geogate.toml:{key}: ")
    assert "\n" not in str(err.value)


def test_the_console_table_is_read_from_the_service_config_file(tmp_path: Path) -> None:
    hashed = hash_password("a long enough password")
    path = tmp_path / "g.toml"
    path.write_text(
        "[serve]\nport = 1\n[console]\nsession_minutes = 30\nsecure_cookies = true\n"
        f'[[console.users]]\nname = "dana"\nrole = "operator"\npassword_hash = "{hashed}"\n',
        encoding="utf-8",
    )
    settings = load_console_settings(str(path))
    assert settings.session_minutes == 30
    assert settings.secure_cookies is True
    (user,) = settings.users
    assert (user.name, user.role) == ("dana", Role.OPERATOR)
    assert hashed not in repr(user)
    assert load_console_settings(None).users == ()


def test_passwords_are_stored_as_argon2id_and_checked() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password(None, "correct horse battery")  # unknown user
    assert not verify_password("$argon2id$garbage", "x")
    with pytest.raises(ValueError, match="12 characters"):
        hash_password("short")


def test_sessions_are_signed_expire_and_survive_a_second_process() -> None:
    now = [1_000_000.0]
    key = session_key(["token-aaaaaaaaaaaaaaaa", "token-bbbbbbbbbbbbbbbb"])
    store = SessionStore(key=key, lifetime_seconds=60, clock=lambda: now[0])
    session = store.create(name="olga", role=Role.OPERATOR, via="token")
    # Another worker process with the same configuration accepts it.
    other = SessionStore(
        key=session_key(["token-bbbbbbbbbbbbbbbb", "token-aaaaaaaaaaaaaaaa"]),
        lifetime_seconds=60,
        clock=lambda: now[0],
    )
    seen = other.get(session.id)
    assert seen is not None
    assert (seen.name, seen.role, seen.csrf) == ("olga", Role.OPERATOR, session.csrf)
    assert seen.csrf_ok(session.csrf)
    assert not seen.csrf_ok(None)
    assert not seen.csrf_ok(session.csrf[:-1] + "x")
    # Forged, tampered, from another configuration: refused.
    body, sig = session.id.split(".")
    assert store.get(f"{body}x.{sig}") is None
    assert store.get(f"{body}.{sig[:-2]}") is None
    assert store.get("garbage") is None
    changed = SessionStore(key=session_key(["another-token-xxxxxx"]), lifetime_seconds=60)
    assert changed.get(session.id) is None
    # Signed out here; expired everywhere after the lifetime.
    store.drop(session.id)
    assert store.get(session.id) is None
    now[0] += 61
    assert other.get(session.id) is None


def test_the_limiter_refuses_after_five_failures_until_the_window_passes() -> None:
    now = [0.0]
    limiter = SignInLimiter(max_failures=5, window_seconds=300, clock=lambda: now[0])
    for _ in range(4):
        limiter.failed("ip:1", "user:dana")
    assert limiter.retry_after("ip:1") == 0
    limiter.failed("ip:1", "user:dana")
    assert limiter.retry_after("ip:2", "user:dana") > 0  # by name, from another address
    assert limiter.retry_after("ip:1") > 0
    now[0] = 301
    assert limiter.retry_after("ip:1", "user:dana") == 0


def test_the_world_map_has_the_countries_and_shades_by_value() -> None:
    paths = country_paths()
    assert {"CN", "RU", "IR", "UA", "US", "DE", "BR", "AU"} <= set(paths)
    assert "AQ" not in paths
    svg = world_svg({"CN": 10, "IR": 1}, title="Denied <by> country")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert 'aria-label="Denied &lt;by&gt; country"' in svg
    assert '<path class="m5"' in svg
    assert "<title>CN: 10</title>" in svg


def test_lookup_walks_the_chain_like_the_service() -> None:
    engine = load_engine(ServiceConfig(trusted_proxies=TrustedProxies.parse(["10.0.0.0/8"])))
    at = datetime(2024, 7, 10, tzinfo=UTC)
    # A client's own claim left of an untrusted hop is not believed.
    result = lookup(engine, "59.224.0.1, 53.128.0.1, 10.0.0.7", at=at)
    assert result.client_ip == "53.128.0.1"
    assert result.decision is not None
    assert result.decision.action.label == "allow"
    roles = [h.role for h in result.hops]
    assert roles[0].startswith("not reached")
    assert roles[1] == "client"
    assert roles[2].startswith("peer")
    assert result.hops[0].decision is not None
    assert result.hops[0].decision.action.label == "deny"  # shown, not used
    single = lookup(engine, "59.224.0.1", at=at)
    assert single.decision is not None
    assert single.decision.region == "CN"
    assert single.decision.facts.provenance
    bad = lookup(engine, "not-an-ip", at=at)
    assert bad.decision is None
    assert bad.problem


def test_the_policy_map_marks_denied_and_pending_regions() -> None:
    engine = load_engine(ServiceConfig())
    policy = engine.policies.versions[-1]
    before = policy_map_classes(policy, datetime(2024, 7, 1, tzinfo=UTC))
    after = policy_map_classes(policy, datetime(2024, 7, 10, tzinfo=UTC))
    assert before["CN"] == "pending"
    assert after["CN"] == "deny"


def test_geogate_serve_stops_at_start_on_a_bad_console_table(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text(
        f'[accounts]\ndb = "sqlite:///{tmp_path / "a.db"}"\n'
        '[[accounts.tokens]]\nname = "olga"\nrole = "operator"\n'
        'secret = "operator-secret-0123456789"\n'
        '[[console.users]]\nname = "olga"\nrole = "viewer"\n'
        'password_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        geogate_argv("serve", "--config", str(config), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"geogate: error: {config}:console.users: console user 'olga' has the name of an API token"
    ]


def test_the_password_command_prints_an_argon2_hash() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "geogate.console.passwords"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0
    assert ok.stderr == ""
    assert verify_password(ok.stdout.strip(), "a long enough password")
    short = subprocess.run(
        [sys.executable, "-m", "geogate.console.passwords"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert short.returncode == 2
    assert short.stderr == "geogate: error: a password needs at least 12 characters\n"
