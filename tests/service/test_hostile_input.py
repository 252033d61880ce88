"""Hostile input at the service's edges: every reproducer of the hardening issue answers a 4xx
JSON error in the documented shape (never 500), bodies are bounded while they are read, and a
bad event line is rejected alone while the rest of the batch is stored. Real SQLite and
PostgreSQL stores, the service app called in process."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.service.conftest import Addresses
from tests.service.support import AsgiClient

from geogate.client_ip import ClientIPHeader, TrustedProxies
from geogate.service.app import create_app, service_of
from geogate.service.config import ServiceConfig, load_config

OPERATOR = "operator-secret-0123456789"
VIEWER = "viewer-secret-0123456789ab"
YEAR_ONE = "0001-01-01T00:00:00+01:00"


def auth(token: str = OPERATOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: object, status: int, code: str | None = None) -> dict[str, object]:
    """The response has ``status`` and the documented error shape (and ``code`` if given)."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body["error"]) == {"code", "message", "type", "param"}, body
    assert "\n" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def service_app(tmp_path: Path, db: str) -> AsgiClient:
    config = tmp_path / "geogate.toml"
    config.write_text(
        "[serve]\n"
        'trusted_proxies = ["127.0.0.1/32"]\n'
        "[accounts]\n"
        f"db = {json.dumps(db)}\n"
        f'[[accounts.tokens]]\nname = "ops"\nrole = "operator"\nsecret = "{OPERATOR}"\n'
        f'[[accounts.tokens]]\nname = "auditor"\nrole = "viewer"\nsecret = "{VIEWER}"\n',
        encoding="utf-8",
    )
    app = create_app(load_config(config), handle_sighup=False)
    return AsgiClient(app)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AsgiClient]:
    client = service_app(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield client
    finally:
        client.close()
        service_of(client.app).close()  # type: ignore[arg-type]


@pytest.fixture
def plain() -> Iterator[AsgiClient]:
    """The decision service without an account store."""
    app = create_app(ServiceConfig(), handle_sighup=False)
    with AsgiClient(app) as client:
        yield client


def good_request(addresses: Addresses, minute: int = 0, account: str = "acct-ok") -> str:
    return json.dumps(
        {
            "type": "request",
            "ts": f"2024-07-20T10:{minute:02d}:00Z",
            "account": account,
            "ip": addresses.us4,
        }
    )


BAD_LINES = [
    # year 1 with a positive offset cannot even be converted to UTC (OverflowError before)
    '{"type":"request","ts":"0001-01-01T00:00:00+01:00","account":"a","ip":"8.8.8.8"}',
    '{"type":"payment","ts":"2024-07-01T00:00:00Z","account":"a","amount":' + "9" * 401 + "}",
    '{"type":"payment","ts":"2024-07-01T00:00:00Z","account":"a","amount":' + "9" * 5001 + "}",
    '{"type":"request","ts":"2200-01-01T00:00:00Z","account":"a","ip":"8.8.8.8"}',
    "[" * 60_000,
]


# ----- POST /v1/decide (unauthenticated) --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (json.dumps({"ip": "8.8.8.8", "at": YEAR_ONE}), "invalid_parameter"),
        (json.dumps({"ip": "8.8.8.8", "at": "2200-01-01T00:00:00Z"}), "invalid_parameter"),
        (json.dumps({"ip": "8.8.8.8", "at": "1969-12-31"}), "invalid_parameter"),
        ("[" * 60_000, "invalid_json"),
        ('{"ip": "8.8.8.8", "headers": ' + '{"a": ' * 40 + '"x"' + "}" * 41, "invalid_json"),
        ('{"ip": "8.8.8.8", "account": ' + "1" * 5000 + "}", "invalid_json"),
        (b"\xff\xfe{", "invalid_json"),
    ],
)
def test_decide_rejects_hostile_bodies_with_400(
    plain: AsgiClient, body: str | bytes, code: str
) -> None:
    """Each of these answered 500 (OverflowError, RecursionError) or was decoded whole."""
    response = plain.post("/v1/decide", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, code)


