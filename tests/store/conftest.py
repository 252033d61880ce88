"""Fixtures for the store contract tests: an open store on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from geogate.store.sql import SqlStore


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """An open, migrated store (SQLite, then PostgreSQL)."""
    s = SqlStore.open(store_url)
    try:
        yield s
    finally:
        s.close()
