"""Judge a batch of log rows: client address by the trusted-proxy walk, then the decision.

Both steps work on the *distinct* values of a batch: the walk runs once per distinct
(peer, X-Forwarded-For, Forwarded) triple that reaches a trusted proxy — with
:func:`geogate.client_ip.resolve_client_ip`, the very code of the service — and
:meth:`geogate.decide.Decider.decide_many` once per distinct client address (IPv4 addresses
parsed vectorised into ``uint32``). Rows then gather their results by dictionary index, so a
log whose clients repeat costs a few array operations per row.

The Spark engine builds the same :class:`Judge` on each executor (from the shipped policy and
snapshot files) and applies :meth:`Judge.judge` to each Arrow batch inside ``mapInArrow``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from geogate.client_ip import TrustedProxies, parse_ip, resolve_client_ip
from geogate.decide import INVALID, REASON_BITS, Decider, Reason
from geogate.errors import ClientIPError
from geogate.intel.facts import NetworkFlag
from geogate.policy.model import Action, PolicySet

KINDS: Final = (
    "unflagged",
    "hosting",
    "vpn",
    "proxy",
    "tor",
    "relay",
    "invalid",
    "residential_proxy",
    "anonymous",
)
"""Network kind of a request, one per row: the strongest flag of its network (Tor, VPN,
residential proxy, proxy, anonymous, hosting, relay in that order), ``unflagged`` for none,
``invalid`` for no address."""
ANONYMIZING: Final = frozenset({"tor", "vpn", "proxy", "residential_proxy", "anonymous"})
"""Kinds whose exit says nothing about where the user is (as in the account engine)."""
EGRESS_KINDS: Final = frozenset({"hosting", *ANONYMIZING})
"""Kinds whose networks are tracked as egress networks (accounts behind them)."""
ACTIONS: Final = ("allow", "warn", "deny", "invalid")
CHANGES: Final = ("same", "newly_denied", "released", "newly_warned", "warning_lifted", "other")

_KIND_CODE = {name: i for i, name in enumerate(KINDS)}
_PRIORITY = [
    (flag, _KIND_CODE[name])
    for name in ("tor", "vpn", "residential_proxy", "proxy", "anonymous", "hosting", "relay")
    if (flag := getattr(NetworkFlag, name.upper(), None)) is not None
]
_KIND_OF_FLAGS = np.zeros(256, np.int8)
for _v in range(256):
    for _flag, _kind in _PRIORITY:
        if _v & int(_flag):
            _KIND_OF_FLAGS[_v] = _kind
            break
_ANONYMIZING_CODE = np.zeros(len(KINDS), bool)
_ANONYMIZING_CODE[[_KIND_CODE[k] for k in ANONYMIZING]] = True
_EGRESS_CODE = np.zeros(len(KINDS), bool)
_EGRESS_CODE[[_KIND_CODE[k] for k in EGRESS_KINDS]] = True
_INVALID_KIND = _KIND_CODE["invalid"]
_HOSTING_KIND = _KIND_CODE["hosting"]
_ACTION_INDEX = np.full(256, 3, np.int8)
_ACTION_INDEX[int(Action.ALLOW)] = 0
_ACTION_INDEX[int(Action.WARN)] = 1
_ACTION_INDEX[int(Action.DENY)] = 2
_V4_TEXT = r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
_UNSUPPORTED_BIT = REASON_BITS[Reason.REGION_UNSUPPORTED]
_INVALID_BIT = REASON_BITS[Reason.INVALID_ADDRESS]

JUDGED_FIELDS: Final = (
    "ts",
    "day",
    "phase",
    "account",
    "org",
    "client",
    "user_agent",
    "accept_language",
    "region",
    "kind",
    "action",
    "reasons",
    "egress",
    "asn",
    "anonymized",
    "hosting",
    "unsupported",
    "denied",
    "warned",
)
COMPARE_FIELDS: Final = ("region_b", "action_b", "reasons_b", "change")


def reason_names(mask: int) -> str:
    """A reason bit mask as comma-separated reason codes, in declaration order."""
    return ",".join(r.value for r, bit in REASON_BITS.items() if mask & bit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Policies and the instant to judge at (``at=None``: each request at its own time)."""

    policies: PolicySet
    at: datetime | None = None


def _dict(indices: npt.NDArray[Any], values: pa.Array) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), values)


def _as_dict(array: pa.Array) -> pa.DictionaryArray:
    if pa.types.is_dictionary(array.type):
        return array
    return pc.dictionary_encode(array)


