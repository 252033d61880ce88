"""The decision service wired to the account store: events ingested over ``POST /v1/events``
block an account, and the decision endpoints deny it with ``account_blocked`` from a supported
country; the account API's roles; the cached blocked set's staleness bound and fail mode.
Real components throughout: SQLite in tmp_path, the session's PostgreSQL server, uvicorn."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.service.conftest import Addresses
from tests.service.support import DEPLOY, AsgiClient, geogate_argv, start_geogate

from geogate.errors import ConfigError, StoreUnavailable
from geogate.service.account_status import CachedAccountStatus
from geogate.service.app import create_app, service_of
from geogate.service.config import ServiceConfig, describe, load_config
from geogate.store.sql import SqlStore

OPERATOR = "operator-secret-0123456789"
VIEWER = "viewer-secret-0123456789ab"
ACCOUNT = "acct-from-cn"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cn_requests(addresses: Addresses, account: str = ACCOUNT) -> str:
    """Five API requests from a CN address after the built-in policy's effective date
    (2024-07-09): direct access from an unsupported region, which blocks (JSON Lines)."""
    events = [
        {
            "type": "request",
            "ts": f"2024-07-20T10:{minute:02d}:00Z",
            "account": account,
            "ip": addresses.cn4,
            "path": "/v1/chat/completions",
        }
        for minute in range(5)
    ]
    return "".join(json.dumps(e) + "\n" for e in events)


def write_config(path: Path, db: str, *, tokens: bool = True, extra: str = "") -> Path:
    text = (
        "[serve]\n"
        'trusted_proxies = ["127.0.0.1/32", "::1/128"]\n'
        'fail_mode = "closed"\n'
        "[accounts]\n"
        f"db = {json.dumps(db)}\n"
        f"{extra}"
    )
    if tokens:
        text += (
            f'[[accounts.tokens]]\nname = "ops"\nrole = "operator"\nsecret = "{OPERATOR}"\n'
            '[[accounts.tokens]]\nname = "auditor"\nrole = "viewer"\nsecret_env = "VIEWER_TOKEN"\n'
        )
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> ServiceConfig:
    return load_config(path, env={"VIEWER_TOKEN": VIEWER})


@pytest.fixture
def service(store_url: str, tmp_path: Path) -> Iterator[AsgiClient]:
    """The service app over a fresh store (SQLite, then PostgreSQL), called in process from
    127.0.0.1 (a trusted proxy)."""
    app = create_app(load(write_config(tmp_path / "geogate.toml", store_url)), handle_sighup=False)
    client = AsgiClient(app)
    try:
        yield client
    finally:
        client.close()
        service_of(client.app).close()  # type: ignore[arg-type]


def test_ingested_block_denies_decide_and_nginx(service: AsgiClient, addresses: Addresses) -> None:
    """Events over HTTP block the account; from then on a request naming it from a US address
    is denied with account_blocked at /v1/decide and /v1/auth/nginx (no refresh wait)."""
    before = service.post("/v1/decide", json={"ip": addresses.us4, "account": ACCOUNT}).json()
    assert before["action"] == "allow"

    r = service.post("/v1/events", content=cn_requests(addresses), headers=auth(OPERATOR))
    assert r.status_code == 200, r.text
    assert r.json()["transitions"] == [
        {"account": ACCOUNT, "from": "active", "to": "blocked", "rules": ["direct_unsupported"]}
    ]

    decided = service.post("/v1/decide", json={"ip": addresses.us4, "account": ACCOUNT})
    assert decided.status_code == 200  # /v1/decide answers the decision, the proxies enforce
    body = decided.json()
    assert (body["action"], body["reasons"][0], body["region"]) == ("deny", "account_blocked", "US")

    nginx = service.get(
        "/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4, "x-geogate-account": ACCOUNT}
    )
    assert nginx.status_code == 403
    assert nginx.headers["x-geogate-reason"].split(",")[0] == "account_blocked"
    assert nginx.json()["error"]["code"] == "unsupported_country_region_territory"
    envoy = service.get(
        "/v1/auth/envoy/v1/chat",
        headers={"x-forwarded-for": addresses.us6, "x-geogate-account": ACCOUNT},
    )
    assert envoy.status_code == 403

    # Another account from the same address, and the same address without an account: allowed.
    other = service.get(
        "/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4, "x-geogate-account": "acct-x"}
    )
    assert other.status_code == 200
    assert (
        service.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4}).status_code == 200
    )

    # The block is the store's: the account API shows it, the metrics count it.
    shown = service.get(f"/v1/accounts/{ACCOUNT}", headers=auth(VIEWER)).json()
    assert shown["state"] == "blocked"
    assert "geogate_blocked_accounts 1.0" in service.get("/metrics").text
    assert service.get("/readyz").json()["accounts"]["blocked"] == 1


def test_reinstatement_over_http_unblocks_at_once(
    service: AsgiClient, addresses: Addresses
) -> None:
    """An operator's appeal + reinstate through the mounted API lifts the block for the very
    next decision (the service folds its own state changes into the cached set)."""
    service.post("/v1/events", content=cn_requests(addresses), headers=auth(OPERATOR))
    nginx = {"x-forwarded-for": addresses.us4, "x-geogate-account": ACCOUNT}
    assert service.get("/v1/auth/nginx", headers=nginx).status_code == 403
    r = service.post(
        f"/v1/accounts/{ACCOUNT}/appeal", json={"note": "moved"}, headers=auth(OPERATOR)
    )
    assert r.json()["to"] == "appealed"
    assert service.get("/v1/auth/nginx", headers=nginx).status_code == 200
    assert service_of(service.app).accounts.is_blocked(ACCOUNT) is False  # type: ignore[arg-type]


def test_roles_and_authentication(service: AsgiClient, addresses: Addresses) -> None:
    """No token: 401; a wrong token: 401; a viewer cannot write (403) but can read."""
    feed = cn_requests(addresses)
    assert service.post("/v1/events", content=feed).status_code == 401
    r = service.post("/v1/events", content=feed, headers=auth("not-a-token-0123456789"))
    assert r.status_code == 401
    r = service.post("/v1/events", content=feed, headers=auth(VIEWER))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert service.post(f"/v1/accounts/{ACCOUNT}/exempt", headers=auth(VIEWER)).status_code == 403
    assert (
        service.post("/v1/enforce", json={"at": "2024-07-20"}, headers=auth(VIEWER)).status_code
        == 403
    )
    assert service.get("/v1/accounts").status_code == 401
    assert service.get("/v1/accounts", headers=auth(VIEWER)).json()["accounts"] == []
    # Nothing was ingested by the refused requests: the account is not blocked.
    decided = service.post("/v1/decide", json={"ip": addresses.us4, "account": ACCOUNT}).json()
    assert decided["action"] == "allow"


def test_without_tokens_the_account_api_is_off(tmp_path: Path, addresses: Addresses) -> None:
    """With a store but no tokens, every account path answers 404 accounts_api_disabled, so
    there is no unauthenticated write; blocks in the store are still enforced. Without a store
    the paths say so too, and the service's own 404/405 answers are unchanged."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore.open(db)
    store.close()
    config = load(write_config(tmp_path / "geogate.toml", db, tokens=False))
    with AsgiClient(create_app(config, handle_sighup=False)) as client:
        for method, path in [
            ("POST", "/v1/events"),
            ("GET", "/v1/accounts"),
            ("POST", f"/v1/accounts/{ACCOUNT}/reinstate"),
            ("POST", "/v1/enforce"),
            ("GET", "/v1/audit/verify"),
        ]:
            r = client.request(method, path, content=cn_requests(addresses), headers=auth(OPERATOR))
            assert r.status_code == 404, (method, path)
            assert r.json()["error"]["code"] == "accounts_api_disabled"
        assert client.get("/admin/reload").status_code == 405
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
        service_of(client.app).close()  # type: ignore[arg-type]
    with AsgiClient(create_app(ServiceConfig(), handle_sighup=False)) as client:
        r = client.post("/v1/events", content="{}")
        assert r.status_code == 404
        assert "[accounts] db" in r.json()["error"]["message"]


