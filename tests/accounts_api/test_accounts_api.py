"""The account HTTP API, in process (Starlette's test client): roles, operations, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts import traffic
from accounts.netdata import build_snapshot
from geogate.accounts.engine import Enforcer
from geogate.accounts.evidence import DeciderLocator
from geogate.accounts_api import ApiToken, Role, create_accounts_app
from geogate.decide import Decider
from geogate.errors import ConfigError
from geogate.policy.model import PolicySet
from geogate.policy.parse import builtin_policy_path, load_policy
from geogate.store.sql import SqlStore


class InProcessClient:
    """A synchronous in-process client over httpx's ASGITransport (Starlette's own InProcessClient
    wants the httpx2 package)."""

    def __init__(self, app: object) -> None:
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._client = httpx.AsyncClient(transport=transport, base_url="http://geogate.test")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[InProcessClient]:
    store = SqlStore.open(str(tmp_path / "api.db"))
    policies = PolicySet.of([load_policy(builtin_policy_path("unsupported-regions"))])
    enforcer = Enforcer(
        store, policies=policies, locator=DeciderLocator(Decider(policies, build_snapshot()))
    )
    app = create_accounts_app(
        enforcer,
        tokens=[ApiToken("alice", Role.OPERATOR, OPERATOR), ApiToken("vic", Role.VIEWER, VIEWER)],
        now=lambda: datetime(2024, 7, 20, tzinfo=UTC),
    )
    c = InProcessClient(app)
    try:
        yield c
    finally:
        c.close()
        store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _feed() -> str:
    return "".join(json.dumps(r) + "\n" for r in traffic.all_events())


def test_no_token_no_access(client: InProcessClient) -> None:
    for method, path in [
        ("get", "/v1/accounts"),
        ("post", "/v1/events"),
        ("get", "/v1/audit/verify"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/accounts", headers=auth("wrong-token-0123456789")).status_code == 401


def test_viewers_read_operators_write(client: InProcessClient) -> None:
    r = client.post("/v1/events", content=_feed(), headers=auth(VIEWER))
    assert r.status_code == 403
    r = client.post("/v1/events", content=_feed() + "{broken\n", headers=auth(OPERATOR))
    assert r.status_code == 207
    body = r.json()
    assert body["inserted"] > 14_000
    assert len(body["rejected"]) == 1
    assert any(t["account"] == "acct-vpn" and t["to"] == "blocked" for t in body["transitions"])
    again = client.post("/v1/events", content=_feed(), headers=auth(OPERATOR)).json()
    assert again["inserted"] == 0  # idempotent

    listed = client.get("/v1/accounts", params={"state": "blocked"}, headers=auth(VIEWER)).json()
    assert "acct-card" in {a["account"] for a in listed["accounts"]}
    shown = client.get("/v1/accounts/acct-card", headers=auth(VIEWER)).json()
    assert [t["to"] for t in shown["transitions"]] == ["warned", "blocked"]
    explained = client.get("/v1/accounts/acct-card/explain", headers=auth(VIEWER)).json()
    assert "payment_unsupported" in explained["text"]
    assert explained["assessment"]["verdict"] == "block"

    assert client.post("/v1/accounts/acct-card/appeal", headers=auth(VIEWER)).status_code == 403
    r = client.post("/v1/accounts/acct-card/appeal", json={"note": "moved"}, headers=auth(OPERATOR))
    assert r.json()["to"] == "appealed"
    r = client.post("/v1/accounts/acct-card/reinstate", headers=auth(OPERATOR))
    assert r.json()["actor"] == "operator:alice"
    r = client.post("/v1/accounts/acct-home/reinstate", headers=auth(OPERATOR))
    assert r.status_code == 409  # StateConflict
    assert (
        client.post("/v1/accounts/acct-home/frobnicate", headers=auth(OPERATOR)).status_code == 404
    )
    assert client.get("/v1/accounts/nobody", headers=auth(VIEWER)).status_code == 404

    dry = client.post(
        "/v1/enforce", json={"at": "2024-07-20", "dry_run": True}, headers=auth(VIEWER)
    )
    assert dry.status_code == 200
    assert dry.json()["dry_run"] is True
    assert (
        client.post("/v1/enforce", json={"at": "2024-07-20"}, headers=auth(VIEWER)).status_code
        == 403
    )
    assert (
        client.post("/v1/enforce", json={"at": "soon"}, headers=auth(OPERATOR)).status_code == 400
    )
    audit = client.get("/v1/audit/verify", headers=auth(VIEWER)).json()
    assert audit["ok"] is True


def test_tokens_are_required_and_long(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "x.db"))
    policies = PolicySet.of([load_policy(builtin_policy_path("unsupported-regions"))])
    enforcer = Enforcer(
        store, policies=policies, locator=DeciderLocator(Decider(policies, build_snapshot()))
    )
    with pytest.raises(ConfigError):
        create_accounts_app(enforcer, tokens=[])
    with pytest.raises(ConfigError):
        create_accounts_app(enforcer, tokens=[ApiToken("x", Role.OPERATOR, "short")])
    assert "secret='***'" in repr(ApiToken("x", Role.OPERATOR, OPERATOR))
    store.close()


def test_a_limit_of_five_thousand_digits_is_a_400_not_a_500(client: InProcessClient) -> None:
    """Found by the fuzz suite: int() of a 5,000-digit string raises ValueError."""
    r = client.get("/v1/accounts", params={"limit": "9" * 5000}, headers=auth(VIEWER))
    assert r.status_code == 400
    assert "limit" in r.json()["error"]["message"]
