"""The OpenAPI 3.1 document of the decision service, served at ``GET /openapi.json``.

Written out by hand: the hot endpoints are plain ASGI callables (see ``service/app.py``), so
there is no framework model to generate it from. A test checks that every route of the app is
documented here and every documented path exists.
"""

from __future__ import annotations

from typing import Any

from geogate.decide import Reason
from geogate.service.responses import (
    DENIAL_CODE,
    DENIAL_MESSAGE,
    DENIAL_TYPE,
    HEADER_ACTION,
    HEADER_POLICY,
    HEADER_REASON,
    HEADER_REGION,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_DECISION_HEADERS = {
    HEADER_ACTION: {
        "description": "allow, warn or deny",
        "schema": {"type": "string", "enum": ["allow", "warn", "deny"]},
    },
    HEADER_REGION: {
        "description": "decided region (ISO 3166-1 or 3166-2 code) or 'unknown'",
        "schema": {"type": "string"},
    },
    HEADER_REASON: {"description": "reason codes, comma-separated", "schema": {"type": "string"}},
    HEADER_POLICY: {"description": "policy id@version", "schema": {"type": "string"}},
}

_PROXY_PARAMETERS = [
    {
        "name": "X-Forwarded-For",
        "in": "header",
        "required": False,
        "description": (
            "client chain; read only when it is the configured client_ip_header (the default) "
            "and believed only from trusted proxies (walked right to left)"
        ),
        "schema": {"type": "string"},
    },
    {
        "name": "Forwarded",
        "in": "header",
        "required": False,
        "description": (
            "RFC 7239 chain; read only when client_ip_header = 'forwarded' (then "
            "X-Forwarded-For is ignored)"
        ),
        "schema": {"type": "string"},
    },
    {
        "name": "X-Geogate-Account",
        "in": "header",
        "required": False,
        "description": "account id (header name set by account_header)",
        "schema": {"type": "string"},
    },
]


def _proxy_operation(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": (
            "Any method. The peer is the proxy; the client address comes from the forwarding "
            "headers. The request body is ignored."
        ),
        "parameters": _PROXY_PARAMETERS,
        "responses": {
            "200": {"description": "allowed (allow or warn)", "headers": _DECISION_HEADERS},
            "403": {**_json(_ref("Error"), "denied"), "headers": _DECISION_HEADERS},
            "400": _json(_ref("Error"), "malformed forwarding chain or client address"),
            "431": _json(_ref("Error"), "request headers too large"),
            "503": _json(_ref("Error"), "no IP data loaded and fail mode is closed, or overloaded"),
        },
    }


