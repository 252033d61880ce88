"""``geogate serve --workers 2``: two processes share the HTTP port (one pre-forked socket)
and the gRPC port (SO_REUSEPORT), share the snapshot's memory, count metrics together and
reload together on SIGHUP."""

from __future__ import annotations

import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
from tests.service.conftest import Addresses
from tests.service.support import Geogate, geogate_argv, start_geogate, wait_until

from geogate.service import envoy_proto as pb


def children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return {int(x) for x in out.split()}


def memory(pid: int) -> dict[str, int]:
    """kB figures of /proc/PID/smaps_rollup (Rss, Pss, Private_Dirty ...)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"(?m)^(\w+):\s+(\d+) kB", text)}


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def decide_many_times(server: Geogate, ip: str, n: int) -> list[str]:
    def one(_: int) -> str:
        # A fresh connection each time, so both workers accept some.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = client.post("/v1/decide", json={"ip": ip})
            assert response.status_code == 200, response.text
            return str(response.json()["action"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_two_workers_share_port_memory_metrics_and_reloads(
    tmp_path: Path, addresses: Addresses
) -> None:
    # A loaded test machine must not make the overload guard refuse the checks below.
    server = start_geogate(
        tmp_path,
        "--trusted-proxy",
        "127.0.0.1",
        grpc=True,
        workers=2,
        env={"GEOGATE_MAX_QUEUE_DELAY_MS": "5000"},
    )
    try:
        master = server.process.proc.pid
        workers = children(master)
        assert len(workers) == 2
        assert "with 2 workers" in server.process.output()

        assert set(decide_many_times(server, addresses.cn4, 60)) == {"deny"}
        assert set(decide_many_times(server, addresses.us4, 60)) == {"allow"}

        # Counters add up over the workers, whichever worker answers the scrape.
        def counted() -> bool:
            text = server.get("/metrics").text
            lookups = metric(text, "geogate_decision_cache_lookups_total")
            return metric(text, "geogate_decisions_total{") == 120 and lookups == 120

        wait_until(counted, timeout=10, what="metrics of both workers to add up")
        for _ in range(6):
            text = server.get("/metrics").text
            assert metric(text, "geogate_decisions_total{") == 120
            assert metric(text, "geogate_decision_cache_hits_total") >= 110

        # The snapshot is shared copy-on-write: each worker's own memory is a small part of
        # what it maps (the policy, the snapshot arrays and the code come from the parent).
        for pid in workers:
            kb = memory(pid)
            private = kb["Private_Clean"] + kb["Private_Dirty"]
            assert private < 0.4 * kb["Rss"], (pid, kb)

        # gRPC ext_authz on the shared port.
        assert server.grpc_port is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        check = channel.unary_unary(
            pb.CHECK_METHOD,
            request_serializer=pb.CheckRequest.SerializeToString,
            response_deserializer=pb.CheckResponse.FromString,
        )
        message = pb.CheckRequest()
        message.attributes.source.address.socket_address.address = "127.0.0.1"
        message.attributes.request.http.headers["x-forwarded-for"] = addresses.cn4
        assert check(message, timeout=5).status.code == 7  # PERMISSION_DENIED

        # SIGHUP: the supervisor loads once and replaces both workers.
        server.process.signal(signal.SIGHUP)
        wait_until(
            lambda: children(master).isdisjoint(workers) and len(children(master)) == 2,
            timeout=20,
            what="both workers to be replaced",
        )
        # The old workers sent GOAWAY and closed: the channel opened before the reload
        # reconnects to the new workers by itself (as Envoy's does).
        with channel:
            assert check(message, timeout=5, wait_for_ready=True).status.code == 7
        for _ in range(6):
            assert server.get("/readyz").json()["generation"] == 2
        assert "reloaded (SIGHUP): generation 2" in server.process.output()
        # Counters of the replaced workers are kept (120 HTTP decisions and the gRPC two).
        assert metric(server.get("/metrics").text, "geogate_decisions_total{") == 122
    finally:
        server.process.stop()
    assert server.process.proc.returncode in (0, -signal.SIGTERM)
    assert not children(master)
    assert "Traceback" not in server.process.output()


def test_bad_worker_count_is_one_line_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*geogate_argv("serve", "--check"), "--workers", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "geogate: error: command line:workers: expected a number of processes 0-512 "
        "(0: one per core), got -3"
    ]
