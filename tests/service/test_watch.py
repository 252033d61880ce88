"""``geogate serve --watch SECONDS``: a changed policy or snapshot file is reloaded as on
SIGHUP, by the single serving process and by the supervisor of several workers; a bad new
file fails the reload in one log line and the service keeps deciding with the data it had."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from tests.service.support import (
    Geogate,
    geogate_argv,
    start_geogate,
    tiny_snapshot,
    wait_until,
)
from tests.service.test_app import DENY_CN, DENY_RU

from geogate.service.watch import FileWatch, watched_files

IP = "81.2.69.10"


def children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return {int(x) for x in out.split()}


def decision(server: Geogate) -> tuple[str, str | None, str]:
    response = server.post("/v1/decide", json={"ip": IP})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["action"], body["region"], body["policy"]


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over ``path`` (how deploy tools do it)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.mark.parametrize("workers", [1, 2])
def test_changed_files_reload_and_bad_ones_keep_the_running_data(
    tmp_path: Path, workers: int
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    snap = tiny_snapshot(tmp_path / "data.snapshot", {"81.2.69.0-81.2.69.255": "CN"})
    ru = tiny_snapshot(tmp_path / "ru.build", {"81.2.69.0-81.2.69.255": "RU"}).read_bytes()
    server = start_geogate(
        tmp_path,
        "--policy",
        str(policy),
        "--snapshot",
        str(snap),
        "--watch",
        "0.2",
        workers=workers,
        # A loaded test machine must not make the overload guard refuse the checks below.
        env={"GEOGATE_MAX_QUEUE_DELAY_MS": "5000"},
    )
    try:
        main = server.process.proc.pid
        first_workers = children(main)
        assert decision(server) == ("deny", "CN", "test-deny@1")
        assert "watching" in server.process.output()

        # A broken policy: the reload fails in one line; the same workers keep deciding.
        policy.write_text("[policy]\nmode = 'sideways'\n", encoding="utf-8")
        wait_until(
            lambda: "reload (file watch: policy.toml changed) failed" in server.process.output(),
            timeout=15,
            what="the failed reload to be logged",
        )
        assert decision(server) == ("deny", "CN", "test-deny@1")
        assert server.get("/readyz").json()["generation"] == 1
        assert children(main) == first_workers
        failure_lines = [
            line for line in server.process.output().splitlines() if "failed, keeping" in line
        ]
        assert len(failure_lines) == 1, failure_lines

        # A good policy and a new snapshot (renamed into place): reloaded, no restart.
        policy.write_text(DENY_RU, encoding="utf-8")
        replace_file(snap, ru)
        wait_until(
            lambda: decision(server) == ("deny", "RU", "test-deny-ru@1"),
            timeout=15,
            what="the watch to reload the new policy and snapshot",
        )
        generation = server.get("/readyz").json()["generation"]
        assert generation >= 2
        if workers > 1:  # the old workers finish their requests and exit
            wait_until(
                lambda: children(main).isdisjoint(first_workers) and len(children(main)) == 2,
                timeout=20,
                what="the workers to be replaced",
            )

        # A truncated snapshot: refused, the RU data stays in service.
        replace_file(snap, ru[: len(ru) // 2])
        wait_until(
            lambda: "reload (file watch: data.snapshot changed) failed" in server.process.output(),
            timeout=15,
            what="the corrupt snapshot to be refused",
        )
        assert decision(server) == ("deny", "RU", "test-deny-ru@1")
        assert server.get("/readyz").json()["generation"] == generation
        server.process.check_alive()
        assert server.process.proc.pid == main
    finally:
        server.process.stop()
    assert server.process.proc.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in server.process.output()


def test_a_change_is_acted_on_once_it_is_stable(tmp_path: Path) -> None:
    """A file still changing is looked at again; a stable change is reported once, and the
    same version is not reported again (a bad file is not retried until it changes)."""
    policy = tmp_path / "p.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    watch = FileWatch(watched_files([str(policy), "builtin:x"], None), 0.1)
    assert watch.files == (policy.resolve(),)
    assert watch.poll() == ()
    policy.write_text(DENY_RU, encoding="utf-8")
    assert watch.poll() == ()  # just changed: wait one more poll
    policy.write_text(DENY_RU + "\n", encoding="utf-8")
    assert watch.poll() == ()  # changed again meanwhile
    assert watch.poll() == ("p.toml",)
    assert watch.poll() == ()
    policy.unlink()
    assert watch.poll() == ()
    assert watch.poll() == ("p.toml",)  # a file that disappears is a change too


def test_nothing_to_watch_with_builtin_policy_and_embedded_data() -> None:
    assert watched_files(["builtin:unsupported-regions"], None) == ()
    assert watched_files(["builtin:unsupported-regions"], "embedded") == ()


def test_bad_watch_interval_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*geogate_argv("serve", "--check"), "--watch", "0.01"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "geogate: error: command line:watch_seconds: must be 0 (off) or at least 0.1 seconds"
    ]
