"""The shared decision path (:func:`enforce`) and atomic reload (:class:`EngineRef`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.service.conftest import Addresses
from tests.service.test_app import DENY_CN, DENY_RU

from geogate.client_ip import TrustedProxies
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.service.engine import Engine, EngineRef, build_engine, enforce

TRUSTED = TrustedProxies.parse(["127.0.0.1/32", "10.0.0.0/8"])
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300
) | st.lists(
    st.sampled_from(["1.2.3.4", "::1", "10.0.0.1", "unknown", "[::1]:80", ","]), max_size=40
).map(", ".join)


def engine_for_spec(snapshot: Snapshot, spec: str) -> Engine:
    return build_engine(load_policy_set([resolve_policy_path(spec)]), snapshot, trusted=TRUSTED)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(xff=header_text, forwarded=header_text, which=st.integers(0, 3))
def test_headers_from_an_untrusted_peer_never_change_the_verdict(
    embedded: Snapshot, addresses: Addresses, xff: str, forwarded: str, which: int
) -> None:
    engine = engine_for_spec(embedded, "builtin:unsupported-regions")
    peer = (addresses.cn4, addresses.us4, addresses.cn6, addresses.de4)[which]
    bare = enforce(engine, peer=peer)
    with_headers = enforce(engine, peer=peer, x_forwarded_for=xff, forwarded=forwarded)
    assert with_headers == bare


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(xff=header_text)
def test_any_chain_from_a_trusted_peer_gives_a_verdict_never_an_exception(
    embedded: Snapshot, xff: str
) -> None:
    engine = engine_for_spec(embedded, "builtin:unsupported-regions")
    verdict = enforce(engine, peer="10.0.0.1", x_forwarded_for=xff)
    assert verdict.status in (200, 400, 403)
    assert (verdict.status == 400) == (verdict.client_ip is None)
    if verdict.status == 400:
        assert verdict.problem


def test_reload_is_atomic_for_requests_in_flight(
    tmp_path: Path, embedded: Snapshot, addresses: Addresses
) -> None:
    """Threads decide while another thread keeps swapping between two engines whose policies
    deny different countries. Every verdict is consistent with the policy it names: no request
    ever sees the policy of one engine with the outcome of the other."""
    deny_cn, deny_ru = tmp_path / "cn.toml", tmp_path / "ru.toml"
    deny_cn.write_text(DENY_CN, encoding="utf-8")
    deny_ru.write_text(DENY_RU, encoding="utf-8")
    engines = [engine_for_spec(embedded, str(deny_cn)), engine_for_spec(embedded, str(deny_ru))]
    ref = EngineRef(engines[0])
    stop = threading.Event()
    problems: list[str] = []
    counts = {"test-deny@1": 0, "test-deny-ru@1": 0}

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            ref.swap(engines[i % 2])

    def worker() -> None:
        while not stop.is_set():
            for ip, country in ((addresses.cn4, "CN"), (addresses.ru4, "RU")):
                verdict = enforce(ref.current, peer=ip)
                policy = verdict.decision.policy
                counts[policy] += 1
                denied_country = "CN" if policy == "test-deny@1" else "RU"
                if verdict.decision.is_denied != (country == denied_country):
                    problems.append(f"{policy} gave {verdict.decision.action} for {country}")

    threads = [threading.Thread(target=swapper)] + [
        threading.Thread(target=worker) for _ in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert problems == []
    assert min(counts.values()) > 100  # both engines really served requests


def test_requests_keep_being_served_while_a_reload_loads(
    embedded: Snapshot, addresses: Addresses
) -> None:
    old = engine_for_spec(embedded, "builtin:unsupported-regions")
    new = engine_for_spec(embedded, "builtin:supported-countries")
    loading = threading.Event()

    def slow_loader(previous: Engine) -> Engine:
        loading.set()
        time.sleep(0.5)
        return new

    ref = EngineRef(old, loader=slow_loader)
    reloader = threading.Thread(target=ref.reload)
    reloader.start()
    loading.wait(5)
    started = time.perf_counter()
    verdict = enforce(ref.current, peer=addresses.cn4)
    assert time.perf_counter() - started < 0.1  # not blocked behind the reload
    assert verdict.decision.policy == old.policy_label
    reloader.join()
    assert ref.current is new
