"""The ASGI middleware inside a Starlette app and the WSGI middleware inside a WSGI app, both
driven by httpx (in process, with a chosen client address), plus one run under real uvicorn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from tests.service.conftest import Addresses
from tests.service.support import AsgiClient, free_port, wait_until

from geogate import asgi, wsgi
from geogate.errors import ConfigError, PolicyError
from geogate.intel.snapshot import Snapshot
from geogate.service.ports import InMemoryAccountStatus
from geogate.service.responses import UNAVAILABLE_BYTES, denial_body

LB = ("10.1.2.3", 5000)


async def whoami(request: Request) -> JSONResponse:
    decision = asgi.decision_of(request.scope)
    assert decision is not None
    assert request.state.geogate is decision
    return JSONResponse(
        {
            "action": decision.action.label,
            "region": decision.region,
            "client_ip": request.scope[asgi.CLIENT_IP_KEY],
        }
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"decided": asgi.decision_of(request.scope) is not None})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def starlette_app(snapshot: Snapshot | str | None, **options: object) -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami, methods=["GET", "POST"]),
            Route("/health", health),
            WebSocketRoute("/ws", echo),
        ],
        middleware=[
            Middleware(
                asgi.GeoGateMiddleware,  # type: ignore[arg-type]
                snapshot=snapshot,
                trusted_proxies=["10.0.0.0/8"],
                exempt_paths=["/health"],
                **options,
            )
        ],
    )


@pytest.fixture(scope="module")
def app(embedded: Snapshot) -> Starlette:
    return starlette_app(
        embedded, accounts=InMemoryAccountStatus(["acct-b"]), account_header="x-account"
    )


def test_asgi_denies_before_the_app(app: Starlette, addresses: Addresses) -> None:
    with AsgiClient(app, client=LB) as client:
        response = client.post("/whoami", headers={"x-forwarded-for": addresses.cn4}, json={})
    assert response.status_code == 403
    assert response.json() == denial_body()
    assert response.headers["x-geogate-region"] == "CN"


def test_asgi_passes_the_decision_to_the_app(app: Starlette, addresses: Addresses) -> None:
    with AsgiClient(app, client=LB) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": addresses.us6})
    assert response.status_code == 200
    assert response.json() == {"action": "allow", "region": "US", "client_ip": addresses.us6}
    assert "x-geogate-action" not in response.headers


def test_asgi_ignores_forwarding_headers_from_untrusted_peers(
    app: Starlette, addresses: Addresses
) -> None:
    with AsgiClient(app, client=(addresses.us4, 5000)) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": addresses.cn4})
    assert response.json()["client_ip"] == addresses.us4
    with AsgiClient(app, client=(addresses.cn4, 5000)) as client:
        spoofed = client.get("/whoami", headers={"x-forwarded-for": addresses.us4})
    assert spoofed.status_code == 403


def test_asgi_blocked_account(app: Starlette, addresses: Addresses) -> None:
    with AsgiClient(app, client=LB) as client:
        headers = {"x-forwarded-for": addresses.de4, "x-account": "acct-b"}
        response = client.get("/whoami", headers=headers)
    assert response.status_code == 403
    assert response.headers["x-geogate-reason"].startswith("account_blocked")


def test_asgi_malformed_chain_is_400(app: Starlette) -> None:
    with AsgiClient(app, client=LB) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": "1.2.3.4, bogus"})
    assert response.status_code == 400
    assert "bogus" in response.json()["error"]["message"]


def test_asgi_exempt_paths_are_not_decided(app: Starlette, addresses: Addresses) -> None:
    with AsgiClient(app, client=LB) as client:
        response = client.get("/health", headers={"x-forwarded-for": addresses.cn4})
    assert response.json() == {"decided": False}


def test_asgi_response_headers_option(embedded: Snapshot, addresses: Addresses) -> None:
    app = starlette_app(embedded, response_headers=True)
    with AsgiClient(app, client=LB) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": addresses.us4})
    assert response.headers["x-geogate-region"] == "US"


def test_asgi_missing_snapshot_fails_closed_or_open(tmp_path: Path, addresses: Addresses) -> None:
    missing = str(tmp_path / "nope.snapshot")
    with AsgiClient(starlette_app(missing), client=LB) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": addresses.us4})
    assert response.status_code == 503
    assert response.content == UNAVAILABLE_BYTES
    with AsgiClient(starlette_app(missing, fail_mode="open"), client=LB) as client:
        response = client.get("/whoami", headers={"x-forwarded-for": addresses.cn4})
    assert response.status_code == 200
    assert response.json()["action"] == "allow"


def test_asgi_bad_arguments_fail_at_construction(embedded: Snapshot) -> None:
    async def inner(scope: object, receive: object, send: object) -> None:
        raise AssertionError("unreachable")

    with pytest.raises(ConfigError, match="trusted-proxy"):
        asgi.GeoGateMiddleware(inner, snapshot=embedded, trusted_proxies=["10.0.0.0/99"])
    with pytest.raises(ConfigError, match="closed"):
        asgi.GeoGateMiddleware(inner, snapshot=embedded, fail_mode="maybe")
    with pytest.raises(PolicyError, match="no such file"):
        asgi.GeoGateMiddleware(inner, snapshot=embedded, policy="/nonexistent/policy.toml")


@pytest.fixture(scope="module")
def uvicorn_app(app: Starlette) -> Iterator[str]:
    """The middleware app under real uvicorn on loopback."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="uvicorn")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_asgi_under_uvicorn_uses_the_real_peer(uvicorn_app: str, addresses: Addresses) -> None:
    """127.0.0.1 is not in trusted_proxies (10.0.0.0/8): the header is ignored."""
    response = httpx.get(f"http://{uvicorn_app}/whoami", headers={"x-forwarded-for": addresses.cn4})
    assert response.status_code == 200
    assert response.json()["client_ip"] == "127.0.0.1"