def test_stale_set_is_kept_within_the_bound_then_fail_mode(tmp_path: Path) -> None:
    """A failed refresh keeps the last blocked set for max_stale_seconds after the last
    success; after that is_blocked raises StoreUnavailable; a later success recovers. The
    outage is real: the SQLite file is moved away (the store then sees an empty database)."""
    db_file = tmp_path / "store.db"
    store = SqlStore.open(f"sqlite:///{db_file}")
    now = [1000.0]
    results: list[str] = []
    status = CachedAccountStatus(
        store.blocked_accounts,
        refresh_seconds=5,
        max_stale_seconds=60,
        static=["acct-static"],
        on_refresh=results.append,
        monotonic=lambda: now[0],
    )
    with pytest.raises(StoreUnavailable):  # never loaded: the fail mode decides
        status.is_blocked("acct-a")
    assert status.is_blocked("acct-static") is True
    assert status.refresh() is True
    status.apply([("acct-a", "warned", "blocked")])
    assert status.is_blocked("acct-a") is True

    shutil.move(db_file, tmp_path / "away.db")
    now[0] += 30
    assert status.refresh() is False
    assert status.problem is not None
    assert "accounts" in status.problem
    assert status.is_blocked("acct-a") is True  # stale set kept, 30 s < 60 s
    now[0] += 31
    with pytest.raises(StoreUnavailable, match="account store unavailable"):
        status.is_blocked("acct-a")
    assert status.is_blocked("acct-static") is True

    (tmp_path / "store.db").unlink()
    shutil.move(tmp_path / "away.db", db_file)
    assert status.refresh() is True
    assert status.is_blocked("acct-a") is False  # the store never had it: the refresh wins
    assert results == ["ok", "error", "ok"]
    store.close()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_store_outage_applies_the_fail_mode(
    tmp_path: Path, addresses: Addresses, mode: str
) -> None:
    """Once the blocked set is older than max_stale_seconds, a request naming an account is
    refused (closed: 503) or decided on location alone (open: 200), saying why; the failed
    refreshes are counted."""
    db_file = tmp_path / "store.db"
    path = write_config(
        tmp_path / "geogate.toml",
        f"sqlite:///{db_file}",
        extra="refresh_seconds = 0.1\nmax_stale_seconds = 0.3\n",
    )
    config = load_config(path, env={"VIEWER_TOKEN": VIEWER}, overrides={"fail_mode": mode})
    app = create_app(config, handle_sighup=False)
    service = service_of(app)
    with AsgiClient(app) as client:
        nginx = {"x-forwarded-for": addresses.us4, "x-geogate-account": ACCOUNT}
        assert client.get("/v1/auth/nginx", headers=nginx).status_code == 200
        shutil.move(db_file, tmp_path / "away.db")
        time.sleep(0.35)
        assert service.wiring is not None
        assert service.wiring.status.refresh() is False
        r = client.get("/v1/auth/nginx", headers=nginx)
        if mode == "closed":
            assert r.status_code == 503
            assert r.headers["x-geogate-reason"].endswith("intel_unavailable")
        else:
            assert r.status_code == 200
            assert r.headers["x-geogate-reason"] == "region_supported,intel_unavailable"
        # Without an account the store is not needed.
        assert (
            client.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4}).status_code
            == 200
        )
        assert 'geogate_account_refreshes_total{result="error"} 1.0' in client.get("/metrics").text
        assert client.get("/readyz").json()["accounts"]["store"] == "refresh_failing"
    service.close()


