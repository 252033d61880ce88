"""Labelled account traffic around an enforcement date, deterministic by seed.

Seven weeks of events (:data:`START` .. :data:`END`, four weeks before the enforcement date
``D`` = 2024-07-09 of ``builtin:unsupported-regions`` and three after) for accounts of the
kinds a provider really sees, each labelled ``should_block`` (an evader: the account is used from
an unsupported region) or not. People (:mod:`bench.judgement.people`) act in their own time
zone, send the user agents and ``Accept-Language`` headers such people send, pay monthly and
signed up once. Addresses come from real ranges of the snapshot
(:mod:`bench.judgement.networks`): home ISPs, mobile carriers, clouds and VPN hosts.

``generate(seed, scale)`` returns the records (dicts in the JSON Lines event format of
``docs/events.md``, in time order) and the labels; ``scale`` 1.0 gives at least 20 accounts per
category. The same seed, scale and snapshot give the same events.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from geogate.intel.snapshot import Snapshot

from .networks import DualStack, Line, Line6, Networks, NoRangeError, Shared, home_line
from .people import (
    BROWSERS,
    CLOUDS,
    END,
    HOME_CARDS,
    HOME_WEIGHTS,
    HOMES,
    LANGS,
    MIXED,
    MOBILE_BROWSERS,
    OFFICE,
    ORIGIN_WEIGHTS,
    ORIGINS,
    RELAY_OPERATORS,
    RHYTHMS,
    SAFARI,
    SDKS,
    START,
    UNSUPPORTED_CARDS,
    VPN_COUNTRIES,
    VPN_HOSTS,
    Client,
    D,
    Home,
    Origin,
    Rhythm,
    clients_for,
    local_days,
)

PER_CATEGORY = 20

Record = dict[str, Any]


# ----- labels and the builder ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """What an account is: its category, whether it should be blocked (an evader), its org,
    and a sentence about what it does."""

    account: str
    category: str
    should_block: bool
    org: str | None = None
    note: str = ""


@dataclass(slots=True)
class Traffic:
    """Generated events (JSON-ready dicts in time order) and the label of every account."""

    records: list[Record]
    labels: dict[str, Label]
    seed: int
    scale: float

    def write_jsonl(self, path: Path) -> int:
        """Write the records as JSON Lines; returns the number written."""
        with path.open("w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        return len(self.records)


def _ts(t: datetime) -> str:
    # isoformat is several times cheaper than strftime; times carry whole seconds.
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Person:
    """One account and the one who uses it."""

    account: str
    clients: list[Client]
    rhythm: Rhythm
    org: str | None = None
    api_key: str | None = None
    email: str = ""


@dataclass(slots=True)
class Builder:
    """Collects records and labels; one per generated data set."""

    seed: int
    rng: random.Random
    nets: Networks
    records: list[Record] = field(default_factory=list)
    labels: dict[str, Label] = field(default_factory=dict)
    counter: int = 0
    id_prefix: str = "bench"

    def _id(self) -> str:
        self.counter += 1
        return f"{self.id_prefix}-{self.seed}-{self.counter}"

    def person(
        self,
        account: str,
        *,
        category: str,
        should_block: bool,
        clients: list[Client],
        rhythm: Rhythm,
        org: str | None = None,
        api_key: str | None = None,
        note: str = "",
    ) -> Person:
        """Register an account and its label."""
        self.labels[account] = Label(
            account=account, category=category, should_block=should_block, org=org, note=note
        )
        key = api_key or f"sk-{self.rng.getrandbits(64):016x}"
        return Person(account, clients, rhythm, org, key, f"{account}@mail.example")

    def _base(self, kind: str, p: Person, t: datetime) -> Record:
        rec: Record = {"id": self._id(), "type": kind, "ts": _ts(t), "account": p.account}
        if p.org:
            rec["org"] = p.org
        return rec

    def request(
        self,
        p: Person,
        t: datetime,
        ip: str,
        *,
        client: Client | None = None,
        forwarded: str | None = None,
        path: str | None = None,
    ) -> None:
        """A request at ``t`` from ``ip`` (only inside START .. END)."""
        if not START <= t < END:
            return
        c = client or (
            p.clients[0]
            if len(p.clients) == 1
            else self.rng.choices(p.clients, weights=[c.weight for c in p.clients])[0]
        )
        rec = self._base("request", p, t)
        rec["ip"] = ip
        rec["user_agent"] = c.user_agent
        if c.language is not None:
            rec["accept_language"] = c.language
        if forwarded:
            rec["forwarded"] = forwarded
        rec["path"] = path or self.rng.choice(
            ("/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models")
        )
        if p.api_key:
            rec["api_key"] = p.api_key
        self.records.append(rec)

    def signup(self, p: Person, t: datetime, ip: str, phone_country: str | None) -> None:
        """The account's sign-up (may lie before START: the account existed before)."""
        rec = self._base("signup", p, t)
        rec["ip"] = ip
        if phone_country:
            rec["phone_country"] = phone_country
        rec["email"] = p.email
        self.records.append(rec)

    def payment(self, p: Person, t: datetime, card: str, billing: str, bin_: str) -> None:
        """One payment (only inside START .. END)."""
        if not START <= t < END:
            return
        rec = self._base("payment", p, t)
        rec |= {
            "card_bin": bin_,
            "card_country": card,
            "billing_country": billing,
            "amount": self.rng.choice((5, 10, 20, 20, 20, 50, 120)),
            "currency": "USD",
        }
        self.records.append(rec)

    def monthly(
        self, p: Person, card: Callable[[datetime], tuple[str, str, str]], *, day: int = 0
    ) -> None:
        """Monthly payments on a fixed day of the month; ``card(t)`` gives (card country,
        billing country, BIN) for a payment at ``t``."""
        dom = day or self.rng.randint(1, 28)
        for month in (5, 6, 7, 8):
            t = datetime(
                2024, month, dom, self.rng.randrange(24), self.rng.randrange(60), tzinfo=UTC
            )
            self.payment(p, t, *card(t))

    def activity(
        self, p: Person, where: Callable[[datetime], str | None], *, rhythm: Rhythm | None = None
    ) -> None:
        """Requests on every local day of the person's rhythm; ``where(t)`` gives the address
        at ``t`` (None: no request then)."""
        r = rhythm or p.rhythm
        for day in local_days(r.tz):
            for t in r.moments(self.rng, day):
                ip = where(t)
                if ip is not None:
                    self.request(p, t, ip)