class Judge:
    """Decides batches of :data:`geogate.scan.readers.RAW_SCHEMA` rows.

    ``pivot`` splits requests into phase ``before``/``after`` (the enforcement date the
    report compares around). With ``compare``, each row is also judged under the second
    scenario and gets ``action_b``/``reasons_b``/``region_b`` and a ``change`` class.
    """

    def __init__(
        self,
        snapshot: Any,
        scenario: Scenario,
        *,
        trusted: TrustedProxies = TrustedProxies(),  # noqa: B008 - immutable value
        pivot: datetime,
        compare: Scenario | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.scenario = scenario
        self.trusted = trusted
        self.pivot = pivot
        self.compare = compare
        self._deciders: dict[int, Decider] = {}

    def _decider(self, scenario: Scenario) -> Decider:
        d = self._deciders.get(id(scenario))
        if d is None:
            d = Decider(scenario.policies, self.snapshot, trusted=self.trusted)
            self._deciders[id(scenario)] = d
        return d

    # ----- client addresses -------------------------------------------------------------

    def resolve_clients(self, batch: pa.RecordBatch) -> pa.Array:
        """The client address of each row (null when the walk finds none valid)."""
        peer = batch.column("peer")
        if not self.trusted:
            return peer
        pd = _as_dict(peer)
        uniq = pd.dictionary.to_pylist()
        is_trusted = np.zeros(len(uniq), bool)
        for i, text in enumerate(uniq):
            try:
                is_trusted[i] = parse_ip(text) in self.trusted
            except ClientIPError:
                is_trusted[i] = False
        rows_trusted = is_trusted[pd.indices.to_numpy(zero_copy_only=False)]
        if not rows_trusted.any():
            return peer
        xff = batch.column("xff")
        fwd = batch.column("forwarded")
        has_header = pc.or_(pc.is_valid(xff), pc.is_valid(fwd)).to_numpy(zero_copy_only=False)
        walk = np.nonzero(rows_trusted & has_header)[0]
        if not len(walk):
            return peer
        clients = pc.cast(peer, pa.string()).to_numpy(zero_copy_only=False).copy()
        sel = pa.array(walk)
        memo: dict[tuple[str, str | None, str | None], str | None] = {}
        for i, p, x, f in zip(
            walk.tolist(),
            pc.take(pc.cast(peer, pa.string()), sel).to_pylist(),
            pc.take(xff, sel).to_pylist(),
            pc.take(fwd, sel).to_pylist(),
            strict=True,
        ):
            k = (p, x, f)
            if k in memo:
                clients[i] = memo[k]
                continue
            try:
                ip: str | None = str(
                    resolve_client_ip(p, x_forwarded_for=x, forwarded=f, trusted=self.trusted).ip
                )
            except ClientIPError:
                ip = None
            memo[k] = ip
            clients[i] = ip
        return pa.array(clients, pa.string())

    # ----- decisions ----------------------------------------------------------------------

    @staticmethod
    def _parse_uniques(uniq: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
        """Positions of the plain IPv4 addresses among ``uniq`` and their values (vectorised:
        the text is validated by a regular expression, then split into octets)."""
        if len(uniq) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.uint32)
        is_v4 = pc.fill_null(pc.match_substring_regex(uniq, _V4_TEXT), False)
        v4_pos = np.nonzero(is_v4.to_numpy(zero_copy_only=False))[0]
        if not len(v4_pos):
            return v4_pos, np.zeros(0, np.uint32)
        v4 = pc.take(uniq, pa.array(v4_pos))
        parts = pc.list_flatten(pc.split_pattern(v4, "."))
        octets = pc.cast(parts, pa.uint32()).to_numpy().reshape(-1, 4)
        ints = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        return v4_pos, ints.astype(np.uint32)

    def _decide_uniques(
        self,
        decider: Decider,
        uniq: pa.Array,
        parsed: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]],
        at: datetime,
    ) -> tuple[npt.NDArray[Any], ...]:
        """actions, reasons, regions, keys for each distinct address."""
        n = len(uniq)
        actions = np.full(n, INVALID, np.uint8)
        reasons = np.full(n, _INVALID_BIT, np.uint32)
        regions = np.zeros(n, np.uint16)
        keys = np.full(n, -1, np.int64)
        if n == 0:
            return actions, reasons, regions, keys
        v4_pos, ints = parsed
        if len(v4_pos):
            b = decider.decide_many(ints, at=at)
            actions[v4_pos], reasons[v4_pos] = b.actions, b.reasons
            regions[v4_pos], keys[v4_pos] = b.regions, b.keys
        if len(v4_pos) < n:
            other = np.ones(n, bool)
            other[v4_pos] = False
            other_pos = np.nonzero(other)[0]
            texts = pc.take(uniq, pa.array(other_pos)).to_pylist()
            b = decider.decide_many([t if t is not None else "" for t in texts], at=at)
            actions[other_pos], reasons[other_pos] = b.actions, b.reasons
            regions[other_pos], keys[other_pos] = b.regions, b.keys
        return actions, reasons, regions, keys

    def _decide_rows(
        self,
        scenario: Scenario,
        clients: pa.DictionaryArray,
        ts_us: npt.NDArray[np.int64],
        accounts: pa.Array,
        parsed: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]],
    ) -> tuple[npt.NDArray[Any], ...]:
        """Per-row actions, reasons, regions and keys under ``scenario``."""
        decider = self._decider(scenario)
        uniq = clients.dictionary
        idx = clients.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        n = len(idx)
        actions = np.full(n, INVALID, np.uint8)
        reasons = np.full(n, _INVALID_BIT, np.uint32)
        regions = np.zeros(n, np.uint16)
        keys = np.full(n, -1, np.int64)
        if scenario.at is not None:
            segments = [(scenario.at, np.ones(n, bool))]
        else:
            bounds = np.array(
                [int(b.timestamp() * 1_000_000) for b in scenario.policies.boundaries], np.int64
            )
            seg = np.searchsorted(bounds, ts_us, side="right")
            segments = []
            for s in np.unique(seg).tolist():
                rows = seg == s
                first = int(ts_us[np.argmax(rows)])
                segments.append((datetime.fromtimestamp(first / 1_000_000, UTC), rows))
        valid = idx >= 0
        safe = np.where(valid, idx, 0)
        for at, rows in segments:
            a, r, g, k = self._decide_uniques(decider, uniq, parsed, at)
            take = rows & valid
            actions[take] = a[safe[take]]
            reasons[take] = r[safe[take]]
            regions[take] = g[safe[take]]
            keys[take] = k[safe[take]]
            self._exempt_accounts(decider, at, take, clients, accounts, actions, reasons)
        return actions, reasons, regions, keys

    def _exempt_accounts(
        self,
        decider: Decider,
        at: datetime,
        rows: npt.NDArray[np.bool_],
        clients: pa.DictionaryArray,
        accounts: pa.Array,
        actions: npt.NDArray[Any],
        reasons: npt.NDArray[Any],
    ) -> None:
        exempt = decider.policies.in_force(at).exemptions.accounts
        if not exempt:
            return
        hit = pc.fill_null(pc.is_in(accounts, value_set=pa.array(sorted(exempt))), False)
        pos = np.nonzero(hit.to_numpy(zero_copy_only=False) & rows)[0]
        if not len(pos):
            return
        sel = pa.array(pos)
        ips = pc.take(pc.cast(clients, pa.string()), sel).to_pylist()
        accts = pc.take(accounts, sel).to_pylist()
        b = decider.decide_many(ips, at=at, accounts=accts)
        actions[pos] = b.actions
        reasons[pos] = b.reasons

    # ----- the judged batch ------------------------------------------------------------------

    def judge(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The judged rows of ``batch``: the columns of :data:`JUDGED_FIELDS` (and
        :data:`COMPARE_FIELDS` with a comparison)."""
        snap = self.snapshot
        clients = _as_dict(self.resolve_clients(batch))
        ts = batch.column("ts")
        ts_us = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
        accounts = batch.column("account")
        parsed = self._parse_uniques(clients.dictionary)
        a_act, a_rsn, a_reg, keys = self._decide_rows(
            self.scenario, clients, ts_us, accounts, parsed
        )

        valid = keys >= 0
        safe = np.where(valid, keys, 0)
        flags = np.where(valid, snap.flags[safe], 0).astype(np.uint8)
        kind = np.where(valid, _KIND_OF_FLAGS[flags], _INVALID_KIND).astype(np.int8)
        asn = np.where(valid, snap.asn[safe], 0).astype(np.int64)
        anonymized = _ANONYMIZING_CODE[kind]
        unsupported = ((a_rsn & _UNSUPPORTED_BIT) != 0) & ~anonymized & valid

        region_values = pa.array(
            [c or "" for c in snap.country_codes] + [c or "" for c in snap.subdivision_codes[1:]],
            pa.string(),
        )
        cols: dict[str, pa.Array] = {
            "ts": ts,
            "day": pa.array((ts_us // 86_400_000_000).astype(np.int32), pa.int32()).cast(
                pa.date32()
            ),
            "phase": _dict(
                (ts_us >= int(self.pivot.timestamp() * 1_000_000)).astype(np.int8),
                pa.array(["before", "after"]),
            ),
            "account": batch.column("account"),
            "org": batch.column("org"),
            "client": clients,
            "user_agent": batch.column("user_agent"),
            "accept_language": batch.column("accept_language"),
            "region": _dict(a_reg, region_values),
            "kind": _dict(kind, pa.array(KINDS)),
            "action": _dict(_ACTION_INDEX[a_act], pa.array(ACTIONS)),
            "reasons": self._reason_dict(a_rsn),
            "egress": self._egress(clients, kind, parsed),
            "asn": pa.array(asn),
            "anonymized": pa.array(anonymized),
            "hosting": pa.array(kind == _HOSTING_KIND),
            "unsupported": pa.array(unsupported),
            "denied": pa.array(a_act == int(Action.DENY)),
            "warned": pa.array(a_act == int(Action.WARN)),
        }
        if self.compare is not None:
            b_act, b_rsn, b_reg, _ = self._decide_rows(
                self.compare, clients, ts_us, accounts, parsed
            )
            ai = _ACTION_INDEX[a_act]
            bi = _ACTION_INDEX[b_act]
            change = np.zeros(len(ai), np.int8)
            change[(bi == 2) & (ai != 2)] = 1
            change[(ai == 2) & (bi != 2)] = 2
            change[(bi == 1) & (ai == 0)] = 3
            change[(ai == 1) & (bi == 0)] = 4
            change[(ai != bi) & (change == 0)] = 5
            cols["region_b"] = _dict(b_reg, region_values)
            cols["action_b"] = _dict(bi, pa.array(ACTIONS))
            cols["reasons_b"] = self._reason_dict(b_rsn)
            cols["change"] = _dict(change, pa.array(CHANGES))
        return pa.RecordBatch.from_pydict(cols)

    @staticmethod
    def _reason_dict(mask: npt.NDArray[np.uint32]) -> pa.DictionaryArray:
        codes = pc.dictionary_encode(pa.array(mask, pa.uint32()))  # hashing: no sort
        names = pa.array([reason_names(int(v)) for v in codes.dictionary.to_pylist()], pa.string())
        return pa.DictionaryArray.from_arrays(codes.indices, names)

    @staticmethod
    def _egress(
        clients: pa.DictionaryArray,
        kind: npt.NDArray[np.int8],
        parsed: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]],
    ) -> pa.DictionaryArray:
        """The egress network of rows on tracked kinds: the client's /24 (IPv4) or /48
        (IPv6), as the account engine keys its egress evidence; empty otherwise."""
        idx = clients.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        tracked = _EGRESS_CODE[kind] & (idx >= 0)
        if not tracked.any():
            return _dict(np.zeros(len(idx), np.int32), pa.array([""], pa.string()))
        n = len(clients.dictionary)
        wanted = np.zeros(n, bool)
        wanted[np.unique(idx[tracked])] = True
        code = np.zeros(n + 1, np.int64)  # per distinct address (+1: null), 0 = no egress
        names = [""]
        v4_pos, ints = parsed
        is_v4 = np.zeros(n, bool)
        is_v4[v4_pos] = True
        sel = wanted[v4_pos]
        if sel.any():
            prefixes, inverse = np.unique(ints[sel] & np.uint32(0xFFFFFF00), return_inverse=True)
            names.extend(
                f"{p >> 24}.{(p >> 16) & 255}.{(p >> 8) & 255}.0/24" for p in prefixes.tolist()
            )
            code[v4_pos[sel] + 1] = inverse + 1
        rest = np.nonzero(wanted & ~is_v4)[0]
        if len(rest):
            texts = pc.take(clients.dictionary, pa.array(rest)).to_pylist()
            seen: dict[str, int] = {}
            for i, text in zip(rest.tolist(), texts, strict=True):
                try:
                    ip = parse_ip(text)
                except ClientIPError:
                    continue
                prefix = 24 if ip.version == 4 else 48
                net = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
                j = seen.get(net)
                if j is None:
                    j = seen[net] = len(names)
                    names.append(net)
                code[i + 1] = j
        row_code = np.where(tracked, code[idx + 1], 0)
        return _dict(row_code, pa.array(names, pa.string()))