def test_asgi_refuses_websocket_handshake_when_denied(
    embedded: Snapshot, addresses: Addresses
) -> None:
    """A WebSocket from a denied region is closed with 1008 before the app accepts it."""
    sent: list[dict[str, object]] = []
    app = starlette_app(embedded)

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"x-forwarded-for", addresses.cn4.encode())],
        "client": LB,
        "server": ("127.0.0.1", 80),
        "scheme": "ws",
        "root_path": "",
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008}]


# ----- WSGI -----------------------------------------------------------------------------------


def wsgi_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    decision = wsgi.decision_of(environ)  # type: ignore[arg-type]
    body = f"{decision.action.label if decision else '-'} {environ.get(wsgi.CLIENT_IP_KEY)}"
    start_response("200 OK", [("content-type", "text/plain")])  # type: ignore[operator]
    return [body.encode()]


@pytest.fixture(scope="module")
def wrapped(embedded: Snapshot) -> wsgi.GeoGateMiddleware:
    return wsgi.GeoGateMiddleware(
        wsgi_app,
        snapshot=embedded,
        trusted_proxies=["10.0.0.0/8"],
        accounts=InMemoryAccountStatus(["acct-b"]),
        account_header="X-Account",
        exempt_paths=["/health"],
    )


def wsgi_client(app: wsgi.GeoGateMiddleware, remote: str = "10.1.2.3") -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=app, remote_addr=remote), base_url="http://t"
    )


def test_wsgi_denies_and_allows(wrapped: wsgi.GeoGateMiddleware, addresses: Addresses) -> None:
    with wsgi_client(wrapped) as client:
        denied = client.get("/v1/x", headers={"x-forwarded-for": addresses.cn4})
        assert denied.status_code == 403
        assert denied.json() == denial_body()
        assert denied.headers["x-geogate-region"] == "CN"
        allowed = client.get("/v1/x", headers={"x-forwarded-for": addresses.us4})
        assert allowed.text == f"allow {addresses.us4}"
        blocked = client.get(
            "/v1/x", headers={"x-forwarded-for": addresses.us4, "x-account": "acct-b"}
        )
        assert blocked.status_code == 403
        assert client.get("/health", headers={"x-forwarded-for": addresses.cn4}).text == "- None"


def test_wsgi_untrusted_peer_and_malformed_chain(
    wrapped: wsgi.GeoGateMiddleware, addresses: Addresses
) -> None:
    with wsgi_client(wrapped, remote=addresses.us4) as client:
        response = client.get("/", headers={"x-forwarded-for": addresses.cn4})
        assert response.text == f"allow {addresses.us4}"
    with wsgi_client(wrapped) as client:
        response = client.get("/", headers={"x-forwarded-for": "x" * 5000})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_client_address"


def test_wsgi_is_thread_safe(wrapped: wsgi.GeoGateMiddleware, addresses: Addresses) -> None:
    results: list[int] = []

    def worker() -> None:
        with wsgi_client(wrapped) as client:
            for ip in (addresses.cn4, addresses.us4) * 20:
                results.append(client.get("/", headers={"x-forwarded-for": ip}).status_code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) == [200, 403]
    assert results.count(403) == results.count(200) == 80