def _signup_time(rng: random.Random) -> datetime:
    return START - timedelta(days=rng.uniform(20, 500), seconds=rng.randrange(86400))


def _home(rng: random.Random) -> Home:
    return rng.choices(HOMES, weights=HOME_WEIGHTS)[0]


def _origin(rng: random.Random) -> Origin:
    return rng.choices(ORIGINS, weights=ORIGIN_WEIGHTS)[0]


def _home_card(country: str) -> Callable[[datetime], tuple[str, str, str]]:
    return lambda _t: (country, country, HOME_CARDS.get(country, "41472000"))


def _rhythm(
    rng: random.Random,
    tz: str,
    *,
    kinds: Sequence[str] = ("office", "evening", "mixed"),
    per_day: tuple[float, float] = (4, 30),
) -> Rhythm:
    kind = rng.choice(kinds)
    weekday, weekend = (0.9, 0.15) if kind == "office" else (0.75, 0.55)
    return Rhythm(tz, RHYTHMS[kind], rng.uniform(*per_day), weekday, weekend)


# ----- categories --------------------------------------------------------------------------


def home_user(b: Builder, i: int) -> None:
    """A resident of a supported country at home all along (some also on their phone)."""
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    p = b.person(
        f"home-{i:03d}",
        category="home",
        should_block=False,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"at home in {h.country}",
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    mobile = Shared(rng, b.nets.residential(h.country, h.mobile), 8) if h.mobile else None
    on_phone = 0.15 if mobile and rng.random() < 0.5 else 0.0
    b.signup(p, _signup_time(rng), line.at(START), h.country)
    b.monthly(p, _home_card(h.country))

    def where(t: datetime) -> str:
        if mobile and rng.random() < on_phone:
            return mobile.pick(rng)
        return line.at(t)

    b.activity(p, where)


def traveller(
    b: Builder,
    i: int,
    *,
    back_days: int | None = None,
    next_call: int | None = None,
    uses_vpn: bool | None = None,
) -> None:
    """A resident of a supported country who spends a week in China (hotel and local mobile
    networks; some switch a VPN on and off there) and comes home 1-7 days before the date; half
    of them call again only some days after the date.

    Options (default: drawn at random): ``back_days`` home that many days before the date;
    ``next_call`` no request from coming home until that many days after the date (0: on the
    date); ``uses_vpn`` whether a VPN is switched on and off on the trip.
    """
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    back = (D - timedelta(days=rng.randint(1, 7) if back_days is None else back_days)).date()
    leave = back - timedelta(days=8)
    quiet_until = (D + timedelta(days=rng.randint(0, 10))).date() if rng.random() < 0.5 else None
    if next_call is not None:
        quiet_until = (D + timedelta(days=next_call)).date()
    drawn_vpn = rng.random() < 0.3
    uses_vpn = drawn_vpn if uses_vpn is None else uses_vpn
    p = b.person(
        f"traveller-{i:03d}",
        category="traveller",
        should_block=False,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"lives in {h.country}, in CN {leave}..{back}"
        + (f", quiet until {quiet_until}" if quiet_until else "")
        + (", VPN on the trip" if uses_vpn else ""),
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    hotel = Line(rng, start=START, pool=b.nets.residential("CN", (4134, 4837)))
    cn_mobile = Shared(rng, b.nets.residential("CN", (9808, 56040, 4837)), 6)
    vpn = b.nets.vpn(rng.choice(("US", "DE", "GB", "NL", "JP")), VPN_HOSTS).address(rng)
    b.signup(p, _signup_time(rng), line.at(START), h.country)
    b.monthly(p, _home_card(h.country))
    abroad = Rhythm("Asia/Shanghai", MIXED, p.rhythm.per_day * 0.6, 0.8, 0.8)
    at_home = p.rhythm

    def home_where(t: datetime) -> str | None:
        local = t.astimezone(ZoneInfo(tz)).date()
        if leave <= local < back + timedelta(days=1):
            return None
        if quiet_until and back <= local < quiet_until:
            return None
        return line.at(t)

    def trip_where(t: datetime) -> str | None:
        local = t.astimezone(ZoneInfo("Asia/Shanghai")).date()
        if not leave < local < back:
            return None
        if uses_vpn and rng.random() < 0.5:
            return vpn
        return hotel.at(t) if rng.random() < 0.7 else cn_mobile.pick(rng)

    b.activity(p, home_where, rhythm=at_home)
    b.activity(p, trip_where, rhythm=abroad)


def corporate(b: Builder, i: int, size: int) -> list[str]:
    """A company whose employees all egress through one or two cloud NAT addresses in its
    country: business hours, shared API keys, the company's card; a few employees prefer
    Chinese or Russian in their browser."""
    rng = b.rng
    h = rng.choice([x for x in HOMES if x.country in ("US", "DE", "GB", "NL", "FR")])
    tz = h.zones[0]
    org = f"corp-{i:02d}"
    cloud = b.nets.cloud(h.country, (16509, 8075, 396982))
    nats = [cloud.address(rng) for _ in range(rng.randint(1, 2))]
    keys = [f"sk-{org}-{k}-{rng.getrandbits(48):012x}" for k in range(rng.randint(1, 3))]
    tool = Client(f"{org}-assistant/3.{rng.randint(0, 9)} python-httpx/0.27.0", None, 3)
    card = _home_card(h.country)
    accounts = []
    for e in range(size):
        lang = h.lang
        if e < 2 and rng.random() < 0.6:
            lang = rng.choice(("zh-CN", "ru-RU", "uk-UA", "zh-CN"))
        rhythm = Rhythm(tz, OFFICE, rng.uniform(8, 40), 0.92, 0.05)
        p = b.person(
            f"{org}-emp-{e:02d}",
            category="corporate",
            should_block=False,
            clients=[tool, *clients_for(rng, lang)[:1]],
            rhythm=rhythm,
            org=org,
            api_key=rng.choice(keys),
            note=f"employee in {h.country} behind cloud NAT, language {lang}",
        )
        accounts.append(p.account)
        b.signup(
            p, _signup_time(rng), b.nets.residential(h.country, h.isps).address(rng), h.country
        )
        b.monthly(p, card, day=1)
        remote = home_line(rng, b.nets, h.country, h.isps, start=START)
        b.activity(p, lambda t, r=remote: rng.choice(nats) if rng.random() < 0.9 else r.at(t))
    return accounts


def zh_speaker(b: Builder, i: int, *, vps: bool | None = None) -> None:
    """A Chinese-speaking resident of a supported country (zh-CN browser, a UTC+8-like day:
    works with Asia or keeps odd hours); a third call from their own cloud VPS in Singapore or
    the US (``vps`` forces it on or off); one in ten kept a Chinese phone number."""
    rng = b.rng
    country, zones, isps = rng.choice(
        (
            ("US", ("America/Los_Angeles", "America/New_York"), (7922, 7018, 701)),
            ("SG", ("Asia/Singapore",), (9506, 4657, 7473)),
            ("GB", ("Europe/London",), (2856, 5089)),
            ("CA", ("America/Toronto",), (577, 812)),
            ("AU", ("Australia/Sydney",), (1221,)),
        )
    )
    tz = zones[rng.randrange(len(zones))]
    clock = "Asia/Shanghai" if country != "SG" else tz
    rhythm = _rhythm(rng, clock, kinds=("office", "mixed", "late"), per_day=(8, 40))
    drawn_vps = rng.random() < 0.35
    vps = drawn_vps if vps is None else vps
    p = b.person(
        f"zh-speaker-{i:03d}",
        category="zh_speaker",
        should_block=False,
        clients=clients_for(rng, "zh-CN"),
        rhythm=rhythm,
        note=f"lives in {country}, zh-CN, China-hours day" + (", own cloud VPS" if vps else ""),
    )
    line = home_line(rng, b.nets, country, isps, start=START)
    server = None
    if vps:
        where_vps = rng.choice(("SG", "US", "SG"))
        server = b.nets.cloud(where_vps, (16509, 14061, 45102, 396982)).address(rng)
    phone = "CN" if rng.random() < 0.1 else country
    b.signup(p, _signup_time(rng), line.at(START), phone)
    b.monthly(p, _home_card(country))
    b.activity(p, lambda t: server if server and rng.random() < 0.95 else line.at(t))


def mobile_user(b: Builder, i: int, carriers: dict[str, Shared]) -> None:
    """A customer of a mobile carrier whose IPv4 traffic leaves through a handful of CGNAT
    addresses shared with many unrelated customers; where the carrier has IPv6 in the data,
    part of it goes over the phone's own /64, renewed on reconnect."""
    rng = b.rng
    country = rng.choice(tuple(carriers))
    h = next(x for x in HOMES if x.country == country)
    p = b.person(
        f"mobile-{i:03d}",
        category="mobile_cgnat",
        should_block=False,
        clients=clients_for(rng, h.lang, mobile=True),
        rhythm=_rhythm(rng, rng.choice(h.zones), kinds=("evening", "mixed")),
        note=f"mobile only, {country} carrier CGNAT",
    )
    cg = carriers[country]
    v6_pool = b.nets.residential6(country, h.mobile)
    phone = Line6(rng, v6_pool, start=START, daily_prefix=True) if v6_pool else None
    share6 = rng.uniform(0.2, 0.6) if phone else 0.0
    b.signup(p, _signup_time(rng), cg.pick(rng), country)
    b.monthly(p, _home_card(country))
    b.activity(p, lambda t: phone.at(t) if phone and rng.random() < share6 else cg.pick(rng))


def kyiv_lviv(b: Builder, i: int) -> None:
    """A resident of Kyiv (UA-30) or Lviv (UA-46): Europe/Kyiv clock (UTC+3 in summer),
    Ukrainian or Russian browser language."""
    rng = b.rng
    sub = rng.choice(("UA-30", "UA-30", "UA-46"))
    lang = rng.choice(("uk-UA", "uk-UA", "ru-UA", "ru-RU", "en-US"))
    p = b.person(
        f"ua-{i:03d}",
        category="kyiv_lviv",
        should_block=False,
        clients=clients_for(rng, lang),
        rhythm=_rhythm(rng, "Europe/Kyiv"),
        note=f"lives in {sub}, language {lang}",
    )
    line = home_line(
        rng, b.nets, "UA", (15895, 6849, 21497, 34058, 3255), start=START, subdivision=sub
    )
    b.signup(p, _signup_time(rng), line.at(START), "UA")
    b.monthly(p, _home_card("UA"))
    b.activity(p, line.at)


def one_off_leak(b: Builder, i: int) -> None:
    """A resident of a supported country with one or two requests from an unsupported region
    weeks before the date (a script run on a friend's machine, a colleague's proxy)."""
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    p = b.person(
        f"leak-{i:03d}",
        category="one_off_leak",
        should_block=False,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"at home in {h.country}; 1-2 requests from CN/RU before the date",
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    b.signup(p, _signup_time(rng), line.at(START), h.country)
    b.monthly(p, _home_card(h.country))
    b.activity(p, line.at)
    o = rng.choice(ORIGINS[:3])
    leak_ip = b.nets.residential(o.country, o.isps).address(rng)
    t = START + timedelta(days=rng.uniform(1, 14))
    for k in range(rng.randint(1, 2)):
        b.request(p, t + timedelta(seconds=40 * k), leak_ip)


def _evader(b: Builder, category: str, i: int, note: str) -> tuple[Person, Origin, DualStack]:
    rng = b.rng
    o = _origin(rng)
    lang = rng.choice(o.langs)
    p = b.person(
        f"{category.replace('_', '-')}-{i:03d}",
        category=category,
        should_block=True,
        clients=clients_for(rng, lang),
        rhythm=_rhythm(rng, o.zone, per_day=(6, 40)),
        note=f"in {o.country}, {note}",
    )
    line = home_line(rng, b.nets, o.country, o.isps, start=START)
    card = rng.choice(o.cards)
    b.signup(p, _signup_time(rng), line.at(START), o.country if rng.random() < 0.8 else "US")
    b.monthly(p, lambda _t: card)
    return p, o, line


def direct_user(b: Builder, i: int) -> None:
    """A user in CN, HK, RU or IR on their home ISP all along."""
    p, _o, line = _evader(b, "direct", i, "direct all along")
    b.activity(p, line.at)


def vpn_switcher(b: Builder, i: int, *, leak: float | None = None) -> None:
    """A user in an unsupported region who moves to a VPN before the date; 2-10 % of the
    requests after the date (``leak``: that share) leak out directly (the VPN drops, a tool
    bypasses it)."""
    rng = b.rng
    drawn_leak = rng.uniform(0.02, 0.10)
    leak = drawn_leak if leak is None else leak
    p, _o, line = _evader(b, "vpn_switcher", i, f"VPN with {leak:.0%} leaks after the date")
    exits = [
        b.nets.vpn(rng.choice(VPN_COUNTRIES), VPN_HOSTS).address(rng)
        for _ in range(rng.randint(1, 3))
    ]
    switch = D - timedelta(days=rng.uniform(1, 14))
    before_vpn = rng.uniform(0.0, 0.6)

    def where(t: datetime) -> str:
        share = before_vpn if t < switch else 1.0 - leak
        return rng.choice(exits) if rng.random() < share else line.at(t)

    b.activity(p, where)


def full_vpn(b: Builder, i: int) -> None:
    """A user in an unsupported region, direct until the warning, then 100 % through a VPN or
    their own datacenter server; cards, sign-up, language and clock unchanged."""
    rng = b.rng
    p, _o, line = _evader(b, "full_vpn", i, "direct, then all VPN/datacenter after the warning")
    if rng.random() < 0.6:
        exits = [
            b.nets.vpn(rng.choice(VPN_COUNTRIES), VPN_HOSTS).address(rng)
            for _ in range(rng.randint(1, 2))
        ]
    else:
        exits = [b.nets.cloud(rng.choice(("US", "JP", "SG")), CLOUDS).address(rng)]
    switch = START + timedelta(days=rng.uniform(3, 22))
    b.activity(p, lambda t: rng.choice(exits) if t >= switch else line.at(t))


#: Hosts relays rent from: Hetzner, DigitalOcean, OVH, AWS, M247.
RELAY_HOSTS = (24940, 14061, 16276, 16509, 9009)


def reseller(
    b: Builder,
    i: int,
    size: int,
    *,
    exits: int | None = None,
    clients: int | None = None,
    forwards: bool | None = None,
) -> list[str]:
    """A relay reselling access: an org of accounts behind one to three datacenter exits in
    supported countries, carrying its customers' 10-40 client programs round the clock, shared
    API keys, members signed up from unsupported regions (some through the relay itself, with a
    foreign virtual phone number or none: only the org, its keys and exits tie them to the
    others), half paying with unsupported cards; some relays pass their customers' addresses
    on in X-Forwarded-For.

    Options (default: drawn at random): ``exits`` datacenter exits (every member uses all of
    them when given), ``clients`` distinct client strings, ``forwards`` whether client addresses
    are forwarded. A quarter of the relays also send from a rotating address of an IPv6 /64.
    """
    rng = b.rng
    org = f"relay-{i:02d}"
    n_exits = rng.randint(1, 3)
    egress = []
    for _ in range(n_exits if exits is None else exits):
        country = rng.choice(("DE", "US", "SG", "JP", "FR", "NL"))
        egress.append(b.nets.cloud(country, RELAY_HOSTS).address(rng))
    v6_pool, v6_net = None, 0
    if rng.random() < 0.25 and exits is None:
        try:
            v6_pool = b.nets.cloud(rng.choice(("DE", "US")), RELAY_HOSTS, family=6)
            v6_net = v6_pool.prefix64(rng)
        except NoRangeError:
            v6_pool = None
    n_clients = rng.randint(10, 40)
    n_clients = n_clients if clients is None else clients
    client_uas = rng.sample(SDKS + BROWSERS + MOBILE_BROWSERS, min(n_clients, 26))
    while len(client_uas) < n_clients:
        client_uas.append(
            f"{rng.choice(('NextChat', 'ChatBox', 'LobeChat', 'lobe-chat'))}/"
            f"{rng.randint(1, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}"
        )
    langs = (*LANGS["zh-CN"], None, None, "en-US,en;q=0.9")
    programs = [Client(ua, rng.choice(langs), rng.uniform(0.2, 3)) for ua in client_uas]
    keys = [f"sk-{org}-{k}-{rng.getrandbits(48):012x}" for k in range(rng.randint(1, 2))]
    drawn_forwards = rng.random() < 0.35
    forwards = drawn_forwards if forwards is None else forwards
    origin_pool = b.nets.residential("CN", (4134, 4837, 9808))
    customers = [origin_pool.address(rng) for _ in range(60)]
    accounts = []
    for m in range(size):
        rhythm = Rhythm(
            "Asia/Shanghai", tuple(2 + h for h in MIXED), rng.uniform(40, 160), 1.0, 1.0
        )
        p = b.person(
            f"{org}-acct-{m:02d}",
            category="reseller",
            should_block=True,
            clients=programs,
            rhythm=rhythm,
            org=org,
            api_key=rng.choice(keys),
            note=f"relay org of {size}, {len(egress)} exits, {n_clients} clients"
            + (", forwards client addresses" if forwards else "")
            + (", also an IPv6 /64" if v6_pool else ""),
        )
        accounts.append(p.account)
        if rng.random() < 0.35:
            b.signup(p, _signup_time(rng), rng.choice(egress), rng.choice((None, "US", "GB")))
        else:
            b.signup(p, _signup_time(rng), origin_pool.address(rng), "CN")
        unsupported_card = m % 2 == 0
        card = ("CN", "CN", "62284800") if unsupported_card else ("US", "US", "48495100")
        b.monthly(p, lambda _t, c=card: c)
        my_exits = rng.sample(egress, rng.randint(1, len(egress)))
        if exits is not None:
            my_exits = egress
        for day in local_days(rhythm.tz):
            for t in rhythm.moments(rng, day):
                ip = rng.choice(my_exits)
                if v6_pool is not None and rng.random() < 0.4:
                    ip = v6_pool.host64(rng, v6_net)
                fwd = f"{rng.choice(customers)}, {ip}" if forwards else None
                b.request(p, t, ip, forwarded=fwd)
    return accounts


def card_payer(b: Builder, i: int) -> None:
    """Traffic from a supported country, but paid with a card issued in CN, RU or IR (all along,
    or from the payment after the date)."""
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    country, bin_ = rng.choice(UNSUPPORTED_CARDS)
    from_date = rng.random() < 0.4
    p = b.person(
        f"card-{i:03d}",
        category="card_payer",
        should_block=True,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"at home in {h.country}, pays with a {country} card"
        + (" after the date" if from_date else ""),
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    b.signup(p, _signup_time(rng), line.at(START), h.country)

    def card(t: datetime) -> tuple[str, str, str]:
        if from_date and t < D:
            return h.country, h.country, HOME_CARDS.get(h.country, "41472000")
        return country, h.country if rng.random() < 0.5 else country, bin_

    b.monthly(p, card, day=rng.randint(9, 28))
    b.activity(p, line.at)


def relay_user(b: Builder, i: int, relays: dict[str, Shared]) -> None:
    """An iCloud Private Relay user: location-preserving relay egress shared with many
    strangers, Safari, home language and card."""
    rng = b.rng
    country = rng.choice(tuple(relays))
    h = next(x for x in HOMES if x.country == country)
    p = b.person(
        f"private-relay-{i:03d}",
        category="private_relay",
        should_block=False,
        clients=[Client(rng.choice(SAFARI), rng.choice(LANGS[h.lang]), 3)],
        rhythm=_rhythm(rng, rng.choice(h.zones)),
        note=f"in {country} behind a private relay",
    )
    line = home_line(rng, b.nets, country, h.isps, start=START)
    b.signup(p, _signup_time(rng), line.at(START), country)
    b.monthly(p, _home_card(country))
    relay = relays[country]
    b.activity(p, lambda t: relay.pick(rng) if rng.random() < 0.85 else line.at(t))


def card_changed(b: Builder, i: int) -> None:
    """A resident of a supported country who paid with a Chinese card before the date and
    with a local one from then on (a visiting researcher who opened a local account)."""
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    p = b.person(
        f"card-changed-{i:03d}",
        category="card_changed",
        should_block=False,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"at home in {h.country}; CN card before the date, local card after",
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    b.signup(p, _signup_time(rng), line.at(START), h.country)
    local = HOME_CARDS.get(h.country, "41472000")
    b.monthly(
        p,
        lambda t: ("CN", h.country, "62284800") if t < D else (h.country, h.country, local),
        day=rng.randint(12, 28),
    )
    b.activity(p, line.at)


def relocated(b: Builder, i: int) -> None:
    """Someone who moved from China or Russia to a supported country one to three weeks before
    the date: signed up there with a local phone number, keeps their language, paid with a card
    from there until the move and with a local one since; their day follows the new zone."""
    rng = b.rng
    o = rng.choice(ORIGINS[:1] * 3 + ORIGINS[2:3])
    h = rng.choice([x for x in HOMES if x.country in ("US", "DE", "GB", "CA", "AU", "JP")])
    tz = rng.choice(h.zones)
    moved = D - timedelta(days=rng.uniform(7, 21))
    lang = o.langs[0]
    p = b.person(
        f"relocated-{i:03d}",
        category="relocated",
        should_block=False,
        clients=clients_for(rng, lang),
        rhythm=_rhythm(rng, tz),
        note=f"moved from {o.country} to {h.country} on {moved:%Y-%m-%d}, language {lang}",
    )
    before = home_line(rng, b.nets, o.country, o.isps, start=START)
    after = home_line(rng, b.nets, h.country, h.isps, start=moved)
    old_card = next(c for c in o.cards if c[0] == o.country)
    local = (h.country, h.country, HOME_CARDS.get(h.country, "41472000"))
    b.signup(p, _signup_time(rng), before.at(START), o.country)
    b.monthly(p, lambda t: old_card if t < moved else local)
    there = Rhythm(o.zone, p.rhythm.hours, p.rhythm.per_day, p.rhythm.weekday, p.rhythm.weekend)
    b.activity(p, lambda t: before.at(t) if t < moved - timedelta(days=2) else None, rhythm=there)
    b.activity(p, lambda t: after.at(t) if t >= moved else None)


def privacy_vpn(b: Builder, i: int) -> None:
    """A resident of a supported country who keeps a commercial VPN on for privacy (exits in
    their own or a neighbouring supported country) for 40-100 % of requests."""
    rng = b.rng
    h = _home(rng)
    tz = rng.choice(h.zones)
    share = rng.uniform(0.4, 1.0)
    p = b.person(
        f"privacy-vpn-{i:03d}",
        category="privacy_vpn",
        should_block=False,
        clients=clients_for(rng, h.lang),
        rhythm=_rhythm(rng, tz),
        note=f"at home in {h.country}, {share:.0%} through a VPN",
    )
    line = home_line(rng, b.nets, h.country, h.isps, start=START)
    near = h.country if h.country in VPN_COUNTRIES else rng.choice(("US", "DE", "GB", "NL"))
    exits = [b.nets.vpn(near, VPN_HOSTS).address(rng) for _ in range(rng.randint(1, 4))]
    b.signup(p, _signup_time(rng), line.at(START), h.country)
    b.monthly(p, _home_card(h.country))
    b.activity(p, lambda t: rng.choice(exits) if rng.random() < share else line.at(t))


@dataclass(frozen=True, slots=True)
class Category:
    """A kind of account, whether its accounts should be blocked, and what it is."""

    name: str
    should_block: bool
    description: str


CATEGORIES: tuple[Category, ...] = tuple(
    Category(name, evader, (fn.__doc__ or "").split("\n\n")[0].replace("\n    ", " "))
    for name, evader, fn in (
        ("home", False, home_user),
        ("traveller", False, traveller),
        ("corporate", False, corporate),
        ("zh_speaker", False, zh_speaker),
        ("mobile_cgnat", False, mobile_user),
        ("kyiv_lviv", False, kyiv_lviv),
        ("one_off_leak", False, one_off_leak),
        ("private_relay", False, relay_user),
        ("card_changed", False, card_changed),
        ("relocated", False, relocated),
        ("privacy_vpn", False, privacy_vpn),
        ("direct", True, direct_user),
        ("vpn_switcher", True, vpn_switcher),
        ("full_vpn", True, full_vpn),
        ("reseller", True, reseller),
        ("card_payer", True, card_payer),
    )
)


def generate(seed: int, scale: float = 1.0, *, snapshot: Snapshot | None = None) -> Traffic:
    """Labelled traffic for ``seed``: ``round(20 * scale)`` accounts per category (at least one;
    companies and relay orgs are whole, so those categories may have a few more), over
    START .. END, on real ranges of ``snapshot`` (default: the embedded one). Each category
    draws from its own random stream, so adding a category leaves the others' traffic as it
    was."""
    nets = Networks(snapshot or Snapshot.embedded())
    b = Builder(seed=seed, rng=random.Random(seed), nets=nets)
    n = max(1, round(PER_CATEGORY * scale))
    for category in CATEGORIES:
        b.rng = random.Random(f"{seed}/{category.name}")
        _build(b, category.name, n, whole_orgs=True)
    b.records.sort(key=lambda r: r["ts"])
    return Traffic(records=b.records, labels=b.labels, seed=seed, scale=scale)


def _build(
    b: Builder, category: str, count: int, *, first: int = 0, whole_orgs: bool, **options: Any
) -> None:
    rng = b.rng
    if category in ("corporate", "reseller"):
        if not whole_orgs:
            (corporate if category == "corporate" else reseller)(b, first, count, **options)
            return
        made = org = 0
        while made < count:
            if category == "corporate":
                made += len(corporate(b, org, min(rng.randint(8, 14), max(count - made, 2))))
            else:
                made += len(reseller(b, org, rng.randint(5, 9)))
            org += 1
    elif category == "mobile_cgnat":
        carriers = _carriers(rng, b.nets, count)
        for i in range(first, first + count):
            mobile_user(b, i, carriers, **options)
    elif category == "private_relay":
        relays = _relays(rng, b.nets, count)
        for i in range(first, first + count):
            relay_user(b, i, relays, **options)
    elif category in _SINGLE:
        for i in range(first, first + count):
            _SINGLE[category](b, i, **options)
    else:
        names = ", ".join(c.name for c in CATEGORIES)
        raise ValueError(f"unknown category {category!r} (one of {names})")


def _carriers(rng: random.Random, nets: Networks, n: int) -> dict[str, Shared]:
    return {
        c: Shared(rng, nets.residential(c, h), max(3, n // 4))
        for c, h in (("US", (21928,)), ("DE", (3209,)))
    }


def _relays(rng: random.Random, nets: Networks, n: int) -> dict[str, Shared]:
    return {
        c: Shared(rng, nets.relay(c, RELAY_OPERATORS), max(4, n // 2)) for c in ("US", "GB", "DE")
    }


_SINGLE: dict[str, Callable[..., None]] = {
    "home": home_user,
    "traveller": traveller,
    "zh_speaker": zh_speaker,
    "kyiv_lviv": kyiv_lviv,
    "one_off_leak": one_off_leak,
    "card_changed": card_changed,
    "relocated": relocated,
    "privacy_vpn": privacy_vpn,
    "direct": direct_user,
    "vpn_switcher": vpn_switcher,
    "full_vpn": full_vpn,
    "card_payer": card_payer,
}


def scenario(
    category: str,
    *,
    seed: int = 0,
    count: int = 1,
    first: int = 0,
    snapshot: Snapshot | None = None,
    **options: Any,
) -> Traffic:
    """Accounts of one category only, for a scenario test: ``count`` accounts numbered from
    ``first`` (``corporate`` and ``reseller``: one org of ``count`` accounts, org number
    ``first``), with the category's options, for example ``scenario("vpn_switcher",
    leak=0.02)``, ``scenario("reseller", count=5, exits=1, clients=10)``,
    ``scenario("zh_speaker", vps=True)``, ``scenario("traveller", back_days=1, next_call=3)``.

    Cross-account rules see only what is generated together: :func:`combine` several
    scenarios (or add :func:`generate` traffic) to give them neighbours.
    """
    rng = random.Random(f"{seed}/{category}/{first}")
    nets = Networks(snapshot or Snapshot.embedded())
    b = Builder(seed=seed, rng=rng, nets=nets, id_prefix=f"{category}-{first}")
    _build(b, category, count, first=first, whole_orgs=False, **options)
    b.records.sort(key=lambda r: r["ts"])
    return Traffic(records=b.records, labels=b.labels, seed=seed, scale=0.0)


def combine(*parts: Traffic) -> Traffic:
    """Several generated traffics as one (records merged in time order); account ids must not
    repeat (give repeated scenarios of one category different ``first`` numbers)."""
    labels: dict[str, Label] = {}
    for part in parts:
        clash = labels.keys() & part.labels.keys()
        if clash:
            raise ValueError(f"accounts generated twice: {', '.join(sorted(clash)[:5])}")
        labels.update(part.labels)
    records = sorted((r for part in parts for r in part.records), key=lambda r: r["ts"])
    return Traffic(records=records, labels=labels, seed=parts[0].seed if parts else 0, scale=0.0)


def main() -> None:
    """``python -m bench.judgement.generate SEED [SCALE] OUT.jsonl``: write one data set."""
    import sys  # noqa: PLC0415

    args = sys.argv[1:]
    if len(args) not in (2, 3):
        raise SystemExit("usage: python -m bench.judgement.generate SEED [SCALE] OUT.jsonl")
    seed = int(args[0])
    scale = float(args[1]) if len(args) == 3 else 1.0
    traffic = generate(seed, scale)
    out = Path(args[-1])
    count = traffic.write_jsonl(out)
    labels = out.with_name(out.stem + ".labels.json")
    labels.write_text(
        json.dumps(
            {
                a: {
                    "category": x.category,
                    "should_block": x.should_block,
                    "org": x.org,
                    "note": x.note,
                }
                for a, x in sorted(traffic.labels.items())
            },
            indent=1,
        )
    )
    print(f"{count:,} events for {len(traffic.labels)} accounts -> {out}, labels -> {labels}")


if __name__ == "__main__":
    main()
