"""The compiled cold path (``geogate._fastpath``) against the pure-Python one.

``make install`` builds the optional C extension (setup.py: Cython, ``optional=True``), and CI
runs ``make install`` on a machine with a C compiler, so these tests require the extension and
FAIL when it is missing — a silent fallback to Python at install would otherwise go unnoticed.
An install without a compiler still works (the extension is optional); only this file needs it.

Every test runs two deciders side by side, one compiled (``accelerated=True``) and one pure
(``accelerated=False``), over the same inputs, and holds them to the same decisions, errors,
counters and cache contents: random IPv4 and IPv6 addresses, range starts and their
neighbours, the IPv6 forms that carry an IPv4 address, malformed text, exempt accounts and
networks, two policy segments, and caches small enough to rotate every few decisions.
"""

from __future__ import annotations

import gc
import importlib
import socket
import sys
import threading
import weakref
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import TableLookup

from geogate.decide import RANGE_ENTRY_BYTES, Decider, Decision, RequestContext, decide
from geogate.errors import ClientIPError, ConfigError
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, parse_policy, resolve_policy_path

BEFORE = datetime(2024, 7, 1, tzinfo=UTC)  # the builtin policy's two segments
AFTER = datetime(2024, 7, 10, tzinfo=UTC)

ACCOUNTS_ONLY = """
[policy]
id = "accounts-only"
version = "1"
mode = "deny-list"
effective = 2024-07-01T00:00:00Z

[exemptions]
accounts = ["vip"]

[[rules]]
id = "cn"
regions = ["CN", "US"]
"""

WITH_NETWORKS = ACCOUNTS_ONLY.replace(
    'accounts = ["vip"]', 'accounts = ["vip"]\nnetworks = ["1.0.0.0/8", "2a00::/12", "2002::/16"]'
)


@cache
def _snap() -> Snapshot:
    return Snapshot.embedded()


@cache
def _policies(name: str) -> PolicySet:
    if name == "builtin":
        return load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    text = ACCOUNTS_ONLY if name == "accounts" else WITH_NETWORKS
    return PolicySet.of([parse_policy(text, path=f"{name}.toml")])


def _pair(name: str = "builtin", **options: Any) -> tuple[Decider, Decider]:
    """A compiled and a pure decider over the same policy and snapshot."""
    fast = Decider(_policies(name), _snap(), accelerated=True, **options)
    pure = Decider(_policies(name), _snap(), accelerated=False, **options)
    assert fast.accelerated
    assert not pure.accelerated
    return fast, pure


def _v4(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))


