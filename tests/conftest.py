"""Fixtures shared by the whole suite."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings

from geogate.client_ip import parse_ip
from geogate.intel.facts import IntelFacts

# The machines running the suite are shared and noisy: timing-based health checks and deadlines
# would fail tests for the machine's load, not for the code's behaviour. The suite's examples
# are derived from each test (derandomize): a CI run passes or fails on the code, not on the
# draw. Exploring new inputs is the job of `pytest --hypothesis-profile=explore` and of the long
# fuzz run (scripts/fuzz_long.py); what they find becomes a regression test.
settings.register_profile(
    "geogate",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile(
    "explore", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("geogate")


@dataclass
class TableLookup:
    """An IntelLookup over a small CIDR -> facts table: the simplest real implementation of the
    port, for tests of the pure decision rule."""

    table: dict[str, IntelFacts] = field(default_factory=dict)

    def lookup(self, ip: str) -> IntelFacts:
        addr = parse_ip(ip)
        best: tuple[int, IntelFacts] | None = None
        for cidr, facts in self.table.items():
            net = ipaddress.ip_network(cidr)
            if (
                addr.version == net.version
                and addr in net
                and (best is None or net.prefixlen > best[0])
            ):
                best = (net.prefixlen, facts)
        return best[1] if best else IntelFacts.unknown()


@pytest.fixture
def table_lookup() -> TableLookup:
    return TableLookup()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files from the current code; review the diff like code",
    )


# ---- PostgreSQL server for the account store tests (tests/store, tests/accounts) ----------
# One throwaway server per test session, started from the Debian binaries (the test command
# installs the postgresql package), listening on 127.0.0.1 at a random port, data in a temp
# dir. As root, the server runs as the unprivileged `postgres` user. Each test gets its own
# database. `store_url` runs a test once on SQLite and once on PostgreSQL.

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402


def _pg_bindir() -> Path:
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found: run `make test` (installs postgresql)")
    return found[-1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL (without database name) of a throwaway PostgreSQL server on 127.0.0.1."""
    bindir = _pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="geogate-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    base.chmod(0o700)
    data = base / "data"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "geogate"]
    subprocess.run(
        [*run_as, *initdb, "--no-sync", "-E", "UTF8", "--locale", "C"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
    )
    ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*ctl, "-o", opts, "-l", str(base / "server.log"), "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://geogate@127.0.0.1:{port}"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg  # noqa: PLC0415

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty account store: SQLite in tmp_path, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))
