"""Judge a batch of log rows: client address by the trusted-proxy walk, then the decision.

Both steps work on the *distinct* values of a batch: the walk runs once per distinct
(peer, X-Forwarded-For, Forwarded) triple that reaches a trusted proxy — with
:func:`geogate.client_ip.resolve_client_ip`, the very code of the service — and
:meth:`geogate.decide.Decider.decide_many` once per distinct client address (IPv4 addresses
parsed vectorised into ``uint32``). The result, :class:`Verdicts`, keeps it that way: a table
of outcomes per distinct client (and policy segment) and, per row, an index into it, so a log
whose clients repeat costs a few array operations per row, and the aggregates group outcomes
before rows. :meth:`Verdicts.to_batch` expands it into one judged row per request.

The Spark engine builds the same :class:`Judge` on each executor (from the shipped policy and
snapshot files) and applies :meth:`Judge.judge` to each Arrow batch inside ``mapInArrow``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
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

DAY_US: Final = 86_400_000_000
"""Microseconds in a day."""
_DENY_INDEX: Final = ACTIONS.index("deny")
_WARN_INDEX: Final = ACTIONS.index("warn")
_NULL_ACTION_INDEX: Final = ACTIONS.index("invalid")
_REASON_NAMES: dict[int, str] = {}


JUDGED_FIELDS: Final = (
    "ts",
    "day",
    "phase",
    "account",
    "org",
    "client",
    "user_agent",
    "accept_language",
    "api_key",
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


EGRESS_NAMED_BASE: Final = 1 << 32
"""Egress network ids: an IPv4 /24 is its network address as an integer (below this base);
other networks (IPv6 /48) get ids from this base on, numbered by the :class:`Judge`; -1 stands
for no egress network."""


def egress_names(ids: npt.NDArray[np.int64], named: Sequence[str]) -> pa.Array:
    """The networks egress ``ids`` stand for ("" for -1); ``named``: the names of ids from
    :data:`EGRESS_NAMED_BASE` on. IPv4 /24 names are formatted by Arrow, not per id."""
    ids = np.asarray(ids, np.int64)
    is_v4 = (ids >= 0) & (ids < EGRESS_NAMED_BASE)
    v4 = np.where(is_v4, ids, 0)
    octets = [pc.cast(pa.array((v4 >> shift) & 255), pa.string()) for shift in (24, 16, 8)]
    text = pc.binary_join_element_wise(*octets, pa.scalar("0/24"), ".")
    if is_v4.all():
        return text
    other = [
        "" if i < 0 else named[i - EGRESS_NAMED_BASE] if i >= EGRESS_NAMED_BASE else ""
        for i in ids[~is_v4].tolist()
    ]
    out = text.to_numpy(zero_copy_only=False).astype(object)
    out[~is_v4] = other
    return pa.array(out, pa.string())


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcomes:
    """One scenario's decision for each entry of a :class:`Verdicts` table."""

    action: npt.NDArray[np.int8]  # index into ACTIONS
    reasons: npt.NDArray[np.uint32]  # bit mask over REASON_BITS
    region: npt.NDArray[np.uint32]  # index into Verdicts.region_values

    def take(self, entries: npt.NDArray[np.int64]) -> Outcomes:
        """The outcomes of ``entries``, in that order."""
        return Outcomes(
            action=self.action[entries],
            reasons=self.reasons[entries],
            region=self.region[entries],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdicts:
    """A judged batch in compact form: row ``i`` has the outcome of entry ``code[i]``.

    An entry stands for a distinct client address within a policy segment (plus one per
    request of an exempt account), so the per-entry arrays are as long as the batch has
    distinct clients, not rows: the aggregates group entries first and rows only by index.
    :meth:`to_batch` expands them into the row-per-request batch of :data:`JUDGED_FIELDS`.
    """

    ts_us: npt.NDArray[np.int64]  # per row: microseconds since the epoch
    code: npt.NDArray[np.int64]  # per row: entry index
    pivot_us: int  # phase "after" from this instant on
    account: pa.Array  # per row (string or dictionary)
    org: pa.Array
    clients: pa.DictionaryArray  # per row: the client address found
    user_agent: pa.Array
    accept_language: pa.Array
    api_key: pa.Array
    kind: npt.NDArray[np.int8]  # per entry: index into KINDS
    asn: npt.NDArray[np.int64]  # per entry, 0 when unknown
    egress: npt.NDArray[np.int64]  # per entry: egress network id (see EGRESS_NAMED_BASE)
    a: Outcomes  # per entry, the scenario judged
    b: Outcomes | None  # per entry, the scenario compared with
    region_values: pa.Array  # region labels by id (index 0: no region, "")
    egress_names: list[str]  # names of egress ids from EGRESS_NAMED_BASE on

    @property
    def rows(self) -> int:
        """Rows of the batch."""
        return int(self.code.shape[0])

    def anonymized(self) -> npt.NDArray[np.bool_]:
        """Per entry: the network hides the user's location (Tor, VPN, proxies)."""
        return _ANONYMIZING_CODE[self.kind]

    def hosting(self) -> npt.NDArray[np.bool_]:
        """Per entry: a datacenter network."""
        hosting: npt.NDArray[np.bool_] = self.kind == _HOSTING_KIND
        return hosting

    def unsupported(self) -> npt.NDArray[np.bool_]:
        """Per entry: a located request from a region the policy denies or warns."""
        located = (self.kind != _INVALID_KIND) & ~self.anonymized()
        unsupported: npt.NDArray[np.bool_] = ((self.a.reasons & _UNSUPPORTED_BIT) != 0) & located
        return unsupported

    def change(self) -> npt.NDArray[np.int8]:
        """Per entry (with a comparison): index into CHANGES."""
        if self.b is None:
            return np.zeros(len(self.kind), np.int8)
        ai, bi = self.a.action, self.b.action
        change = np.zeros(len(ai), np.int8)
        change[(bi == 2) & (ai != 2)] = 1
        change[(ai == 2) & (bi != 2)] = 2
        change[(bi == 1) & (ai == 0)] = 3
        change[(ai == 1) & (bi == 0)] = 4
        change[(ai != bi) & (change == 0)] = 5
        return change

    def to_batch(self) -> pa.RecordBatch:
        """The judged rows: the columns of :data:`JUDGED_FIELDS` (and :data:`COMPARE_FIELDS`
        with a comparison), one row per request."""
        code = self.code
        ts_us = self.ts_us
        anonymized = self.anonymized()
        cols: dict[str, pa.Array] = {
            "ts": pa.array(ts_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "day": pa.array((ts_us // DAY_US).astype(np.int32), pa.int32()).cast(pa.date32()),
            "phase": _dict((ts_us >= self.pivot_us).astype(np.int8), pa.array(["before", "after"])),
            "account": self.account,
            "org": self.org,
            "client": self.clients,
            "user_agent": self.user_agent,
            "accept_language": self.accept_language,
            "api_key": self.api_key,
            "region": _dict(self.a.region[code], self.region_values),
            "kind": _dict(self.kind[code], pa.array(KINDS)),
            "action": _dict(self.a.action[code], pa.array(ACTIONS)),
            "reasons": _reason_dict(self.a.reasons, code),
            "egress": self._egress_dict(),
            "asn": pa.array(self.asn[code]),
            "anonymized": pa.array(anonymized[code]),
            "hosting": pa.array(self.hosting()[code]),
            "unsupported": pa.array(self.unsupported()[code]),
            "denied": pa.array(self.a.action[code] == _DENY_INDEX),
            "warned": pa.array(self.a.action[code] == _WARN_INDEX),
        }
        if self.b is not None:
            cols["region_b"] = _dict(self.b.region[code], self.region_values)
            cols["action_b"] = _dict(self.b.action[code], pa.array(ACTIONS))
            cols["reasons_b"] = _reason_dict(self.b.reasons, code)
            cols["change"] = _dict(self.change()[code], pa.array(CHANGES))
        return pa.RecordBatch.from_pydict(cols)

    def _egress_dict(self) -> pa.DictionaryArray:
        ids, index = np.unique(self.egress, return_inverse=True)
        return _dict(index.reshape(-1)[self.code], egress_names(ids, self.egress_names))


def cached_reason_names(mask: int) -> str:
    """:func:`reason_names`, remembered (a log has a handful of distinct masks)."""
    names = _REASON_NAMES.get(mask)
    if names is None:
        names = _REASON_NAMES[mask] = reason_names(mask)
    return names


def _reason_dict(masks: npt.NDArray[np.uint32], code: npt.NDArray[np.int64]) -> pa.DictionaryArray:
    """Per row: the reason names of its entry's mask."""
    encoded = pc.dictionary_encode(pa.array(masks, pa.uint32()))  # hashing: no sort
    names = pa.array(
        [cached_reason_names(int(v)) for v in encoded.dictionary.to_pylist()], pa.string()
    )
    return _dict(encoded.indices.to_numpy()[code], names)


class _Clients:
    """A batch's distinct client addresses, with what the previous batch already worked out
    for those it had too (logs repeat their clients from batch to batch): parsed addresses
    and decisions are computed for the new ones only.

    Decisions are kept per decider and policy segment — the unit in which
    :meth:`geogate.decide.Decider.key_table` holds them constant.
    """

    def __init__(self, uniq: pa.Array, previous: _Clients | None) -> None:
        self.uniq = uniq
        n = len(uniq)
        self.is_v4 = np.zeros(n, bool)
        self.ints = np.zeros(n, np.uint32)
        self.decided: dict[tuple[int, int], tuple[npt.NDArray[Any], ...]] = {}
        if previous is not None and n and len(previous.uniq):
            found = pc.index_in(uniq, value_set=previous.uniq)
            src = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            src = np.full(n, -1, np.int64)
        self.hit = np.flatnonzero(src >= 0)
        self.src = src[self.hit]
        self.new = np.flatnonzero(src < 0)
        if previous is not None and len(self.hit):
            self.is_v4[self.hit] = previous.is_v4[self.src]
            self.ints[self.hit] = previous.ints[self.src]
        self.new_texts = uniq.take(pa.array(self.new)) if len(self.new) < n else uniq
        new_v4, new_ints = Judge._parse_uniques(self.new_texts)
        self.new_parsed = (new_v4, new_ints)
        self.is_v4[self.new[new_v4]] = True
        self.ints[self.new[new_v4]] = new_ints

    @property
    def parsed(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
        """Positions of the IPv4 addresses and their values."""
        v4_pos = np.flatnonzero(self.is_v4)
        return v4_pos, self.ints[v4_pos]

    def decide(
        self, judge: Judge, decider: Decider, at: datetime, previous: _Clients | None
    ) -> tuple[npt.NDArray[Any], ...]:
        """actions, reasons, regions, keys of each distinct address at ``at``."""
        key = (id(decider), decider.policies.segment(at))
        done = self.decided.get(key)
        if done is not None:
            return done
        old = previous.decided.get(key) if previous is not None else None
        if old is None or not len(self.hit):
            done = judge._decide_uniques(decider, self.uniq, self.parsed, at)
        else:
            fresh = judge._decide_uniques(decider, self.new_texts, self.new_parsed, at)
            done = tuple(np.empty(len(self.uniq), column.dtype) for column in fresh)
            for out, before, now in zip(done, old, fresh, strict=True):
                out[self.hit] = before[self.src]
                out[self.new] = now
        self.decided[key] = done
        return done


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
        # Region labels as the decisions name them (a country, a subdivision, or the city a
        # rule matched), numbered in the order met; index 0 is "" (no region).
        self.region_labels: list[str] = [""]
        self._region_ids: dict[str, int] = {"": 0}
        self._region_maps: dict[tuple[int, int], npt.NDArray[np.uint32]] = {}
        self._region_values = pa.array(self.region_labels, pa.string())
        self.egress_names: list[str] = []  # egress networks other than IPv4 /24s, by id
        self._egress_ids: dict[str, int] = {}
        self._clients: _Clients | None = None  # the previous batch's

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
        regions = np.zeros(n, np.uint32)
        keys = np.full(n, -1, np.int64)
        if n == 0:
            return actions, reasons, regions, keys
        v4_pos, ints = parsed
        if len(v4_pos):
            b = decider.decide_many(ints, at=at)
            actions[v4_pos], reasons[v4_pos] = b.actions, b.reasons
            regions[v4_pos] = self._region_map(decider, at, b.region_codes)[b.regions]
            keys[v4_pos] = b.keys
        if len(v4_pos) < n:
            other = np.ones(n, bool)
            other[v4_pos] = False
            other_pos = np.nonzero(other)[0]
            texts = pc.take(uniq, pa.array(other_pos)).to_pylist()
            b = decider.decide_many([t if t is not None else "" for t in texts], at=at)
            actions[other_pos], reasons[other_pos] = b.actions, b.reasons
            regions[other_pos] = self._region_map(decider, at, b.region_codes)[b.regions]
            keys[other_pos] = b.keys
        return actions, reasons, regions, keys

    def _region_map(
        self, decider: Decider, at: datetime, codes: tuple[str, ...]
    ) -> npt.NDArray[np.uint32]:
        """The judge's region ids of a decision table's region indices (once per decider
        and policy segment: the table, and so its labels, is the segment's)."""
        key = (id(decider), decider.policies.segment(at))
        mapped = self._region_maps.get(key)
        if mapped is None:
            ids = []
            for code in codes:
                label = code or ""
                i = self._region_ids.get(label)
                if i is None:
                    i = self._region_ids[label] = len(self.region_labels)
                    self.region_labels.append(label)
                ids.append(i)
            mapped = self._region_maps[key] = np.array(ids, np.uint32)
        return mapped

    @property
    def region_values(self) -> pa.Array:
        """Every region label met so far, by the ids :class:`Outcomes` hold."""
        if len(self._region_values) != len(self.region_labels):
            self._region_values = pa.array(self.region_labels, pa.string())
        return self._region_values

    def _segments(
        self, scenario: Scenario, ts_us: npt.NDArray[np.int64]
    ) -> tuple[list[datetime], npt.NDArray[np.int64] | None]:
        """The instants to judge at and, when there are several, each row's segment among
        them (``scenario.at``, or the policy version in force at each request's time)."""
        if scenario.at is not None:
            return [scenario.at], None
        bounds = np.array(
            [int(b.timestamp() * 1_000_000) for b in scenario.policies.boundaries], np.int64
        )
        seg = np.searchsorted(bounds, ts_us, side="right")
        present = np.flatnonzero(np.bincount(seg, minlength=len(bounds) + 1))
        if len(present) <= 1:  # one segment (or no rows)
            first = int(ts_us[0]) if len(ts_us) else int(bounds[0]) if len(bounds) else 0
            return [datetime.fromtimestamp(first / 1_000_000, UTC)], None
        ats: list[datetime] = []
        position = np.zeros(len(bounds) + 1, np.int64)
        for j, s in enumerate(present.tolist()):
            first = int(ts_us[int(np.argmax(seg == s))])  # the segment's first request
            ats.append(datetime.fromtimestamp(first / 1_000_000, UTC))
            position[s] = j
        return ats, position[seg]

    def _decide_entries(
        self,
        scenario: Scenario,
        clients: _Clients,
        previous: _Clients | None,
        cidx: npt.NDArray[np.int64],
        ts_us: npt.NDArray[np.int64],
        accounts: pa.Array,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Outcomes, npt.NDArray[np.int64]]:
        """Each row's entry, each entry's client (index into ``uniq``; ``len(uniq)`` for
        none), the entries' outcomes under ``scenario``, and each client's range key.

        Entries are (segment, client) pairs, ``len(uniq) + 1`` per segment; a request of an
        exempt account gets an entry of its own.
        """
        decider = self._decider(scenario)
        uniq = clients.uniq
        n_uniq = len(uniq)
        width = n_uniq + 1
        ats, seg = self._segments(scenario, ts_us)
        size = width * len(ats)
        actions = np.full(size, _NULL_ACTION_INDEX, np.int8)
        reasons = np.full(size, _INVALID_BIT, np.uint32)
        regions = np.zeros(size, np.uint32)
        keys = np.full(width, -1, np.int64)
        for j, at in enumerate(ats):
            a, r, g, k = clients.decide(self, decider, at, previous)
            base = j * width
            actions[base : base + n_uniq] = _ACTION_INDEX[a]
            reasons[base : base + n_uniq] = r
            regions[base : base + n_uniq] = g
            if j == 0:
                keys[:n_uniq] = k
        client = np.tile(np.arange(width, dtype=np.int64), len(ats))
        code = cidx if seg is None else seg * width + cidx
        extra = self._exempt_entries(decider, ats, seg, uniq, cidx, accounts, code, regions)
        if extra is not None:
            code, rows, (e_act, e_rsn, e_reg) = extra
            actions = np.concatenate([actions, e_act])
            reasons = np.concatenate([reasons, e_rsn])
            regions = np.concatenate([regions, e_reg])
            client = np.concatenate([client, cidx[rows]])
        return code, client, Outcomes(action=actions, reasons=reasons, region=regions), keys

    def _exempt_entries(
        self,
        decider: Decider,
        ats: list[datetime],
        seg: npt.NDArray[np.int64] | None,
        uniq: pa.Array,
        cidx: npt.NDArray[np.int64],
        accounts: pa.Array,
        code: npt.NDArray[np.int64],
        regions: npt.NDArray[np.uint32],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], tuple[npt.NDArray[Any], ...]] | None:
        """Requests of exempt accounts, decided one by one with their account: the new
        codes, the rows concerned and their entries' action, reasons and region."""
        n_uniq = len(uniq)
        new_code: npt.NDArray[np.int64] | None = None
        all_rows: list[npt.NDArray[np.int64]] = []
        parts: list[tuple[npt.NDArray[Any], ...]] = []
        next_entry = (n_uniq + 1) * len(ats)
        for j, at in enumerate(ats):
            exempt = decider.policies.in_force(at).exemptions.accounts
            if not exempt:
                continue
            hit = pc.fill_null(pc.is_in(accounts, value_set=pa.array(sorted(exempt))), False)
            mask = hit.to_numpy(zero_copy_only=False) & (cidx < n_uniq)
            if seg is not None:
                mask &= seg == j
            rows = np.flatnonzero(mask)
            if not len(rows):
                continue
            ips = pc.take(uniq, pa.array(cidx[rows])).to_pylist()
            accts = pc.take(pc.cast(accounts, pa.string()), pa.array(rows)).to_pylist()
            b = decider.decide_many(ips, at=at, accounts=accts)
            if new_code is None:
                new_code = code.copy()
            old = new_code[rows]
            new_code[rows] = next_entry + np.arange(len(rows))
            next_entry += len(rows)
            all_rows.append(rows)
            parts.append((_ACTION_INDEX[b.actions], b.reasons.astype(np.uint32), regions[old]))
        if new_code is None:
            return None
        stacked = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        return new_code, np.concatenate(all_rows), stacked

    # ----- the judged batch ------------------------------------------------------------------

    def verdicts(self, batch: pa.RecordBatch) -> Verdicts:
        """The compact judgement of ``batch`` (see :class:`Verdicts`)."""
        snap = self.snapshot
        clients = _as_dict(self.resolve_clients(batch))
        uniq = clients.dictionary
        n_uniq = len(uniq)
        indices = clients.indices
        if indices.null_count:
            indices = indices.fill_null(n_uniq)
        cidx = indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        ts = batch.column("ts")
        ts_us = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
        accounts = batch.column("account")
        previous = self._clients
        known = _Clients(uniq, previous)
        self._clients = known
        parsed = known.parsed
        code_a, client_a, out_a, keys = self._decide_entries(
            self.scenario, known, previous, cidx, ts_us, accounts
        )
        code, client, out_b = code_a, client_a, None
        if self.compare is not None:
            code_b, _, b, _ = self._decide_entries(
                self.compare, known, previous, cidx, ts_us, accounts
            )
            if code_b is code_a:  # one entry per client in both: the same table
                out_b = b
            else:
                width_b = len(b.action)
                pairs = pc.dictionary_encode(pa.array(code_a * width_b + code_b))
                code = pairs.indices.to_numpy().astype(np.int64)
                pair = pairs.dictionary.to_numpy()
                entry_a, entry_b = pair // width_b, pair % width_b
                client = client_a[entry_a]
                out_a, out_b = out_a.take(entry_a), b.take(entry_b)

        # Per client (the last one: none): network kind, AS number, egress network.
        valid = keys >= 0
        safe = np.where(valid, keys, 0)
        flags = np.where(valid, snap.flags[safe], 0).astype(np.uint8)
        kind = np.where(valid, _KIND_OF_FLAGS[flags], _INVALID_KIND).astype(np.int8)
        asn = np.where(valid, snap.asn[safe], 0).astype(np.int64)
        egress = self._egress(uniq, kind, parsed)
        return Verdicts(
            ts_us=ts_us,
            code=code,
            pivot_us=int(self.pivot.timestamp() * 1_000_000),
            account=accounts,
            org=batch.column("org"),
            clients=clients,
            user_agent=batch.column("user_agent"),
            accept_language=batch.column("accept_language"),
            api_key=batch.column("api_key"),
            kind=kind[client],
            asn=asn[client],
            egress=egress[client],
            a=out_a,
            b=out_b,
            region_values=self.region_values,
            egress_names=self.egress_names,
        )

    def judge(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The judged rows of ``batch``: the columns of :data:`JUDGED_FIELDS` (and
        :data:`COMPARE_FIELDS` with a comparison)."""
        return self.verdicts(batch).to_batch()

    def _egress_id(self, name: str) -> int:
        i = self._egress_ids.get(name)
        if i is None:
            i = self._egress_ids[name] = EGRESS_NAMED_BASE + len(self.egress_names)
            self.egress_names.append(name)
        return i

    def _egress(
        self,
        uniq: pa.Array,
        kind: npt.NDArray[np.int8],
        parsed: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]],
    ) -> npt.NDArray[np.int64]:
        """Per client (plus none): the egress network id of clients on tracked kinds — the
        client's /24 (IPv4) or /48 (IPv6), as the account engine keys its egress evidence —
        else -1."""
        n = len(uniq)
        out = np.full(n + 1, -1, np.int64)
        tracked = _EGRESS_CODE[kind[:n]]
        if not tracked.any():
            return out
        v4_pos, ints = parsed
        sel = tracked[v4_pos]
        out[v4_pos[sel]] = (ints[sel] & np.uint32(0xFFFFFF00)).astype(np.int64)
        is_v4 = np.zeros(n, bool)
        is_v4[v4_pos] = True
        rest = np.flatnonzero(tracked & ~is_v4)
        if len(rest):
            texts = pc.take(uniq, pa.array(rest)).to_pylist()
            for i, text in zip(rest.tolist(), texts, strict=True):
                try:
                    ip = parse_ip(text)
                except ClientIPError:
                    continue
                if ip.version == 4:
                    out[i] = int(ip) & 0xFFFFFF00
                else:
                    out[i] = self._egress_id(str(ipaddress.ip_network(f"{ip}/48", strict=False)))
        return out
