"""Generated traffic for the account scenarios: who does what, from where, when.

Every scenario is a function returning event records (dicts, as they would appear in a JSON
Lines file) for one or more accounts. Times are relative to the enforcement date ``D`` of the
``unsupported-regions`` preset (2024-07-09); all randomness is seeded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from .netdata import NETS

D = datetime(2024, 7, 9, tzinfo=UTC)
START = D - timedelta(days=40)
END = D + timedelta(days=10)

Event = dict[str, Any]


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(first: datetime, last: datetime) -> Iterator[datetime]:
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < last:
        yield day
        day += timedelta(days=1)


def _daytime(rng: random.Random, day: datetime, utc_offset: int) -> datetime:
    """A moment of a person's waking day (local 08-23) at ``utc_offset``, as UTC."""
    local_hour = rng.choices(
        range(8, 24), weights=[3, 5, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 4, 3, 2, 1]
    )[0]
    return day + timedelta(
        hours=local_hour - utc_offset, minutes=rng.randrange(60), seconds=rng.randrange(60)
    )


def request(account: str, t: datetime, ip: str, **fields: Any) -> Event:
    return {
        "type": "request",
        "ts": _ts(t),
        "account": account,
        "ip": ip,
        "path": "/v1/chat",
        **fields,
    }


def home_user(rng: random.Random) -> list[Event]:
    """A user at home in the US, all along."""
    a = "acct-home"
    out: list[Event] = [
        {
            "type": "signup",
            "ts": _ts(START - timedelta(days=1)),
            "account": a,
            "ip": NETS["us_home"].host(7),
            "phone_country": "US",
        },
        {
            "type": "payment",
            "ts": _ts(START),
            "account": a,
            "card_bin": "411111",
            "card_country": "US",
            "billing_country": "US",
            "amount": 20,
            "currency": "USD",
        },
    ]
    for day in _days(START, END):
        for _ in range(12):
            out.append(
                request(
                    a,
                    _daytime(rng, day, -5),
                    NETS["us_home"].host(7),
                    accept_language="en-US,en;q=0.9",
                    user_agent="curl/8.5",
                )
            )
    return out


def traveller(rng: random.Random) -> list[Event]:
    """A German user who spends two weeks in China a month before the date, then goes home."""
    a = "acct-traveller"
    out: list[Event] = [
        {
            "type": "signup",
            "ts": _ts(START - timedelta(days=100)),
            "account": a,
            "ip": NETS["de_home"].host(3),
        },
    ]
    trip = (D - timedelta(days=30), D - timedelta(days=16))
    for day in _days(START, END):
        abroad = trip[0] <= day < trip[1]
        net = NETS["cn_home"] if abroad else NETS["de_home"]
        offset = 8 if abroad else 2
        for _ in range(10):
            out.append(
                request(
                    a,
                    _daytime(rng, day, offset),
                    net.host(3),
                    accept_language="de-DE,de;q=0.9,en;q=0.5",
                    user_agent="python-requests/2.32",
                )
            )
    return out


def vpn_user(rng: random.Random) -> list[Event]:
    """A user in China toggling a US VPN on and off within minutes, every day."""
    a = "acct-vpn"
    out: list[Event] = [
        {"type": "signup", "ts": _ts(START), "account": a, "ip": NETS["us_vpn"].host(20)},
    ]
    for day in _days(D - timedelta(days=20), END):
        t = _daytime(rng, day, 8)
        for i in range(8):
            net = NETS["cn_home"] if i % 2 == 0 else NETS["us_vpn"]
            out.append(
                request(
                    a,
                    t + timedelta(minutes=3 * i),
                    net.host(40 + i % 2),
                    accept_language="zh-CN,zh;q=0.9",
                    user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/126",
                )
            )
    return out