def test_real_server_on_postgresql(tmp_path: Path, postgres_url: str, addresses: Addresses) -> None:
    """``geogate serve`` (uvicorn, a real process) with the store on PostgreSQL named by
    GEOGATE_DB: ingestion over HTTP blocks, nginx and decide deny; the DSN's password shows up
    in neither the log nor /readyz."""
    password = "pw-never-logged-4711"
    dsn = postgres_url.replace("geogate@", f"geogate:{password}@")  # trust auth ignores it
    config = tmp_path / "geogate.toml"
    config.write_text(
        "[serve]\n"
        'trusted_proxies = ["127.0.0.1/32"]\n'
        "[accounts]\n"
        "refresh_seconds = 1\n"
        '[[accounts.tokens]]\nname = "ops"\nrole = "operator"\nsecret_file = "ops.token"\n'
        '[[accounts.tokens]]\nname = "auditor"\nrole = "viewer"\nsecret_env = "VIEWER_TOKEN"\n',
        encoding="utf-8",
    )
    (tmp_path / "ops.token").write_text(OPERATOR + "\n", encoding="utf-8")
    server = start_geogate(
        tmp_path,
        "--config",
        str(config),
        env={"GEOGATE_DB": dsn, "VIEWER_TOKEN": VIEWER, "GEOGATE_LOG_LEVEL": "debug"},
    )
    try:
        assert server.post("/v1/events", content=cn_requests(addresses)).status_code == 401
        r = server.post("/v1/events", content=cn_requests(addresses), headers=auth(VIEWER))
        assert r.status_code == 403
        r = server.post("/v1/events", content=cn_requests(addresses), headers=auth(OPERATOR))
        assert r.status_code == 200, r.text
        assert r.json()["transitions"][0]["to"] == "blocked"
        nginx = server.get(
            "/v1/auth/nginx",
            headers={"x-forwarded-for": addresses.us4, "x-geogate-account": ACCOUNT},
        )
        assert nginx.status_code == 403
        assert nginx.headers["x-geogate-reason"].startswith("account_blocked")
        decided = server.post("/v1/decide", json={"ip": addresses.de4, "account": ACCOUNT}).json()
        assert decided["reasons"][0] == "account_blocked"
        ready = server.get("/readyz")
        assert ready.json()["accounts"]["blocked"] == 1
        assert password not in ready.text
    finally:
        server.process.stop()
    log = server.process.output()
    assert "serving on" in log
    assert password not in log