def _v6(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def _outcome(decider: Decider, ip: Any, **kw: Any) -> tuple[Any, ...]:
    try:
        decision = decider.decide(ip, **kw)
    except ClientIPError as exc:
        return ("error", str(exc), exc.value)
    return ("decision", decision)


def _state(decider: Decider) -> tuple[Any, ...]:
    """Counters and the exact contents and order of every cache generation."""
    views = {
        segment: (
            list(view.addresses.young),
            list(view.addresses.old),
            list(view.ranges.young),
            list(view.ranges.old),
            view.addresses.evictions,
            view.ranges.evictions,
        )
        for segment, view in decider._views.items()
    }
    return decider.cache_stats(), views


def _assert_same(fast: Decider, pure: Decider, ip: Any, **kw: Any) -> None:
    a, b = _outcome(fast, ip, **kw), _outcome(pure, ip, **kw)
    assert a[0] == b[0], (ip, a, b)
    if a[0] == "error":
        assert a == b
    else:
        x, y = a[1], b[1]
        assert type(x) is type(y)
        assert x == y
        assert (x.action, x.reasons, x.region, x.path) == (y.action, y.reasons, y.region, y.path)
        assert x.facts == y.facts
    assert _state(fast) == _state(pure)


# ---- address strategies --------------------------------------------------------------------

_V4_INT = st.integers(min_value=0, max_value=2**32 - 1)


def _embedded(form: str, v4: int, noise: int) -> int:
    """An IPv6 address of one of the forms that carry an IPv4 address (see embedded_ipv4)."""
    return {
        "mapped": 0xFFFF << 32 | v4,
        "compatible": v4,
        "translated": 0xFFFF_0000 << 32 | v4,
        "6to4": 0x2002 << 112 | v4 << 80 | noise & (2**80 - 1),
        "teredo": 0x2001_0000 << 96 | (noise & (2**64 - 1)) << 32 | (~v4 & 0xFFFF_FFFF),
        "nat64": 0x0064_FF9B << 96 | v4,
        "nat64-other": 0x0064_FF9B << 96 | noise & (2**96 - 1),
        "nat64-local": 0x0064_FF9B_0001 << 80 | noise & (2**80 - 1),
        "low-::/16": noise & (2**112 - 1),
    }[form]


def _at_range_start(i: int, delta: int) -> str:
    snap = _snap()
    if i % 2:
        starts = snap.v4_starts
        return _v4(max(0, min(2**32 - 1, int(starts[i % len(starts)]) + delta)))
    his, los = snap.v6_starts
    k = i % len(his)
    return _v6(max(0, min(2**128 - 1, (int(his[k]) << 64 | int(los[k])) + delta)))


MALFORMED = [
    "",
    " 1.2.3.4",
    "1.2.3.4 ",
    "01.2.3.4",
    "1.2.3.4\x00",
    "1.2.3.4\x00junk",
    "1.2.3",
    "256.1.1.1",
    "1.2.3.4/24",
    "::1%eth0",
    "fe80::1%1",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:1.2.3.04",
    "١.٢.٣.٤",  # Arabic-Indic digits
    "1.2.3.4\ud800",
    "x" * 100,
    "2001:db8::" + "0" * 60,
    ":",
    "::::",
]

ADDRESSES = st.one_of(
    _V4_INT.map(_v4),
    st.integers(min_value=0, max_value=2**128 - 1).map(_v6),
    st.integers(min_value=0x2000 << 112, max_value=(0x2C10 << 112) - 1).map(_v6),
    st.builds(
        lambda form, v4, noise: _v6(_embedded(form, v4, noise)),
        st.sampled_from(
            [
                "mapped",
                "compatible",
                "translated",
                "6to4",
                "teredo",
                "nat64",
                "nat64-other",
                "nat64-local",
                "low-::/16",
            ]
        ),
        _V4_INT,
        st.integers(min_value=0, max_value=2**112 - 1),
    ),
    st.builds(_at_range_start, st.integers(min_value=0, max_value=10**7), st.integers(-2, 2)),
    st.builds(lambda v4: "::FFFF:" + _v4(v4), _V4_INT),  # upper case, written by hand
    st.builds(lambda v4: "0:0:0:0:0:ffff:" + _v4(v4), _V4_INT),
    st.sampled_from(MALFORMED),
    st.text(max_size=50),
    st.text(alphabet="0123456789abcdefABCDEF.:%", max_size=45),
)


# ---- the tests -----------------------------------------------------------------------------


def test_the_extension_is_built_and_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails (never skips) when ``make install`` did not build geogate._fastpath, or built
    it from another version of its source than geogate.decide expects."""
    module = importlib.import_module("geogate._fastpath")
    assert hasattr(module, "ColdPath")
    monkeypatch.delenv("GEOGATE_PURE_PYTHON", raising=False)
    assert Decider(_policies("builtin"), _snap()).accelerated


@pytest.mark.parametrize(("value", "accelerated"), [("1", False), ("yes", False), ("0", True)])
def test_geogate_pure_python_selects_the_python_path(
    monkeypatch: pytest.MonkeyPatch, value: str, accelerated: bool
) -> None:
    monkeypatch.setenv("GEOGATE_PURE_PYTHON", value)
    assert Decider(_policies("builtin"), _snap()).accelerated is accelerated
    # an explicit argument wins over the environment
    assert Decider(_policies("builtin"), _snap(), accelerated=True).accelerated
    assert not Decider(_policies("builtin"), _snap(), accelerated=False).accelerated


def test_the_compiled_path_needs_a_snapshot() -> None:
    """Other IntelLookup implementations take the Python path; asking for the compiled one
    with them is a configuration error, not a silent fallback."""
    assert not Decider(_policies("builtin"), TableLookup()).accelerated  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a Snapshot"):
        Decider(_policies("builtin"), TableLookup(), accelerated=True)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(ADDRESSES, min_size=1, max_size=20))
def test_compiled_and_pure_paths_decide_alike(ips: list[str]) -> None:
    """The same decisions (evidence included), the same errors for malformed text, the same
    counters and cache contents, address after address; and the compiled search gives
    Snapshot.locate's key, or hands the address to Python (malformed text, embedded IPv4
    other than the mapped form)."""
    fast, pure = _pair()
    snap = _snap()
    for ip in ips:
        _assert_same(fast, pure, ip, at=AFTER)
        key = fast._cold.locate(ip)
        try:
            expected = snap.locate(ip)
        except ClientIPError:
            assert key == -1
            continue
        if key == -1:
            raw = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
            top32 = raw >> 96
            assert top32 >> 16 in (0, 0x2002) or top32 in (0x2001_0000, 0x0064_FF9B)
            assert raw >> 32 != 0xFFFF  # the mapped form is located in C
        else:
            assert key == expected


@pytest.mark.parametrize("policy", ["builtin", "accounts", "networks"])
@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=59),
            st.booleans(),
            st.sampled_from([None, "vip", "someone"]),
        ),
        max_size=150,
    )
)
def test_caches_rotate_and_promote_alike(
    policy: str, steps: list[tuple[int, bool, str | None]]
) -> None:
    """Caches of 12 addresses and 2 ranges per generation, a pool of 60 addresses in 20
    ranges (three per range, some IPv6, some tunnelled), two policy segments, exempt
    accounts and (policy "networks") exempt networks: after every step the two paths hold
    the same entries in the same order, and count the same hits, range hits and misses."""
    fast, pure = _pair(policy, cache_bytes=4 * RANGE_ENTRY_BYTES * 2)
    pool = _pool()
    for index, later, account in steps:
        _assert_same(fast, pure, pool[index], at=AFTER if later else BEFORE, account=account)


@cache
def _pool() -> list[str]:
    snap = _snap()
    rng = np.random.default_rng(7)
    out: list[str] = []
    for key in rng.choice(snap.n4, 14, replace=False):
        first, _ = snap.network_of(int(key))
        base = int.from_bytes(socket.inet_aton(first), "big")
        out += [_v4(base), _v4(base + 1), _v6(0xFFFF << 32 | base)]  # the mapped form too
    for key in rng.choice(np.arange(snap.n4, len(snap)), 4, replace=False):
        first, _ = snap.network_of(int(key))
        base = int.from_bytes(socket.inet_pton(socket.AF_INET6, first), "big")
        out += [_v6(base), _v6(base + 1), _v6(base + 2)]
    v4 = int.from_bytes(socket.inet_aton("59.224.0.1"), "big")  # CN: a teredo and a 6to4
    out += [_v6(_embedded("teredo", v4, 5)), _v6(_embedded("6to4", v4, 9)), "1.0.0.1"]
    out += [_v6(_embedded("6to4", v4, 10)), "not an address", "2a00:1450:4001::1"]
    return out[:60]


def test_first_decisions_without_prepare_equal_the_pure_rule() -> None:
    """Without ``prepare`` the compiled path asks Python for each new verdict, reads the
    columns until 256 misses, then the packed column the decider builds: every decision
    equals the reference one, and the misses are counted once."""
    fast, _ = _pair()
    snap = _snap()
    rng = np.random.default_rng(3)
    located = np.flatnonzero(snap.country_idx != 0)
    keys = rng.choice(located, 600, replace=False)
    ips = [snap.network_of(int(k))[0] for k in keys]
    for ip in ips:
        reference = decide(_policies("builtin"), snap, RequestContext(ip=ip), at=AFTER)
        assert fast.decide(ip, at=AFTER) == reference
    assert fast._combos is not None
    assert fast.cache_stats().misses == len(set(keys.tolist()))


def test_compiled_decisions_stay_out_of_the_cycle_collector() -> None:
    """A first decision made in C is not tracked by the cyclic collector (it refers to its
    verdict, key and evidence only, so it cannot be part of a cycle): hundreds of thousands
    of cached decisions are not walked by every collection. It still reads and pickles as a
    plain Decision."""
    fast, pure = _pair()
    decision = fast.decide("8.8.8.8", at=AFTER)
    assert not gc.is_tracked(decision)
    assert decision == pure.decide("8.8.8.8", at=AFTER)
    assert isinstance(decision, Decision)
    assert decision.facts.country == "US"


def test_a_dropped_decider_is_freed_without_the_cycle_collector() -> None:
    """The compiled path keeps no reference to its Decider (the Decider is passed in), so a
    replaced Decider and its caches are freed by reference counting alone, as before: the
    service freezes its heap out of the cycle collector."""
    for accelerated in (True, False):
        decider = Decider(_policies("builtin"), _snap(), accelerated=accelerated)
        for ip in ("8.8.8.8", "2a00:1450:4001::1", "::ffff:1.1.1.1", "2002:3be0:1::1"):
            decider.decide(ip, at=AFTER)
        ref = weakref.ref(decider)
        gc.disable()
        try:
            del decider
            assert ref() is None, accelerated
        finally:
            gc.enable()


def test_threads_sharing_a_compiled_decider_get_the_pure_answers() -> None:
    """Four threads decide through one compiled decider with caches small enough to rotate
    while they run, each switching between the two policy segments at every address (the
    compiled path rebinds its segment view); every answer equals the pure decider's."""
    fast, pure = _pair(cache_bytes=4 * RANGE_ENTRY_BYTES * 50)
    snap = _snap()
    rng = np.random.default_rng(9)
    ips = [_v4(int(x)) for x in rng.integers(0, 2**32, 1500)] + [
        snap.network_of(int(k))[0] for k in rng.integers(snap.n4, len(snap), 500)
    ]
    expected = {(ip, at): pure.decide(ip, at=at) for ip in ips for at in (BEFORE, AFTER)}
    failures: list[str] = []

    def run(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(ips))
        for n, i in enumerate(order):
            ip, at = ips[int(i)], (BEFORE, AFTER)[(n + seed) % 2]
            if fast.decide(ip, at=at) != expected[ip, at]:
                failures.append(ip)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert fast.cache_stats().lookups == 4 * len(ips)
