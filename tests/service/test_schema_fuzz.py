"""schemathesis against the running service's own OpenAPI document: every documented
operation, public and operator (with tokens), gets generated requests, and none may answer a
5xx. A real ``geogate serve`` (uvicorn) on loopback with a SQLite account store."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests.service.support import Geogate, start_geogate

OPERATOR = "operator-secret-schema-0123456789"
ADMIN = "admin-secret-schema-0123456789"


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Geogate]:
    workdir = tmp_path_factory.mktemp("schema-fuzz")
    config = workdir / "geogate.toml"
    db = f"sqlite:///{workdir / 'store.db'}"
    config.write_text(
        "[serve]\n"
        'trusted_proxies = ["127.0.0.1/32"]\n'
        f'admin_token = "{ADMIN}"\n'
        "max_queue_delay_ms = 0\n"  # a slow shared CI machine must not shed the fuzzer
        "[accounts]\n"
        f"db = {json.dumps(db)}\n"
        f'[[accounts.tokens]]\nname = "fuzzer"\nrole = "operator"\nsecret = "{OPERATOR}"\n',
        encoding="utf-8",
    )
    server = start_geogate(workdir, "--config", str(config))
    try:
        yield server
    finally:
        server.process.stop()
    assert "Traceback" not in server.process.output()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Geogate) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


EXAMPLES_PER_OPERATION = 25


def test_no_operation_answers_5xx(api_schema: schemathesis.schemas.BaseSchema) -> None:
    """Each operation, with generated parameters, headers and bodies (schemathesis' strategies
    driven by Hypothesis directly: its pytest plugin does not support this pytest yet)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        fuzz_operation(operation)


def fuzz_operation(operation: schemathesis.APIOperation) -> None:
    """Run generated cases against one operation; fails (shrunk) on the first 5xx."""
    headers = {
        "Authorization": f"Bearer {ADMIN if operation.path == '/admin/reload' else OPERATOR}"
    }

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=30)

    call()


def test_the_document_covers_public_and_operator_paths(api_schema: object) -> None:
    raw = api_schema.raw_schema  # type: ignore[attr-defined]
    for path in ("/v1/decide", "/v1/auth/nginx", "/v1/events", "/v1/enforce", "/admin/reload"):
        assert path in raw["paths"]
