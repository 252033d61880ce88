"""What every enforcement point answers: the denial body, error bodies, statuses and headers.

One table here maps a :class:`~geogate.decide.Decision` (or an error) to an HTTP status, a JSON
body and the ``x-geogate-*`` headers, so that the decision service, the nginx and Envoy
endpoints, the gRPC ext_authz server and the ASGI/WSGI middlewares answer byte for byte alike.

The denial body is the error object that OpenAI-compatible API clients already recognise::

    {"error": {"code": "unsupported_country_region_territory",
               "message": "Country, region, or territory not supported",
               "type": "request_forbidden", "param": null}}
"""

from __future__ import annotations

import json
from typing import Any, Final

from geogate.decide import Decision

DENIAL_STATUS: Final = 403
"""HTTP status of a request denied by the policy or because its account is blocked."""

UNAVAILABLE_STATUS: Final = 503
"""HTTP status of a request refused by the ``closed`` fail mode (no data to decide with)."""

BAD_REQUEST_STATUS: Final = 400
"""HTTP status of a request whose client address or forwarding headers are malformed."""

DENIAL_CODE: Final = "unsupported_country_region_territory"
DENIAL_MESSAGE: Final = "Country, region, or territory not supported"
DENIAL_TYPE: Final = "request_forbidden"

HEADER_ACTION: Final = "x-geogate-action"
HEADER_REGION: Final = "x-geogate-region"
HEADER_REASON: Final = "x-geogate-reason"
HEADER_POLICY: Final = "x-geogate-policy"
DECISION_HEADERS: Final = (HEADER_ACTION, HEADER_REGION, HEADER_REASON, HEADER_POLICY)
"""Response headers that carry a decision; proxies log them and pass them upstream."""

NO_REGION: Final = "unknown"
"""Value of ``x-geogate-region`` when the location is unknown (never a valid region code)."""

JSON_TYPE: Final = "application/json"


def error_body(
    *, code: str, message: str, type_: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    """An OpenAI-style error object: ``{"error": {"code", "message", "type", "param"}}``."""
    return {"error": {"code": code, "message": message, "type": type_, "param": param}}


def denial_body() -> dict[str, Any]:
    """The body of a denied request (status :data:`DENIAL_STATUS`), as a fresh dict."""
    return error_body(code=DENIAL_CODE, message=DENIAL_MESSAGE, type_=DENIAL_TYPE)


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON, the encoding every endpoint uses. A lone surrogate (a client's
    ``"\\ud800"`` echoed back in an error) is written as its JSON escape, so the answer is
    always valid UTF-8 and valid JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "backslashreplace"
    )


DENIAL_BYTES: Final = encode_json(denial_body())
""":func:`denial_body` encoded once; the hot paths send these bytes."""

UNAVAILABLE_BYTES: Final = encode_json(
    error_body(
        code="intel_unavailable",
        message=(
            "Access decision unavailable: IP intelligence data is missing or corrupt, "
            "and geogate fails closed"
        ),
        type_="service_unavailable",
    )
)
"""Body of a request refused by the ``closed`` fail mode."""


def invalid_address_body(message: str) -> dict[str, Any]:
    """Body of a request whose client address could not be determined (status 400)."""
    return error_body(
        code="invalid_client_address",
        message=f"Cannot determine the client address: {message}",
        param="x-forwarded-for",
    )


def status_of(decision: Decision) -> int:
    """The HTTP status an enforcement point answers for ``decision``.

    200 for allow and warn; :data:`DENIAL_STATUS` for a deny; :data:`UNAVAILABLE_STATUS` for a
    deny reached by the ``closed`` fail mode; :data:`BAD_REQUEST_STATUS` for an unusable address.
    """
    if not decision.is_denied:
        return 200
    if decision.path == "fail_closed":
        return UNAVAILABLE_STATUS
    if decision.path == "invalid":
        return BAD_REQUEST_STATUS
    return DENIAL_STATUS


def reason_header(decision: Decision) -> str:
    """Value of ``x-geogate-reason``: the reason codes, comma-separated (``"none"`` if empty)."""
    return ",".join(r.value for r in decision.reasons) or "none"


def decision_headers(decision: Decision) -> list[tuple[str, str]]:
    """The ``x-geogate-*`` headers describing ``decision`` (names lower-case, values ASCII)."""
    return [
        (HEADER_ACTION, decision.action.label),
        (HEADER_REGION, decision.region or NO_REGION),
        (HEADER_REASON, reason_header(decision)),
        (HEADER_POLICY, decision.policy),
    ]


def primary_reason(decision: Decision) -> str:
    """The first reason code (the one metrics count by), or ``"none"``."""
    return decision.reasons[0].value if decision.reasons else "none"


def refusal_body(status: int, problem: str | None = None) -> bytes:
    """The JSON body of a refused request with ``status`` (403, 503 or 400); ``problem`` is the
    one-line reason a client address was unusable (400 only)."""
    if status == UNAVAILABLE_STATUS:
        return UNAVAILABLE_BYTES
    if status == BAD_REQUEST_STATUS:
        return encode_json(invalid_address_body(problem or "malformed"))
    return DENIAL_BYTES
