# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled cold path of :class:`geogate.decide.Decider` (optional C extension).

``ColdPath.miss`` does in C what ``Decider._address_miss`` and ``Decider._range_decision`` do
in Python for an address the address cache has not seen: parse the text (``inet_pton``, as
``socket.inet_pton`` does), search the snapshot's range starts (the bucket table, the bisect,
the IPv6 /64 refinement of ``Snapshot.locate``), look the range up in the two-generation range
cache, build the ``_RangeDecision`` on the shared verdict and insert it in both caches. The
results, the cache contents and the counters are the same as the Python path's.

What is rare or subtle goes back to the Python path, unchanged: malformed text (which raises
``ClientIPError`` there), IPv6 forms that carry an IPv4 address other than the mapped form
(6to4, Teredo, NAT64 ...: their evidence names the form), policies with exempt networks, a
verdict not made yet (``Decider.prepare`` makes them all) and entries promoted from an old
cache generation. Nothing here releases the GIL, so a Decider stays as thread-safe as it is.

Set ``GEOGATE_PURE_PYTHON=1`` (or ``Decider(accelerated=False)``) to use the Python path.
``tests/test_fastpath.py`` holds the two paths to each other. After editing this file, run
``make install`` again: the editable install builds the module next to it (setup.py).
"""

import os

from cpython.object cimport PyObject
from cpython.long cimport PyLong_FromSsize_t
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, strlen


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    int AF_INET
    int AF_INET6


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL
    int PyDict_SetItem(object d, object key, object value) except -1
    Py_ssize_t PyDict_GET_SIZE(object d)


cdef extern from *:
    """
    /* A new instance of `type` (no __init__) with two slots set through their member
       descriptors: what object.__new__ and the two slot setters do, without three calls.
       The instance is then left out of the cyclic garbage collector: it refers only to a
       verdict, an int and later its facts, none of which refers back to a decision, so it
       can never be part of a cycle (reference counting frees it), and the collections that
       hundreds of thousands of cached decisions would otherwise make the collector walk
       (a fifth of a cold decision, measured) do not happen. */
    static PyObject *geogate_new_with_slots(PyObject *type, PyObject *d1, PyObject *v1,
                                            PyObject *d2, PyObject *v2) {
        PyTypeObject *tp = (PyTypeObject *)type;
        PyObject *obj = tp->tp_alloc(tp, 0);
        if (obj == NULL) return NULL;
        if (Py_TYPE(d1)->tp_descr_set(d1, obj, v1) < 0 ||
            Py_TYPE(d2)->tp_descr_set(d2, obj, v2) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
        PyObject_GC_UnTrack(obj);
        return obj;
    }
    static int geogate_has_descr_set(PyObject *d) { return Py_TYPE(d)->tp_descr_set != NULL; }
    """
    object geogate_new_with_slots(object type, object d1, object v1, object d2, object v2)
    bint geogate_has_descr_set(object d)


INTERFACE = 1
"""Version of what geogate.decide calls here (ColdPath's constructor and miss); decide.py
uses this module only when it matches, so a module left built from an older source (an
editable install not rebuilt after a pull) means the Python path, not a crash."""


def pure_python_forced():
    """True when ``GEOGATE_PURE_PYTHON`` is set to anything but ``""`` or ``"0"``: deciders
    made without an explicit ``accelerated`` argument then use the Python path."""
    return os.environ.get("GEOGATE_PURE_PYTHON", "") not in ("", "0")


cdef inline uint64_t _be64(const uint8_t *p) noexcept nogil:
    cdef uint64_t x = 0
    cdef int i
    for i in range(8):
        x = (x << 8) | p[i]
    return x


cdef class ColdPath:
    """The cold path of one Decider over one snapshot (see the module docstring).

    ``tables`` is :meth:`Snapshot.search_tables`; ``n4`` the number of IPv4 ranges;
    ``decision_type`` the ``_RangeDecision`` class whose ``_verdict`` and ``_key`` slots are
    set. ``misses`` and ``range_hits`` count as the Decider's counters of the same names.
    The Decider is passed to :meth:`miss` rather than kept, so that the two make no reference
    cycle (a replaced Decider and its caches are freed as soon as it is dropped, also when
    the service has frozen the heap out of the cycle collector).
    """

    cdef const uint32_t[::1] v4
    cdef const uint32_t[::1] v4_bounds
    cdef const uint64_t[::1] v6_hi
    cdef const uint64_t[::1] v6_lo
    cdef const uint32_t[::1] v6_bounds
    cdef const uint64_t[::1] combos
    cdef bint has_combos
    cdef Py_ssize_t n4
    cdef object decision_type
    cdef object set_verdict
    cdef object set_key
    cdef public long long misses
    cdef public long long range_hits
    # What miss reads of the last segment view it was given (fixed for a view's life), so
    # that a miss reads four attributes rather than ten. Copied to locals on each call: a
    # call from another thread may bind another view while this one waits for the GIL.
    cdef object bound_view
    cdef object bound_addresses
    cdef object bound_ranges
    cdef object bound_verdicts
    cdef bint bound_exempt
    cdef Py_ssize_t bound_address_capacity
    cdef Py_ssize_t bound_range_capacity

    def __init__(self, tables, n4, decision_type):
        v4, v4_bounds, v6_hi, v6_lo, v6_bounds = tables
        self.v4 = v4
        self.v4_bounds = v4_bounds
        self.v6_hi = v6_hi
        self.v6_lo = v6_lo
        self.v6_bounds = v6_bounds
        if self.v4_bounds.shape[0] != 65537 or self.v6_bounds.shape[0] != 65537:
            raise ValueError("bucket tables must have 65,537 entries")
        if self.v6_lo.shape[0] != self.v6_hi.shape[0] or n4 != self.v4.shape[0]:
            raise ValueError("search tables differ in length")
        if self.v4[0] != 0 or self.v6_hi[0] != 0 or self.v6_lo[0] != 0:
            raise ValueError("ranges must start at 0")  # so no search ends before index 0
        self.n4 = n4
        self.has_combos = False
        self.decision_type = decision_type
        self.set_verdict = decision_type.__dict__["_verdict"]
        self.set_key = decision_type.__dict__["_key"]
        if not (geogate_has_descr_set(self.set_verdict) and geogate_has_descr_set(self.set_key)):
            raise TypeError("decision_type needs _verdict and _key slots")
        self.misses = 0
        self.range_hits = 0

    cdef inline Py_ssize_t _v4_key(self, uint32_t x) noexcept:
        cdef uint32_t h = x >> 16
        cdef Py_ssize_t lo = self.v4_bounds[h]
        cdef Py_ssize_t hi = self.v4_bounds[h + 1]
        cdef Py_ssize_t mid
        # bisect_right. (Branch-free with a conditional move, with or without prefetching,
        # was no faster: with branches the CPU's speculation already fetches ahead.)
        while lo < hi:
            mid = (lo + hi) >> 1
            if x < self.v4[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo - 1

    cdef Py_ssize_t _v6_key(self, uint64_t xh, uint64_t xl) noexcept:
        cdef uint64_t b = xh >> 48
        cdef Py_ssize_t lo_b = self.v6_bounds[b]
        cdef Py_ssize_t lo = lo_b
        cdef Py_ssize_t hi = self.v6_bounds[b + 1]
        cdef Py_ssize_t mid, k, j, r
        while lo < hi:  # bisect_right over the high halves
            mid = (lo + hi) >> 1
            if xh < self.v6_hi[mid]:
                hi = mid
            else:
                lo = mid + 1
        k = lo - 1
        if self.v6_hi[k] == xh:
            # Ranges starting inside this /64: refine on the low half (Snapshot._locate_v6).
            if k == 0 or self.v6_hi[k - 1] != xh:
                return self.n4 + (k if self.v6_lo[k] <= xl else k - 1)
            lo = lo_b
            hi = k
            while lo < hi:  # bisect_left over the high halves
                mid = (lo + hi) >> 1
                if self.v6_hi[mid] < xh:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo
            hi = k + 1
            while lo < hi:  # bisect_right over the low halves
                mid = (lo + hi) >> 1
                if xl < self.v6_lo[mid]:
                    hi = mid
                else:
                    lo = mid + 1
            r = lo - 1
            if r < j:
                r = j - 1
            k = r
        return self.n4 + k

    cdef Py_ssize_t _key_of(self, str ip) except -2:
        """The range key of ``ip``, or -1 when the Python path must take it (malformed text,
        an IPv6 form carrying IPv4 other than the mapped one)."""
        cdef const char *text
        cdef Py_ssize_t n
        cdef uint8_t raw[16]
        cdef uint64_t xh, xl, top32
        if not PyUnicode_IS_COMPACT_ASCII(ip):
            return -1
        n = PyUnicode_GET_LENGTH(ip)
        if n > 45:  # longer than any address inet_pton accepts
            return -1
        text = <const char *>PyUnicode_DATA(ip)
        if <Py_ssize_t>strlen(text) != n:  # an embedded NUL: socket.inet_pton refuses it
            return -1
        if memchr(text, 58, n) == NULL:  # no ':' -> IPv4 text
            if inet_pton(AF_INET, text, raw) != 1:
                return -1
            return self._v4_key(
                (<uint32_t>raw[0] << 24) | (<uint32_t>raw[1] << 16)
                | (<uint32_t>raw[2] << 8) | raw[3]
            )
        if inet_pton(AF_INET6, text, raw) != 1:
            return -1
        xh = _be64(raw)
        xl = _be64(raw + 8)
        top32 = xh >> 32
        if (top32 >> 16) == 0 or (top32 >> 16) == 0x2002 or top32 == 0x20010000 \
                or top32 == 0x0064FF9B:
            if xh == 0 and (xl >> 32) == 0xFFFF:  # ::ffff:a.b.c.d, how dual-stack sockets
                return self._v4_key(<uint32_t>(xl & 0xFFFFFFFF))  # write IPv4 peers
            return -1  # 6to4, Teredo, NAT64, compatible ...: the Python path
        return self._v6_key(xh, xl)

    def locate(self, object ip):
        """The range key of ``ip`` as ``Snapshot.locate`` gives it, or -1 when this path
        leaves the address to Python (see :meth:`miss`)."""
        if type(ip) is not str:
            return -1
        return self._key_of(<str>ip)

    cdef int _bind(self, object view) except -1:
        if view is not self.bound_view:
            self.bound_addresses = view.addresses
            self.bound_ranges = view.ranges
            self.bound_verdicts = view.verdicts
            self.bound_exempt = view.has_exempt_networks
            self.bound_address_capacity = self.bound_addresses.capacity
            self.bound_range_capacity = self.bound_ranges.capacity
            self.bound_view = view
        return 0

    cdef object _range_decision(
        self, object decider, object view, object ranges, dict verdicts, Py_ssize_t capacity,
        Py_ssize_t key,
    ):
        cdef dict young = ranges.young
        cdef object pykey = PyLong_FromSsize_t(key)
        cdef PyObject *found = PyDict_GetItemWithError(young, pykey)
        cdef object decision, verdict, combos
        if found != NULL:
            self.range_hits += 1
            return <object>found
        found = PyDict_GetItemWithError(<dict?>ranges.old, pykey)
        if found != NULL:
            self.range_hits += 1
            decision = <object>found
            ranges.put(pykey, decision)
            return decision
        self.misses += 1
        if not self.has_combos:
            combos = decider._combos
            if combos is not None:
                self.combos = combos
                self.has_combos = True
        found = NULL
        if self.has_combos:
            found = PyDict_GetItemWithError(
                verdicts, PyLong_FromSsize_t(<Py_ssize_t>self.combos[key])
            )
        if found != NULL:
            verdict = <object>found
        else:
            verdict = decider._verdict(view, pykey)
            young = ranges.young  # as the Python path reads it: after the verdict is made
        decision = geogate_new_with_slots(
            self.decision_type, self.set_verdict, verdict, self.set_key, pykey
        )
        if PyDict_GET_SIZE(young) >= capacity:
            young = ranges.rotate()
        PyDict_SetItem(young, pykey, decision)
        return decision

    def miss(self, object decider, object view, object ip):
        """The decision for ``ip`` after an address cache miss in ``view`` (a
        ``_SegmentView``): exactly ``decider._address_miss(view, ip)``."""
        cdef object addresses
        cdef PyObject *found
        cdef Py_ssize_t key
        cdef object decision
        cdef dict young
        self._bind(view)
        if type(ip) is not str or self.bound_exempt:
            return decider._address_miss(view, ip)
        addresses = self.bound_addresses
        cdef object ranges = self.bound_ranges
        cdef dict verdicts = self.bound_verdicts
        cdef Py_ssize_t address_capacity = self.bound_address_capacity
        cdef Py_ssize_t range_capacity = self.bound_range_capacity
        found = PyDict_GetItemWithError(<dict?>addresses.old, ip)
        if found != NULL:  # back to the young generation
            decision = <object>found
            addresses.put(ip, decision)
            return decision
        key = self._key_of(<str>ip)
        if key < 0:
            return decider._address_miss(view, ip)
        decision = self._range_decision(decider, view, ranges, verdicts, range_capacity, key)
        young = addresses.young
        if PyDict_GET_SIZE(young) >= address_capacity:
            young = addresses.rotate()
        PyDict_SetItem(young, ip, decision)
        return decision
