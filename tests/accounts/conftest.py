"""Fixtures for the account tests: the tiny snapshot, the policy, an enforcer on each store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geogate.accounts.engine import Enforcer
from geogate.accounts.evidence import DeciderLocator
from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import builtin_policy_path, load_policy, parse_policy
from geogate.store.sql import SqlStore

from .netdata import build_snapshot


@pytest.fixture(scope="session")
def snapshot() -> Snapshot:
    return build_snapshot()


@pytest.fixture(scope="session")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot) -> Path:
    path = tmp_path_factory.mktemp("snap") / "tiny.snapshot"
    snapshot.save(path)
    return path


@pytest.fixture(scope="session")
def policies() -> PolicySet:
    """The shipped deny-list preset (enforced from 2024-07-09), account rules at defaults."""
    return PolicySet.of([load_policy(builtin_policy_path("unsupported-regions"))])


def policy_with(accounts_toml: str) -> PolicySet:
    """The deny-list preset with an ``[accounts]`` table appended."""
    text = builtin_policy_path("unsupported-regions").read_text() + "\n" + accounts_toml
    return PolicySet.of([parse_policy(text, path="test-policy.toml")])


def make_enforcer(store: SqlStore, policies: PolicySet, snapshot: Snapshot) -> Enforcer:
    return Enforcer(store, policies=policies, locator=DeciderLocator(Decider(policies, snapshot)))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore.open(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore.open(str(tmp_path / "accounts.db"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def enforcer(store: SqlStore, policies: PolicySet, snapshot: Snapshot) -> Enforcer:
    return make_enforcer(store, policies, snapshot)
