"""kill -9 in the middle of ingesting a file, then the same file again: no acknowledged event
is lost and none is counted twice (each batch is one transaction; event ids are idempotent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from geogate.accounts.evidence import AccountEvidence
from geogate.store.sql import SqlStore

from . import traffic


def _write_file(path: Path) -> int:
    """Write about 43,000 events; returns how many distinct ones (identical lines are one
    event: their content hash is their id)."""
    seen: set[str] = set()
    with path.open("w", encoding="utf-8") as f:
        for seed in (1, 2, 3):
            for rec in traffic.all_events(seed):
                line = json.dumps(dict(rec, account=f"s{seed}-{rec['account']}"))
                f.write(line + "\n")
                seen.add(line)
    return len(seen)


def _ingest(path: Path, url: str, snapshot: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "geogate.cli.main", "ingest", str(path), "--db", url]
    cmd += ["--snapshot", str(snapshot), "--batch-size", "500", "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _counters(store: SqlStore) -> dict[str, object]:
    """Everything an account's evidence counts (bookkeeping aside: the day of the last
    assessment, which depends on where batches were cut)."""
    out: dict[str, object] = {}
    for row in store.iter_accounts():
        ev = AccountEvidence.from_dict(row.evidence).to_dict()
        ev.pop("ad")
        out[row.account] = ev
    return out


def test_kill_9_mid_file_then_rerun_loses_and_doubles_nothing(
    store_url: str, snapshot_file: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    total = _write_file(events)
    SqlStore.open(store_url).close()  # migrate first, so the poll below can read
    watcher = SqlStore.open(store_url)
    proc = _ingest(events, store_url, snapshot_file)
    acknowledged = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        acknowledged = watcher.count_events()
        if acknowledged >= 1_000:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "ingestion finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    after_crash = watcher.count_events()
    assert acknowledged <= after_crash < total  # every committed batch survived
    watcher.close()

    rerun = _ingest(events, store_url, snapshot_file)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr.decode()

    store = SqlStore.open(store_url)
    try:
        assert store.count_events() == total
        crashed = _counters(store)
        states = {r.account: r.state for r in store.iter_accounts()}
        assert store.verify_audit().ok
    finally:
        store.close()

    # The same file ingested once, without a crash, counts exactly the same evidence.
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    clean = _ingest(events, clean_url, snapshot_file)
    _, stderr = clean.communicate(timeout=300)
    assert clean.returncode == 0, stderr.decode()
    reference = SqlStore.open(clean_url)
    try:
        assert _counters(reference) == crashed
        assert {r.account: r.state for r in reference.iter_accounts()} == states
    finally:
        reference.close()