def test_a_block_made_elsewhere_arrives_within_refresh_seconds(
    tmp_path: Path, addresses: Addresses
) -> None:
    """A block written by another process (here: another service app on the same SQLite
    file, as a second replica would) reaches this service by the background refresh."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    config = load(write_config(tmp_path / "geogate.toml", db, extra="refresh_seconds = 0.2\n"))
    reader = create_app(config, handle_sighup=False)
    writer = create_app(config, handle_sighup=False)
    service_of(reader).start()  # what the lifespan does under uvicorn
    with AsgiClient(reader) as read_client, AsgiClient(writer) as write_client:
        nginx = {"x-forwarded-for": addresses.us4, "x-geogate-account": ACCOUNT}
        assert read_client.get("/v1/auth/nginx", headers=nginx).status_code == 200
        r = write_client.post("/v1/events", content=cn_requests(addresses), headers=auth(OPERATOR))
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while read_client.get("/v1/auth/nginx", headers=nginx).status_code != 403:
            assert time.monotonic() < deadline, "the block never reached the other app"
            time.sleep(0.05)
    service_of(reader).close()
    service_of(writer).close()


# ----- configuration ------------------------------------------------------------------


def test_accounts_config_parses_and_masks(tmp_path: Path) -> None:
    (tmp_path / "op.token").write_text(OPERATOR, encoding="utf-8")
    path = tmp_path / "geogate.toml"
    path.write_text(
        "[accounts]\n"
        'db = "postgresql://geogate:hunter2-secret@127.0.0.1:5432/geogate"\n'
        "refresh_seconds = 2.5\n"
        "max_stale_seconds = 120\n"
        'blocked = ["a1"]\n'
        '[[accounts.tokens]]\nname = "ops"\nrole = "OPERATOR"\nsecret_file = "op.token"\n'
        '[[accounts.tokens]]\nname = "auditor"\nrole = "viewer"\nsecret_env = "VIEWER_TOKEN"\n',
        encoding="utf-8",
    )
    config = load(path)
    assert config.accounts_refresh_seconds == 2.5
    assert config.accounts_max_stale_seconds == 120
    assert config.blocked_accounts == ("a1",)
    assert [(t.name, t.role.name, t.reveal()) for t in config.accounts_tokens] == [
        ("ops", "OPERATOR", OPERATOR),
        ("auditor", "VIEWER", VIEWER),
    ]
    for shown in (repr(config), str(describe(config))):
        assert "hunter2" not in shown
        assert OPERATOR not in shown
        assert VIEWER not in shown
    assert describe(config)["accounts"]["db"] == "postgresql://***"  # type: ignore[index]
    # The environment and the flag override the file, in that order.
    env = {"VIEWER_TOKEN": VIEWER, "GEOGATE_DB": "sqlite:///env.db"}
    assert load_config(path, env=env).accounts_db.reveal() == "sqlite:///env.db"  # type: ignore[union-attr]
    flagged = load_config(path, env=env, overrides={"db": "sqlite:///flag.db"})
    assert flagged.accounts_db.reveal() == "sqlite:///flag.db"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[accounts]\ndb = 'mysql://u:hunter2@h/x'\n", "geogate.toml:accounts.db: unsupported"),
        ("[accounts]\ndb = 'x.db'\nrefresh_seconds = 0\n", "accounts.refresh_seconds: must be"),
        (
            "[accounts]\ndb = 'x.db'\nrefresh_seconds = 30\nmax_stale_seconds = 10\n",
            "accounts.max_stale_seconds: must be at least refresh_seconds",
        ),
        (
            "[[accounts.tokens]]\nname = 'a'\nrole = 'operator'\nsecret = 'long-enough-secret-1'\n",
            "accounts.tokens: the account API needs a store",
        ),
        (
            "[accounts]\ndb = 'x.db'\n[[accounts.tokens]]\nname = 'a'\nrole = 'admin'\n"
            "secret = 'long-enough-secret-1'\n",
            "accounts.tokens[0].role: expected 'viewer' or 'operator'",
        ),
        (
            "[accounts]\ndb = 'x.db'\n[[accounts.tokens]]\nname = 'a'\nrole = 'viewer'\n"
            "secret = 'short'\n",
            "accounts.tokens[0].secret: must be at least 16",
        ),
        (
            "[accounts]\ndb = 'x.db'\n[[accounts.tokens]]\nname = 'a'\nrole = 'viewer'\n"
            "secret_env = 'NOT_SET_ANYWHERE'\n",
            "accounts.tokens[0].secret_env: environment variable 'NOT_SET_ANYWHERE' is not set",
        ),
        (
            "[accounts]\ndb = 'x.db'\n[[accounts.tokens]]\nname = 'a'\nrole = 'viewer'\n"
            "secret = 'long-enough-secret-1'\nsecret_env = 'X'\n",
            "set only one of secret, secret_env",
        ),
        (
            "[accounts]\ndb = 'x.db'\n[[accounts.tokens]]\nname = 'a'\nrole = 'viewer'\n"
            "secret = 'long-enough-secret-1'\n[[accounts.tokens]]\nname = 'b'\n"
            "role = 'operator'\nsecret = 'long-enough-secret-1'\n",
            "accounts.tokens[1].secret: the same secret as another token",
        ),
        ("[accounts]\ndb = 'x.db'\ntokens = 'abc'\n", "expected [[accounts.tokens]] tables"),
        ("[accounts]\ndatabase = 'x.db'\n", "accounts.database: unknown setting"),
    ],
)
def test_bad_accounts_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "geogate.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    line = info.value.one_line()
    assert expected in line
    assert "\n" not in line
    assert "hunter2" not in line


def test_serve_refuses_bad_accounts_config_at_start(tmp_path: Path) -> None:
    """A bad [accounts] table or an unreachable store stops ``geogate serve`` before it
    listens, with one line on stderr and no DSN password."""
    path = tmp_path / "geogate.toml"
    path.write_text(
        "[[accounts.tokens]]\nname = 'a'\nrole = 'operator'\nsecret = 'long-enough-secret-1'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        geogate_argv("serve", "--config", str(path), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "the account API needs a store" in done.stderr
    closed = subprocess.run(  # nothing listens on port 1 of loopback
        geogate_argv(
            "serve", "--port", "0", "--db", "postgresql://geogate:hunter2@127.0.0.1:1/none"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert closed.returncode != 0
    assert "cannot open store" in closed.stderr
    assert "hunter2" not in closed.stderr + closed.stdout


def test_http_client_sees_json_errors_for_bad_bodies(service: AsgiClient) -> None:
    """A malformed event line is reported (207) and the valid ones are kept."""
    r = service.post("/v1/events", content="{broken\n", headers=auth(OPERATOR))
    assert r.status_code == 207
    assert r.json()["rejected"][0]["line"] == 1


def test_deploy_example_accounts_table_parses(tmp_path: Path) -> None:
    """The commented [accounts] example of deploy/geogate.toml, uncommented, is valid."""
    token = tmp_path / "ingest.token"
    token.write_text(OPERATOR, encoding="utf-8")
    lines = []
    for line in (DEPLOY / "geogate.toml").read_text(encoding="utf-8").splitlines():
        stripped = line.removeprefix("# ")
        key = stripped.split(" ", 1)[0]
        if line.startswith("# ") and key in {
            "db", "refresh_seconds", "max_stale_seconds", "[[accounts.tokens]]",
            "name", "role", "secret_file", "secret_env",
        }:  # fmt: skip
            lines.append(stripped)
        else:
            lines.append(line)
    text = "\n".join(lines).replace("/etc/geogate/ingest.token", str(token))
    path = tmp_path / "geogate.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={"GEOGATE_SUPPORT_TOKEN": VIEWER})
    assert config.accounts_db is not None
    assert [t.name for t in config.accounts_tokens] == ["ingest-pipeline", "support-desk"]