def _account_operation(summary: str, role: str, *, body: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "description": (
            f"Needs a {role} token. Present only with an account store ([accounts] db) and "
            "[[accounts.tokens]]; otherwise 404 accounts_api_disabled."
        ),
        "security": [{"accountToken": []}],
        "responses": {
            "200": {"description": "done; JSON body"},
            "401": _json(_ref("Error"), "missing or unknown token"),
            "403": _json(_ref("Error"), f"the token's role is below {role}"),
            "404": _json(_ref("Error"), "no such account, or the account API is off"),
            "400": _json(_ref("Error"), "malformed body or parameter"),
            "413": _json(_ref("Error"), "body larger than the endpoint's limit"),
            "503": _json(_ref("Error"), "the account store is unavailable, or overloaded"),
        },
    }
    if body:
        operation["requestBody"] = {"content": {"application/json": {"schema": {}}}}
    return operation


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _account_paths() -> dict[str, Any]:
    """The account API's paths (``geogate.accounts_api``), routed by the service."""
    account = {"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}
    events = _account_operation("Ingest events (JSON Lines or a JSON array)", "operator")
    events["requestBody"] = {
        "required": True,
        "content": {"application/x-ndjson": {"schema": {}}, "application/json": {"schema": {}}},
    }
    events["responses"]["207"] = {"description": "stored; some lines rejected (listed)"}
    action = _account_operation(
        "Operator action: exempt, unexempt, appeal, reinstate, reject-appeal, block (with a note)",
        "operator",
        body=True,
    )
    action["parameters"] = [
        account,
        {"name": "action", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    shown = _account_operation("One account: state, transitions, notices", "viewer")
    shown["parameters"] = [account]
    explained = _account_operation("Why the account is in its state, in plain language", "viewer")
    explained["parameters"] = [
        account,
        _query("at", "judge as of this date or date-time (1970-2100)", {"type": "string"}),
    ]
    listed = _account_operation("List accounts", "viewer")
    listed["parameters"] = [
        _query("state", "only accounts in this state", {"type": "string", "maxLength": 256}),
        _query(
            "limit",
            "page size",
            {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100},
        ),
        _query("after", "the previous page's next cursor", {"type": "string", "maxLength": 256}),
    ]
    enforced = _account_operation("Run enforcement at a date (viewers: dry_run only)", "viewer")
    enforced["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["at"],
                    "properties": {
                        "at": {"type": "string", "description": "date or date-time, 1970-2100"},
                        "dry_run": {"type": "boolean", "default": False},
                    },
                }
            }
        },
    }
    action["requestBody"] = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"note": {"type": "string", "maxLength": 4096}},
                }
            }
        }
    }
    return {
        "/v1/events": {"post": events},
        "/v1/accounts": {"get": listed},
        "/v1/accounts/{account}": {"get": shown},
        "/v1/accounts/{account}/explain": {"get": explained},
        "/v1/accounts/{account}/{action}": {"post": action},
        "/v1/enforce": {"post": enforced},
        "/v1/audit/verify": {"get": _account_operation("Verify the audit hash chain", "viewer")},
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI document for service ``version``."""
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "type", "param"],
                "properties": {
                    "code": {"type": "string", "examples": [DENIAL_CODE]},
                    "message": {"type": "string", "examples": [DENIAL_MESSAGE]},
                    "type": {"type": "string", "examples": [DENIAL_TYPE]},
                    "param": {"type": ["string", "null"]},
                },
            }
        },
    }
    chain = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    decide_request = {
        "type": "object",
        "required": ["ip"],
        "additionalProperties": False,
        "properties": {
            "ip": {"type": "string", "description": "address of the connection (the peer)"},
            "forwarded_for": {**chain, "description": "X-Forwarded-For value(s), oldest first"},
            "forwarded": {**chain, "description": "RFC 7239 Forwarded value(s)"},
            "account": {"type": ["string", "null"], "maxLength": 256},
            "org": {"type": ["string", "null"], "maxLength": 256},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": (
                    "request headers of interest; x-forwarded-for and forwarded are used when "
                    "the dedicated fields are absent"
                ),
            },
            "at": {
                "type": "string",
                "format": "date-time",
                "description": "decide as of this instant (default: now)",
            },
        },
    }
    decision = {
        "type": "object",
        "properties": {
            "client_ip": {"type": "string"},
            "account": {"type": "string"},
            "org": {"type": "string"},
            "action": {"type": "string", "enum": ["allow", "warn", "deny"]},
            "reasons": {"type": "array", "items": {"type": "string", "enum": list(Reason)}},
            "region": {"type": ["string", "null"]},
            "rule": {"type": ["string", "null"]},
            "policy": {"type": "string", "description": "policy id@version"},
            "effective_at": {"type": ["string", "null"], "format": "date-time"},
            "path": {
                "type": "string",
                "description": "lookup, exempt, account, fail_open or fail_closed",
            },
            "evidence": {"type": "object"},
            "problem": {"type": "string", "description": "why the fail mode was used"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "geogate decision service",
            "version": version,
            "description": "Geographic access decisions for API platforms.",
        },
        "paths": {
            "/v1/decide": {
                "post": {
                    "summary": "Decide for a request described in JSON",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("DecideRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("Decision"), "the decision (also for a deny)"),
                        "400": _json(_ref("Error"), "malformed JSON, parameter or address"),
                        "413": _json(_ref("Error"), "body larger than max_body_bytes"),
                        "503": _json(_ref("Error"), "overloaded: retry after Retry-After"),
                    },
                }
            },
            "/v1/auth/nginx": {"get": _proxy_operation("nginx auth_request endpoint")},
            "/v1/auth/envoy": {
                "get": _proxy_operation("Envoy ext_authz HTTP endpoint (any path below it)")
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: a policy and a snapshot are loaded",
                    "responses": {
                        "200": {"description": "ready; body says what is loaded"},
                        "503": _json(
                            _ref("Error"), "no snapshot loaded, or the account store is stale"
                        ),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
            "/admin/reload": {
                "post": {
                    "summary": "Reload policy and snapshot atomically (as SIGHUP does)",
                    "security": [{"adminToken": []}],
                    "responses": {
                        "200": {"description": "reloaded; body says what is loaded"},
                        "401": _json(_ref("Error"), "missing or wrong admin token"),
                        "403": _json(_ref("Error"), "not loopback and no admin token set"),
                        "422": _json(_ref("Error"), "new data invalid; previous data kept"),
                    },
                }
            },
            **_account_paths(),
        },
        "components": {
            "schemas": {"Error": error, "DecideRequest": decide_request, "Decision": decision},
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "accountToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