def reseller(rng: random.Random, customers: int = 8) -> list[Event]:
    """A company reselling access from one German datacenter address: its own account with
    many user agents and round-the-clock traffic that forwards its clients' Chinese addresses,
    and customer accounts signed up from China that call through the same relay."""
    relay_ip = NETS["de_cloud"].host(10)
    out: list[Event] = []
    a = "acct-reseller"
    out.append(
        {
            "type": "signup",
            "ts": _ts(START),
            "account": a,
            "ip": relay_ip,
            "email": "ops@relay.example",
        }
    )
    for day in _days(START, END):
        for hour in range(24):
            for k in range(2):
                client = NETS["cn_home2"].host(rng.randrange(254))
                out.append(
                    request(
                        a,
                        day + timedelta(hours=hour, minutes=rng.randrange(60)),
                        relay_ip,
                        forwarded=f"{client}, {relay_ip}",
                        accept_language=rng.choice(["zh-CN,zh;q=0.9", "zh-CN", "en-US,en;q=0.8"]),
                        user_agent=f"client-{rng.randrange(40)}/{k}.{hour}",
                    )
                )
    for c in range(customers):
        b = f"acct-resold-{c}"
        out.append(
            {
                "type": "signup",
                "ts": _ts(START + timedelta(hours=c)),
                "account": b,
                "ip": NETS["cn_home2"].host(100 + c),
                "phone_country": "CN",
            }
        )
        for day in _days(START, END):
            for _ in range(8):
                out.append(
                    request(
                        b,
                        _daytime(rng, day, 8),
                        relay_ip,
                        accept_language="zh-CN,zh;q=0.9",
                        user_agent="openai-python/1.30",
                    )
                )
    return out


def card_payer(rng: random.Random) -> list[Event]:
    """An account that pays with a card issued in China but calls from the US."""
    a = "acct-card"
    out: list[Event] = [
        {"type": "signup", "ts": _ts(START), "account": a, "ip": NETS["us_home2"].host(9)},
    ]
    for week in range(0, 50, 7):
        out.append(
            {
                "type": "payment",
                "ts": _ts(START + timedelta(days=week, hours=15)),
                "account": a,
                "card_bin": "62284800",
                "card_country": "CN",
                "billing_country": "US",
                "amount": 20,
                "currency": "USD",
            }
        )
    for day in _days(START, END):
        for _ in range(10):
            out.append(
                request(
                    a,
                    _daytime(rng, day, -5),
                    NETS["us_home2"].host(9),
                    accept_language="en-US",
                    user_agent="node-fetch/3",
                )
            )
    return out


def corporate(rng: random.Random, employees: int = 12) -> list[Event]:
    """Employees of a US company, all egressing from one cloud NAT address in the US; one of
    them browses with a Chinese language preference."""
    nat = NETS["us_cloud"].host(50)
    out: list[Event] = []
    for e in range(employees):
        a = f"acct-corp-{e}"
        lang = "zh-CN,zh;q=0.9,en;q=0.8" if e == 0 else "en-US,en;q=0.9"
        out.append(
            {
                "type": "signup",
                "ts": _ts(START - timedelta(days=30)),
                "account": a,
                "ip": NETS["us_home"].host(60 + e),
                "phone_country": "US",
            }
        )
        out.append(
            {
                "type": "payment",
                "ts": _ts(START),
                "account": a,
                "card_country": "US",
                "billing_country": "US",
            }
        )
        for day in _days(START, END):
            if day.weekday() >= 5:
                continue
            for _ in range(15):
                out.append(
                    request(
                        a,
                        _daytime(rng, day, -5),
                        nat,
                        accept_language=lang,
                        user_agent="corp-tool/2.1",
                    )
                )
    return out


def relay_user(rng: random.Random) -> list[Event]:
    """A US user behind a location-preserving relay (iCloud Private Relay style)."""
    a = "acct-private-relay"
    out: list[Event] = []
    for day in _days(START, END):
        for _ in range(10):
            out.append(
                request(
                    a,
                    _daytime(rng, day, -5),
                    NETS["us_relay"].host(rng.randrange(254)),
                    accept_language="en-US",
                    user_agent="Safari/17",
                )
            )
    return out


SCENARIOS = (home_user, traveller, vpn_user, reseller, card_payer, corporate, relay_user)


def all_events(seed: int = 4) -> list[Event]:
    """Every scenario's events, merged in time order (as a platform would log them)."""
    rng = random.Random(seed)
    events: list[Event] = []
    for scenario in SCENARIOS:
        events.extend(scenario(rng))
    events.sort(key=lambda e: e["ts"])
    return events
