"""The decision service app in process (Starlette's test client): every endpoint, hostile input,
fail modes, account awareness, reload and metrics. Real policy files and real snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.service.conftest import Addresses
from tests.service.support import AsgiClient, tiny_snapshot

from geogate.client_ip import TrustedProxies
from geogate.errors import StoreUnavailable
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.service.app import create_app, service_of
from geogate.service.config import FailMode, ServiceConfig, load_config
from geogate.service.engine import build_engine
from geogate.service.ports import InMemoryAccountStatus
from geogate.service.responses import UNAVAILABLE_BYTES, denial_body

LB = ("127.0.0.1", 40000)  # a trusted proxy peer
OUTSIDE = ("203.0.113.50", 40000)  # an untrusted peer (TEST-NET-3: not located by the data)
TRUSTED = TrustedProxies.parse(["127.0.0.1/32", "::1/128"])
DENY_CN = """
[policy]
id = "test-deny"
version = "1"
mode = "deny-list"
[exemptions]
accounts = ["acct-exempt"]
[[rules]]
id = "cn"
regions = ["CN"]
"""
DENY_RU = DENY_CN.replace('id = "test-deny"', 'id = "test-deny-ru"').replace('["CN"]', '["RU"]')


def engine_of(
    snapshot: Snapshot | None,
    *,
    fail_mode: FailMode = FailMode.CLOSED,
    spec: str = "builtin:unsupported-regions",
):  # type: ignore[no-untyped-def]
    policies = load_policy_set([resolve_policy_path(spec)])
    return build_engine(
        policies,
        snapshot,
        trusted=TRUSTED,
        fail_mode=fail_mode,
        snapshot_problem=None if snapshot is not None else "snapshot x: missing",
    )


@pytest.fixture
def client(embedded: Snapshot) -> Iterator[AsgiClient]:
    accounts = InMemoryAccountStatus(["acct-blocked"])
    app = create_app(
        ServiceConfig(trusted_proxies=TRUSTED),
        engine=engine_of(embedded),
        accounts=accounts,
        handle_sighup=False,
    )
    with AsgiClient(app, client=LB) as c:
        yield c


def decide(client: AsgiClient, **body: object) -> dict[str, object]:
    response = client.post("/v1/decide", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


# ----- POST /v1/decide ------------------------------------------------------------------------


def test_decide_explains_deny_and_allow(client: AsgiClient, addresses: Addresses) -> None:
    denied = decide(client, ip=addresses.cn4)
    assert denied["action"] == "deny"
    assert denied["region"] == "CN"
    assert denied["reasons"] == ["region_unsupported"]
    assert denied["rule"] == "china"
    assert denied["policy"] == "unsupported-regions@2024-07-09"
    assert denied["client_ip"] == addresses.cn4
    assert denied["path"] == "lookup"
    evidence = denied["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["country"] == "CN"
    assert evidence["provenance"]
    allowed = decide(client, ip=addresses.us6)
    assert (allowed["action"], allowed["region"]) == ("allow", "US")


def test_decide_uses_the_policy_in_force_at_the_given_time(
    client: AsgiClient, addresses: Addresses
) -> None:
    before = decide(client, ip=addresses.cn4, at="2024-07-01T00:00:00Z")
    assert before["action"] == "warn"
    assert before["reasons"] == ["region_unsupported", "enforcement_pending"]


def test_decide_believes_forwarded_for_only_from_a_trusted_peer(
    client: AsgiClient, addresses: Addresses
) -> None:
    via_proxy = decide(client, ip="127.0.0.1", forwarded_for=f"{addresses.us4}, {addresses.cn4}")
    assert (via_proxy["client_ip"], via_proxy["action"]) == (addresses.cn4, "deny")
    spoofed = decide(client, ip=addresses.us4, forwarded_for=addresses.cn4)
    assert (spoofed["client_ip"], spoofed["action"]) == (addresses.us4, "allow")
    as_list = decide(client, ip="::1", forwarded_for=[addresses.us4, addresses.cn6])
    assert as_list["client_ip"] == addresses.cn6
    from_headers = decide(client, ip="127.0.0.1", headers={"X-Forwarded-For": addresses.cn4})
    assert from_headers["client_ip"] == addresses.cn4


def test_decide_ignores_the_forwarded_header_unless_configured(
    client: AsgiClient, addresses: Addresses
) -> None:
    result = decide(client, ip="127.0.0.1", forwarded=f"for={addresses.us4}")
    assert result["client_ip"] == "127.0.0.1"


def test_decide_blocked_account_is_denied_whatever_the_region(
    client: AsgiClient, addresses: Addresses
) -> None:
    result = decide(client, ip=addresses.us4, account="acct-blocked", org="org-1")
    assert result["action"] == "deny"
    assert result["reasons"] == ["account_blocked", "region_supported"]
    assert result["path"] == "account"
    assert (result["account"], result["org"]) == ("acct-blocked", "org-1")
    assert decide(client, ip=addresses.us4, account="acct-other")["action"] == "allow"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"\xff\xfe", "invalid_json", None),
        (b"[1, 2]", "invalid_parameter", None),
        (b"{}", "invalid_parameter", "ip"),
        (b'{"ip": 42}', "invalid_parameter", "ip"),
        (b'{"ip": "1.2.3.999"}', "invalid_parameter", "ip"),
        (b'{"ip": "fe80::1%eth0"}', "invalid_parameter", "ip"),
        (b'{"ip": "1.2.3.4", "color": "red"}', "invalid_parameter", "color"),
        (b'{"ip": "1.2.3.4", "forwarded_for": 7}', "invalid_parameter", "forwarded_for"),
        (b'{"ip": "1.2.3.4", "account": ""}', "invalid_parameter", "account"),
        (b'{"ip": "1.2.3.4", "headers": {"a": 1}}', "invalid_parameter", "headers"),
        (b'{"ip": "1.2.3.4", "at": "yesterday"}', "invalid_parameter", "at"),
        (
            b'{"ip": "127.0.0.1", "forwarded_for": "junk"}',
            "invalid_client_address",
            "forwarded_for",
        ),
    ],
)
def test_decide_rejects_malformed_requests_with_a_clear_body(
    client: AsgiClient, body: bytes, code: str, param: str | None
) -> None:
    response = client.post("/v1/decide", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_decide_rejects_an_oversized_body_with_413(client: AsgiClient) -> None:
    response = client.post("/v1/decide", content=b" " * 70_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert client.get("/healthz").status_code == 200


def test_decide_rejects_an_oversized_or_too_deep_chain(
    client: AsgiClient, addresses: Addresses
) -> None:
    long_chain = ", ".join([addresses.us4] * 400)
    response = client.post("/v1/decide", json={"ip": "127.0.0.1", "forwarded_for": long_chain})
    assert response.status_code == 400
    assert "longer than 4096" in response.json()["error"]["message"]
    deep = ", ".join(["127.0.0.1"] * 40)
    response = client.post("/v1/decide", json={"ip": "127.0.0.1", "forwarded_for": deep})
    assert response.status_code == 400
    assert "hops" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/decide", "/v1/auth/nginx", "/v1/auth/envoy/x"])
def test_oversized_headers_get_431(client: AsgiClient, path: str) -> None:
    response = client.post(path, json={"ip": "8.8.8.8"}, headers={"x-junk": "a" * 40_000})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "request_headers_too_large"
    assert client.get("/healthz").status_code == 200


def test_decide_is_post_only(client: AsgiClient) -> None:
    response = client.get("/v1/decide")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# ----- proxy endpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/auth/nginx", "/v1/auth/envoy", "/v1/auth/envoy/v1/x?y=1"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_proxy_endpoints_answer_with_status_body_and_headers(
    client: AsgiClient, addresses: Addresses, path: str, method: str
) -> None:
    denied = client.request(method, path, headers={"x-forwarded-for": addresses.cn4})
    assert denied.status_code == 403
    assert denied.json() == denial_body()
    assert denied.headers["x-geogate-action"] == "deny"
    assert denied.headers["x-geogate-region"] == "CN"
    assert denied.headers["x-geogate-reason"] == "region_unsupported"
    assert denied.headers["x-geogate-policy"] == "unsupported-regions@2024-07-09"
    allowed = client.request(method, path, headers={"x-forwarded-for": addresses.us4})
    assert allowed.status_code == 200
    assert allowed.content == b""
    assert allowed.headers["x-geogate-region"] == "US"


def test_proxy_endpoint_ignores_headers_from_an_untrusted_peer(
    embedded: Snapshot, addresses: Addresses
) -> None:
    app = create_app(ServiceConfig(), engine=engine_of(embedded), handle_sighup=False)
    with AsgiClient(app, client=OUTSIDE) as outside:
        response = outside.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.cn4})
    assert response.status_code == 200
    assert response.headers["x-geogate-region"] == "unknown"


def test_proxy_endpoint_account_header(client: AsgiClient, addresses: Addresses) -> None:
    response = client.get(
        "/v1/auth/nginx",
        headers={"x-forwarded-for": addresses.us4, "x-geogate-account": "acct-blocked"},
    )
    assert response.status_code == 403
    assert response.headers["x-geogate-reason"] == "account_blocked,region_supported"


def test_proxy_endpoint_malformed_chain_is_400_and_server_survives(client: AsgiClient) -> None:
    for chain in ("unknown", "_hidden", "1.2.3.4:99999:1", "[::1", "a" * 5000, "\u00e9".encode()):
        response = client.get("/v1/auth/envoy", headers={"x-forwarded-for": chain})
        assert response.status_code == 400, chain
        assert response.json()["error"]["code"] == "invalid_client_address"
    assert client.get("/healthz").json() == {"status": "ok"}


# ----- fail modes -----------------------------------------------------------------------------


def test_fail_closed_without_snapshot(addresses: Addresses) -> None:
    app = create_app(ServiceConfig(), engine=engine_of(None), handle_sighup=False)
    with AsgiClient(app, client=LB) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "intel_unavailable"
        assert "snapshot x: missing" in ready.json()["error"]["message"]
        refused = c.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4})
        assert refused.status_code == 503
        assert refused.content == UNAVAILABLE_BYTES
        assert refused.headers["x-geogate-reason"] == "intel_unavailable"
        decided = decide(c, ip=addresses.us4)
        assert decided["action"] == "deny"
        assert decided["path"] == "fail_closed"
        assert decided["reasons"] == ["intel_unavailable"]
        assert decided["problem"] == "snapshot x: missing"
        assert c.get("/healthz").status_code == 200


def test_fail_open_without_snapshot(addresses: Addresses) -> None:
    app = create_app(
        ServiceConfig(), engine=engine_of(None, fail_mode=FailMode.OPEN), handle_sighup=False
    )
    with AsgiClient(app, client=LB) as c:
        allowed = c.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.cn4})
        assert allowed.status_code == 200
        assert allowed.headers["x-geogate-action"] == "allow"
        assert allowed.headers["x-geogate-reason"] == "intel_unavailable"
        assert decide(c, ip=addresses.cn4)["path"] == "fail_open"


def test_exempt_account_passes_even_when_failing_closed(tmp_path: Path) -> None:
    policy = tmp_path / "deny.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    app = create_app(ServiceConfig(), engine=engine_of(None, spec=str(policy)), handle_sighup=False)
    with AsgiClient(app, client=LB) as c:
        result = decide(c, ip="8.8.8.8", account="acct-exempt")
        assert (result["action"], result["path"]) == ("allow", "exempt")
        assert decide(c, ip="8.8.8.8", account="acct-x")["path"] == "fail_closed"


class BrokenStore:
    """An account port whose store is down."""

    def is_blocked(self, account: str) -> bool:
        raise StoreUnavailable("account store unreachable")


@pytest.mark.parametrize(("mode", "status"), [(FailMode.CLOSED, 503), (FailMode.OPEN, 200)])
def test_account_store_outage_follows_the_fail_mode(
    embedded: Snapshot, addresses: Addresses, mode: FailMode, status: int
) -> None:
    app = create_app(
        ServiceConfig(),
        engine=engine_of(embedded, fail_mode=mode),
        accounts=BrokenStore(),
        handle_sighup=False,
    )
    with AsgiClient(app, client=LB) as c:
        headers = {"x-forwarded-for": addresses.us4, "x-geogate-account": "acct-1"}
        response = c.get("/v1/auth/nginx", headers=headers)
        assert response.status_code == status
        assert "intel_unavailable" in response.headers["x-geogate-reason"]
        result = decide(c, ip=addresses.us4, account="acct-1")
        assert result["path"] == f"fail_{mode.value}"
        assert result["problem"] == "account store unreachable"
        # A request naming no account does not need the store.
        assert (
            c.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.us4}).status_code == 200
        )


@pytest.mark.parametrize("content", [b"", b"not a snapshot at all", b"PK\x03\x04" + b"\x00" * 100])
def test_corrupt_snapshot_file_gives_not_ready_and_clear_errors(
    tmp_path: Path, content: bytes, addresses: Addresses
) -> None:
    path = tmp_path / "corrupt.snapshot"
    path.write_bytes(content)
    config = ServiceConfig(snapshot=str(path), trusted_proxies=TRUSTED)
    with AsgiClient(create_app(config, handle_sighup=False), client=LB) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "corrupt.snapshot" in ready.json()["error"]["message"]
        refused = c.get("/v1/auth/envoy", headers={"x-forwarded-for": addresses.us4})
        assert refused.status_code == 503
        assert refused.content == UNAVAILABLE_BYTES


# ----- reload ---------------------------------------------------------------------------------


def test_admin_reload_swaps_policy_and_snapshot(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    snap = tmp_path / "data.snapshot"
    tiny_snapshot(snap, {"81.2.69.0-81.2.69.255": "CN", "81.2.70.0-81.2.70.255": "RU"})
    config = ServiceConfig(policies=(str(policy),), snapshot=str(snap))
    with AsgiClient(create_app(config, handle_sighup=False), client=LB) as c:
        assert decide(c, ip="81.2.69.10")["action"] == "deny"
        assert decide(c, ip="81.2.70.10")["action"] == "allow"
        policy.write_text(DENY_RU, encoding="utf-8")
        tiny_snapshot(snap, {"81.2.69.0-81.2.69.255": "RU", "81.2.70.0-81.2.70.255": "US"})
        reloaded = c.post("/admin/reload")
        assert reloaded.status_code == 200
        assert reloaded.json()["generation"] == 2
        assert reloaded.json()["policy"] == "test-deny-ru@1"
        first = decide(c, ip="81.2.69.10")
        assert (first["action"], first["region"], first["policy"]) == (
            "deny",
            "RU",
            "test-deny-ru@1",
        )
        assert decide(c, ip="81.2.70.10")["region"] == "US"
        assert 'geogate_reloads_total{result="ok"} 1.0' in c.get("/metrics").text


def test_failed_reload_keeps_the_running_data(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    snap = tiny_snapshot(tmp_path / "data.snapshot", {"81.2.69.0-81.2.69.255": "CN"})
    config = ServiceConfig(policies=(str(policy),), snapshot=str(snap))
    with AsgiClient(create_app(config, handle_sighup=False), client=LB) as c:
        policy.write_text("[policy]\nmode = 'sideways'\n", encoding="utf-8")
        failed = c.post("/admin/reload")
        assert failed.status_code == 422
        message = failed.json()["error"]["message"]
        assert "policy.toml" in message
        assert "previous policy and snapshot stay in use" in message
        policy.write_text(DENY_CN, encoding="utf-8")
        snap.write_bytes(b"garbage")
        failed = c.post("/admin/reload")
        assert failed.status_code == 422
        assert "data.snapshot" in failed.json()["error"]["message"]
        assert decide(c, ip="81.2.69.10")["action"] == "deny"
        assert c.get("/readyz").json()["generation"] == 1
        assert 'geogate_reloads_total{result="error"} 2.0' in c.get("/metrics").text


def test_admin_reload_needs_the_token_when_one_is_set(embedded: Snapshot) -> None:
    config = load_config(overrides={"admin_token": "s3cret-token-0123456789"})
    assert "s3cret" not in repr(config)
    app = create_app(config, engine=engine_of(embedded), handle_sighup=False)
    with AsgiClient(app, client=LB) as c:
        assert c.post("/admin/reload").status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert c.post("/admin/reload", headers=wrong).status_code == 401
        right = {"authorization": "Bearer s3cret-token-0123456789"}
        assert c.post("/admin/reload", headers=right).status_code == 200


def test_admin_reload_without_token_is_loopback_only(embedded: Snapshot) -> None:
    app = create_app(ServiceConfig(), engine=engine_of(embedded), handle_sighup=False)
    with AsgiClient(app, client=OUTSIDE) as c:
        response = c.post("/admin/reload")
    assert response.status_code == 403
    assert "loopback" in response.json()["error"]["message"]


# ----- health, metrics, openapi ----------------------------------------------------------------


def test_readyz_says_what_is_loaded(client: AsgiClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["policy"] == "unsupported-regions@2024-07-09"
    assert body["snapshot"]["source"] == "embedded"
    assert body["snapshot"]["sources"]
    assert body["snapshot"]["age_days"] >= 0


def test_metrics_count_decisions_by_action_region_reason(
    client: AsgiClient, addresses: Addresses
) -> None:
    for _ in range(3):
        client.get("/v1/auth/nginx", headers={"x-forwarded-for": addresses.cn4})
    client.post("/v1/decide", json={"ip": addresses.us4})
    client.post("/v1/decide", content=b"{")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'geogate_decisions_total{action="deny",endpoint="nginx",reason="region_unsupported",'
        'region="CN"} 3.0'
    ) in text
    assert (
        'geogate_decisions_total{action="allow",endpoint="decide",reason="region_supported",'
        'region="US"} 1.0'
    ) in text
    assert 'geogate_decision_seconds_count{endpoint="nginx"} 3.0' in text
    assert 'geogate_request_errors_total{code="invalid_json",endpoint="decide"} 1.0' in text
    assert "geogate_snapshot_age_days " in text
    assert "geogate_ready 1.0" in text


def test_openapi_documents_every_route(client: AsgiClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    app = client.app
    routes = {route.path.replace("{rest:path}", "") for route in app.routes}  # type: ignore[attr-defined]
    # The operator console serves HTML pages for people, not an API (docs/console.md).
    assert routes - {"/console"} == set(document["paths"])
    schema = document["components"]["schemas"]["DecideRequest"]
    assert set(schema["properties"]) >= {"ip", "forwarded_for", "account", "headers"}


def test_unknown_path_is_a_json_404(client: AsgiClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_service_object_is_reachable_from_the_app(client: AsgiClient) -> None:
    service = service_of(client.app)  # type: ignore[arg-type]
    assert service.ref.current.is_ready
    assert b"geogate_ready 1.0" in service.metrics.render()