def test_decide_body_limit_holds_for_chunked_bodies(plain: AsgiClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 4096  # 400 KiB in total, no Content-Length

    assert_error(plain.post("/v1/decide", content=chunks()), 413, "body_too_large")


# ----- the account API --------------------------------------------------------------------


def test_bad_event_lines_are_rejected_alone_over_http(
    service: AsgiClient, addresses: Addresses
) -> None:
    """207 listing each bad line by number; the good lines around them are stored."""
    lines = [good_request(addresses, 0), *BAD_LINES, good_request(addresses, 1)]
    response = service.post("/v1/events", content="\n".join(lines) + "\n", headers=auth())
    assert response.status_code == 207, response.text
    report = response.json()
    assert report["inserted"] == 2
    assert [r["line"] for r in report["rejected"]] == [2, 3, 4, 5, 6]
    messages = [r["error"] for r in report["rejected"]]
    assert "outside the years 1970 to 2100" in messages[0]
    assert "amount" in messages[1]
    assert "5001 digits" in messages[2]
    assert "outside the years 1970 to 2100" in messages[3]
    assert "nested deeper" in messages[4]
    # The same records as one JSON array: the same outcome, record by record.
    array = "[" + ",".join([good_request(addresses, 2), *BAD_LINES[:4]]) + "]"
    response = service.post("/v1/events", content=array, headers=auth())
    assert response.status_code == 207, response.text
    assert [r["line"] for r in response.json()["rejected"]] == [2, 3, 4, 5]
    assert response.json()["inserted"] == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", "[" * 60_000),
        ("/v1/events", "[" + "[" * 40 + "]" * 40 + "]"),
        ("/v1/enforce", "[" * 60_000),
        ("/v1/enforce", '{"at": ' + "[" * 100 + "]" * 100 + "}"),
        ("/v1/enforce", json.dumps({"at": YEAR_ONE, "dry_run": True})),
        ("/v1/accounts/acct-ok/appeal", "{" * 5000),
    ],
)
def test_account_api_rejects_deep_or_out_of_range_json(
    service: AsgiClient, path: str, body: str
) -> None:
    assert_error(service.post(path, content=body, headers=auth()), 400)


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "limit=0", "limit=abc", "limit=99999999999999999999", "after=" + "x" * 300],
)
def test_account_list_validates_paging(service: AsgiClient, query: str) -> None:
    assert_error(service.get(f"/v1/accounts?{query}", headers=auth(VIEWER)), 400)


def test_explain_rejects_out_of_range_at(service: AsgiClient, addresses: Addresses) -> None:
    service.post("/v1/events", content=good_request(addresses), headers=auth())
    path = "/v1/accounts/acct-ok/explain"
    assert service.get(path, headers=auth(VIEWER)).status_code == 200
    for at in (YEAR_ONE, "2200-01-01", "not-a-date"):
        assert_error(service.get(path, params={"at": at}, headers=auth(VIEWER)), 400)


