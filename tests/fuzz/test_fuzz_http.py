"""Hostile bodies, query strings and headers at the service's HTTP edges, in process: whatever
arrives, the answer is below 500 and in the documented error shape. (schemathesis covers the
documented operations with schema-shaped input; this covers arbitrary bytes.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzz.targets import PAYMENT, REQUEST, hostile_text
from tests.service.support import AsgiClient

from geogate.service.app import create_app, service_of
from geogate.service.config import load_config

EXAMPLES = max(50, int(os.environ.get("GEOGATE_FUZZ_EXAMPLES", "300")) // 2)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OPERATOR = "operator-secret-fuzz-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiClient]:
    workdir = tmp_path_factory.mktemp("http-fuzz")
    config = workdir / "geogate.toml"
    config.write_text(
        '[serve]\ntrusted_proxies = ["127.0.0.1/32"]\n'
        f'[accounts]\ndb = "sqlite:///{Path(workdir) / "s.db"}"\n'
        f'[[accounts.tokens]]\nname = "fuzz"\nrole = "operator"\nsecret = "{OPERATOR}"\n',
        encoding="utf-8",
    )
    app = create_app(load_config(config), handle_sighup=False)
    with AsgiClient(app) as c:
        yield c
    service_of(app).close()


def well_formed_error(response: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, response.text  # type: ignore[attr-defined]
    if status >= 400:
        error = response.json()["error"]  # type: ignore[attr-defined]
        assert {"code", "message", "type", "param"} <= set(error)


DECIDE_SEEDS = (
    '{"ip": "8.8.8.8", "forwarded_for": ["1.2.3.4"], "at": "2024-07-10T00:00:00Z"}',
    '{"ip": "127.0.0.1", "headers": {"forwarded": "for=1.2.3.4"}, "account": "a"}',
)


@FUZZ
@given(body=hostile_text(DECIDE_SEEDS))
def test_decide_never_answers_5xx(client: AsgiClient, body: str) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    well_formed_error(client.post("/v1/decide", content=raw))


@FUZZ
@given(body=hostile_text((REQUEST, PAYMENT, f"[{REQUEST},{PAYMENT}]")))
def test_events_never_answer_5xx(client: AsgiClient, body: str) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    well_formed_error(client.post("/v1/events", content=raw, headers=AUTH))


@FUZZ
@given(
    path=st.sampled_from(["/v1/enforce", "/v1/accounts/a/appeal", "/v1/accounts/a/exempt"]),
    body=hostile_text(('{"at": "2024-07-10", "dry_run": true}', '{"note": "moved"}')),
)
def test_operator_posts_never_answer_5xx(client: AsgiClient, path: str, body: str) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    well_formed_error(client.post(path, content=raw, headers=AUTH))


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["limit", "after", "state", "at"]),
        hostile_text(("100", "2024-07-10", "acct-1")),
        max_size=3,
    ),
    path=st.sampled_from(["/v1/accounts", "/v1/accounts/a/explain", "/v1/accounts/a"]),
)
def test_queries_never_answer_5xx(client: AsgiClient, path: str, query: dict[str, str]) -> None:
    params = {
        k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in query.items()
    }
    well_formed_error(client.get(path, params=params, headers=AUTH))


@FUZZ
@given(
    xff=hostile_text(("1.2.3.4, 10.0.0.1",)),
    fwd=hostile_text(('for="[2001:db8::1]:80";proto=https',)),
    account=hostile_text(("acct-1",)),
)
def test_proxy_endpoint_headers_never_answer_5xx(
    client: AsgiClient, xff: str, fwd: str, account: str
) -> None:
    def header(value: str) -> bytes:
        # Header values are bytes on the wire: keep what HTTP allows (no CR, LF, NUL).
        data = value.encode("utf-8", "surrogatepass")
        return bytes(b for b in data if b not in b"\r\n\x00")

    headers = {"x-forwarded-for": header(xff), "forwarded": header(fwd)}
    headers["x-geogate-account"] = header(account)
    response = client.get("/v1/auth/nginx", headers=headers)
    assert response.status_code in (200, 400, 403), response.text
