"""Fixtures for the scan tests: the embedded snapshot, the shipped policy, a small log."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.scan.synthetic import sample_clients, synthetic_requests

START = datetime(2024, 7, 5, tzinfo=UTC)  # the shipped policy's date falls inside the log


@pytest.fixture(scope="session")
def snapshot() -> Snapshot:
    return Snapshot.embedded()


@pytest.fixture(scope="session")
def policies() -> PolicySet:
    return load_policy_set([resolve_policy_path("builtin:unsupported-regions")])


@pytest.fixture(scope="session")
def requests(snapshot: Snapshot) -> pa.Table:
    """600 requests over 10 days from 40 accounts (event-format column names)."""
    return synthetic_requests(snapshot, 600, start=START, days=10, accounts=40, clients=150)


@pytest.fixture(scope="session")
def clients(snapshot: Snapshot) -> dict[str, str]:
    """One public IPv4 address per region of the synthetic log (slow to find: once)."""
    return sample_clients(snapshot)