def test_bodies_are_bounded_while_read_on_every_post(
    service: AsgiClient, addresses: Addresses
) -> None:
    """A chunked body (no Content-Length) is cut off at the limit, for a viewer's dry run and
    an operator's action as for ingestion; nothing is stored."""

    async def chunked(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            yield b" " * 65_536
            sent += 65_536

    service.post("/v1/events", content=good_request(addresses), headers=auth())
    for path, token, size in [
        ("/v1/events", OPERATOR, 17 * 1024 * 1024),
        ("/v1/enforce", VIEWER, 1024 * 1024),
        ("/v1/accounts/acct-ok/appeal", OPERATOR, 1024 * 1024),
    ]:
        assert_error(service.post(path, content=chunked(size), headers=auth(token)), 413)
        declared = {**auth(token), "content-length": str(size)}
        assert_error(service.post(path, content=b"", headers=declared), 413)


def test_operator_note_is_capped(service: AsgiClient, addresses: Addresses) -> None:
    lines = "".join(good_request(addresses, m) + "\n" for m in range(3))
    service.post("/v1/events", content=lines, headers=auth())
    long_note = json.dumps({"note": "x" * 5000})
    error = assert_error(
        service.post("/v1/accounts/acct-ok/exempt", content=long_note, headers=auth()), 400
    )
    assert "4096" in str(error["message"])
    shown = service.get("/v1/accounts/acct-ok", headers=auth(VIEWER)).json()
    assert shown["transitions"] == [] or all(
        len(t["note"] or "") <= 4096 for t in shown["transitions"]
    )


def test_store_outage_is_its_own_error_and_hides_the_database(
    tmp_path: Path, postgres_url: str, addresses: Addresses
) -> None:
    """503 ``store_unavailable`` (type ``service_unavailable``); neither host nor port nor
    database name appear in the answer."""
    client = service_app(tmp_path, postgres_url)
    try:
        assert client.post("/v1/events", content=good_request(addresses), headers=auth()).is_success
        server, name = postgres_url.rsplit("/", 1)
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        response = client.post("/v1/events", content=good_request(addresses, 5), headers=auth())
        error = assert_error(response, 503, "store_unavailable")
        assert error["type"] == "service_unavailable"
        host_port = server.rsplit("@", 1)[-1]
        for secret in (host_port, *host_port.split(":"), name):
            assert secret not in response.text
    finally:
        client.close()
        service_of(client.app).close()  # type: ignore[arg-type]


# ----- policies that pass the parser but would break the service -----------------------------

GOOD_POLICY = """
[policy]
id = "reload-test"
version = "1"
[[rules]]
id = "cn"
regions = ["CN"]
"""
BROKEN_POLICIES = {
    "unknown accounts key": GOOD_POLICY + "[accounts]\nbogus = 1\n",
    "year one with an offset": GOOD_POLICY.replace(
        'version = "1"', 'version = "1"\neffective = 0001-01-01T00:00:00+01:00'
    ),
    "deeply nested array": GOOD_POLICY + "x = " + "[" * 3000 + "]" * 3000 + "\n",
    "integer of 5000 digits": GOOD_POLICY.replace('version = "1"', "version = " + "9" * 5000),
}


@pytest.mark.parametrize("broken", list(BROKEN_POLICIES))
def test_reload_of_a_broken_policy_is_422_and_keeps_the_old_state(
    tmp_path: Path, addresses: Addresses, broken: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(GOOD_POLICY, encoding="utf-8")
    config = tmp_path / "geogate.toml"
    db = f"sqlite:///{tmp_path / 's.db'}"
    config.write_text(
        f"[serve]\npolicy = [{json.dumps(str(policy))}]\n"
        f"[accounts]\ndb = {json.dumps(db)}\n"
        f'[[accounts.tokens]]\nname = "ops"\nrole = "operator"\nsecret = "{OPERATOR}"\n',
        encoding="utf-8",
    )
    app = create_app(load_config(config), handle_sighup=False)
    with AsgiClient(app) as client:
        policy.write_text(BROKEN_POLICIES[broken], encoding="utf-8")
        failed = client.post("/admin/reload")
        error = assert_error(failed, 422, "reload_failed")
        assert "policy.toml" in str(error["message"])
        assert 'geogate_reloads_total{result="error"} 1.0' in client.get("/metrics").text
        assert client.get("/readyz").json()["generation"] == 1
        # The account API keeps working with the policy that was loaded.
        ingested = client.post("/v1/events", content=good_request(addresses), headers=auth())
        assert ingested.status_code == 200, ingested.text
    service_of(app).close()


def test_sighup_with_a_broken_policy_logs_one_line_and_counts_it(tmp_path: Path) -> None:
    """The SIGHUP path: no unhandled task, one log line, the error metric moves."""
    import signal  # noqa: PLC0415

    from tests.service.support import start_geogate, wait_until  # noqa: PLC0415

    policy = tmp_path / "policy.toml"
    policy.write_text(GOOD_POLICY, encoding="utf-8")
    server = start_geogate(tmp_path, "--policy", str(policy))
    try:
        policy.write_text(BROKEN_POLICIES["year one with an offset"], encoding="utf-8")
        server.process.signal(signal.SIGHUP)
        wait_until(
            lambda: 'geogate_reloads_total{result="error"} 1.0' in server.get("/metrics").text,
            timeout=10,
            what="the failed reload to be counted",
        )
        log = server.process.output()
        failures = [line for line in log.splitlines() if "reload (SIGHUP) failed" in line]
        assert len(failures) == 1, log
        assert "outside the years 1970 to 2100" in failures[0]
        assert server.get("/readyz").json()["generation"] == 1
        server.process.check_alive()
    finally:
        server.process.stop()
    assert "Traceback" not in server.process.output()
    assert "Task exception was never retrieved" not in server.process.output()


# ----- forwarded headers through the service -----------------------------------------------


def test_quoted_comma_in_forwarded_cannot_pick_the_location(addresses: Addresses) -> None:
    """``Forwarded: for=<CN>;ext="x, for=<US> y"`` was split on the quoted comma and allowed
    as US; it is one element whose client is the CN address."""
    config = ServiceConfig(
        trusted_proxies=TrustedProxies.parse(["127.0.0.1/32"]),
        client_ip_header=ClientIPHeader.FORWARDED,
    )
    with AsgiClient(create_app(config, handle_sighup=False)) as client:
        header = f'for={addresses.cn4};ext="x, for={addresses.us4} y"'
        response = client.get("/v1/auth/nginx", headers={"forwarded": header})
        assert response.status_code == 403
        assert response.headers["x-geogate-region"] == "CN"
        # X-Forwarded-For is not the configured header: a client-sent one is never read.
        both = {"forwarded": f"for={addresses.cn4}", "x-forwarded-for": addresses.us4}
        assert client.get("/v1/auth/nginx", headers=both).status_code == 403
        decided = client.post(
            "/v1/decide",
            json={"ip": "127.0.0.1", "forwarded": header, "forwarded_for": addresses.us4},
        ).json()
        assert (decided["client_ip"], decided["action"]) == (addresses.cn4, "deny")


# ----- overload --------------------------------------------------------------------------


def test_concurrency_limit_answers_503_with_retry_after_at_once(
    tmp_path: Path, addresses: Addresses
) -> None:
    """With max_concurrent_requests = 1, a second request while the first one waits (here for
    the account store's write lock) is refused at once; monitoring paths still answer."""
    config_file = tmp_path / "geogate.toml"
    db = f"sqlite:///{tmp_path / 's.db'}"
    config_file.write_text(
        "[serve]\nmax_concurrent_requests = 1\nretry_after_seconds = 7\n"
        f"[accounts]\ndb = {json.dumps(db)}\n"
        f'[[accounts.tokens]]\nname = "ops"\nrole = "operator"\nsecret = "{OPERATOR}"\n',
        encoding="utf-8",
    )
    app = create_app(load_config(config_file), handle_sighup=False)
    service = service_of(app)
    assert service.wiring is not None

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, float]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            service.wiring.lock.acquire()  # type: ignore[union-attr]
            try:
                first = asyncio.create_task(
                    client.post("/v1/events", content=good_request(addresses), headers=auth())
                )
                while app.state.load.in_flight < 1:
                    await asyncio.sleep(0.001)
                started = time.perf_counter()
                shed = await client.post("/v1/decide", json={"ip": addresses.us4})
                elapsed = time.perf_counter() - started
                health = await client.get("/healthz")
            finally:
                service.wiring.lock.release()  # type: ignore[union-attr]
            return await first, shed, health, elapsed

    first, shed, health, elapsed = asyncio.run(scenario())
    assert first.status_code == 200, first.text
    assert_error(shed, 503, "overloaded")
    assert shed.headers["retry-after"] == "7"
    assert elapsed < 0.5
    assert health.status_code == 200
    with AsgiClient(app) as client:
        assert client.post("/v1/decide", json={"ip": addresses.us4}).status_code == 200
        text = client.get("/metrics").text
    assert 'geogate_shed_requests_total{reason="concurrency"} 1.0' in text
    service.close()


def test_queue_delay_sheds_until_the_loop_catches_up(addresses: Addresses) -> None:
    """A stalled event loop (measured by the sampler) makes new requests 503 at once; when the
    delay is gone they are served again."""
    app = create_app(ServiceConfig(max_queue_delay_ms=20), handle_sighup=False)
    monitor = app.state.load

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        statuses = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            monitor.start()
            try:
                await asyncio.sleep(0.02)
                statuses.append(
                    (await client.post("/v1/decide", json={"ip": "8.8.8.8"})).status_code
                )
                time.sleep(0.08)  # the loop is stuck: what a flood of requests does to it
                await asyncio.sleep(0.01)  # the sampler wakes up 80 ms late
                statuses.append(
                    (await client.post("/v1/decide", json={"ip": "8.8.8.8"})).status_code
                )
                statuses.append((await client.get("/readyz")).status_code)
                await asyncio.sleep(0.3)  # on-time samples: the measured delay decays
                statuses.append(
                    (await client.post("/v1/decide", json={"ip": "8.8.8.8"})).status_code
                )
            finally:
                await monitor.stop()
        return statuses

    assert asyncio.run(scenario()) == [200, 503, 200, 200]


def test_readyz_reports_a_stale_account_store(tmp_path: Path) -> None:
    db_file = tmp_path / "store.db"
    config_file = tmp_path / "geogate.toml"
    config_file.write_text(
        f"[accounts]\ndb = {json.dumps(f'sqlite:///{db_file}')}\n"
        "refresh_seconds = 0.1\nmax_stale_seconds = 0.3\n",
        encoding="utf-8",
    )
    app = create_app(load_config(config_file), handle_sighup=False)
    service = service_of(app)
    assert service.wiring is not None
    with AsgiClient(app) as client:
        assert client.get("/readyz").status_code == 200
        shutil.move(db_file, tmp_path / "away.db")
        time.sleep(0.35)
        assert service.wiring.status.refresh() is False
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["error"]["code"] == "accounts_stale"
        assert body["status"] == "not_ready"
        assert "max_stale_seconds" in body["error"]["message"]
    service.close()


# ----- lone surrogates (found by the fuzz suite) --------------------------------------------


def test_lone_surrogates_never_fail_an_answer_or_a_batch(
    service: AsgiClient, plain: AsgiClient, addresses: Addresses
) -> None:
    """A ``"\\ud800"`` escape is valid JSON but not storable text: echoed in an error it made
    the answer fail to encode (500), in an event it failed the whole batch at the store (500).
    """
    decided = plain.post("/v1/decide", content=b'{"ip": "8.8.8.8", "\\ud800": 1}')
    error = assert_error(decided, 400, "invalid_parameter")
    assert error["param"] == "\ud800"  # returned as the JSON escape it came as
    lines = [
        good_request(addresses, 0),
        '{"type":"request","ts":"2024-07-20T10:01:00Z","account":"a\\ud800","ip":"8.8.8.8"}',
        '{"type":"request","ts":"2024-07-20T10:02:00Z","account":"b","ip":"8.8.8.8",'
        '"extra":{"x":["\\udc80"]}}',
        good_request(addresses, 3),
    ]
    response = service.post("/v1/events", content="\n".join(lines), headers=auth())
    assert response.status_code == 207, response.text
    assert response.json()["inserted"] == 2
    assert [(r["line"], r["field"]) for r in response.json()["rejected"]] == [
        (2, "account"),
        (3, "extra"),
    ]
    noted = service.post(
        "/v1/accounts/acct-ok/exempt", content=b'{"note": "\\ud800"}', headers=auth()
    )
    assert noted.status_code < 500, noted.text
