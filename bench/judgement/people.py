"""The people behind the benchmark's accounts: the programs they call from (user agents and
the Accept-Language they send), the shape of their day in their own time zone (with
daylight-saving time where the country has it), and the places they live in (time zones, home
ISPs and mobile carriers by ASN, languages, the cards they pay with).

The benchmark's calendar is here too: seven weeks around the enforcement date ``D`` of
``builtin:unsupported-regions``, four before it and three after.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

D = datetime(2024, 7, 9, tzinfo=UTC)
START = D - timedelta(days=28)
END = D + timedelta(days=21)


_HOURS = tuple(range(24))


@functools.cache
def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


def _hours(text: str) -> tuple[float, ...]:
    values = tuple(float(x) for x in text.split())
    if len(values) != 24:
        raise ValueError(f"an hour table needs 24 values, got {len(values)}")
    return values


# ----- clients: user agents and languages --------------------------------------------------

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
MOBILE_BROWSERS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
)
SDKS = (
    "OpenAI/Python 1.35.3",
    "OpenAI/Python 1.30.1",
    "OpenAI/NodeJS/4.52.0",
    "OpenAI/NodeJS/4.47.1",
    "python-requests/2.32.3",
    "python-httpx/0.27.0",
    "curl/8.5.0",
    "curl/7.81.0",
    "axios/1.7.2",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "PostmanRuntime/7.39.0",
    "Apache-HttpClient/5.2.1 (Java/17.0.11)",
    "langchain-openai/0.1.9 OpenAI/Python 1.35.3",
    "Dart/3.4 (dart:io)",
)

LANGS: dict[str, tuple[str, ...]] = {
    "en-US": ("en-US,en;q=0.9", "en-US,en;q=0.5", "en-US"),
    "en-GB": ("en-GB,en;q=0.9", "en-GB,en-US;q=0.9,en;q=0.8"),
    "en-AU": ("en-AU,en;q=0.9", "en-AU,en-GB;q=0.9,en;q=0.8"),
    "en-CA": ("en-CA,en;q=0.9,fr-CA;q=0.8", "en-US,en;q=0.9"),
    "en-SG": ("en-SG,en;q=0.9", "en-GB,en;q=0.9"),
    "de-DE": ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", "de,en-US;q=0.7,en;q=0.3"),
    "fr-FR": ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr,fr-FR;q=0.8,en-US;q=0.5,en;q=0.3"),
    "nl-NL": ("nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7", "nl,en;q=0.9"),
    "ja-JP": ("ja,en-US;q=0.9,en;q=0.8", "ja-JP,ja;q=0.9"),
    "zh-CN": ("zh-CN,zh;q=0.9", "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN,zh-Hans;q=0.9,en-US;q=0.8"),
    "zh-HK": ("zh-HK,zh;q=0.9,en;q=0.8", "zh-TW,zh;q=0.9,en-US;q=0.8"),
    "ru-RU": ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru,en;q=0.9"),
    "uk-UA": ("uk-UA,uk;q=0.9,ru;q=0.8,en-US;q=0.7,en;q=0.6", "uk,en-US;q=0.9,en;q=0.8"),
    "ru-UA": ("ru-RU,ru;q=0.9,uk;q=0.8,en-US;q=0.7", "ru,uk;q=0.9,en;q=0.8"),
    "fa-IR": ("fa-IR,fa;q=0.9,en-US;q=0.8,en;q=0.7", "fa,en;q=0.9"),
}


@dataclass(frozen=True, slots=True)
class Client:
    """One program an account calls from: its user agent and the Accept-Language it sends
    (None: the header is absent, as with most SDKs)."""

    user_agent: str
    language: str | None
    weight: float = 1.0


def clients_for(rng: random.Random, lang: str, *, mobile: bool = False) -> list[Client]:
    """A person's one to three clients: a browser (sends their language) and SDKs (mostly
    send none)."""
    header = rng.choice(LANGS[lang])
    out = [Client(rng.choice(MOBILE_BROWSERS if mobile else BROWSERS), header, rng.uniform(1, 3))]
    for _ in range(rng.randint(0, 2)):
        sdk_lang = header if rng.random() < 0.15 else None
        out.append(Client(rng.choice(SDKS), sdk_lang, rng.uniform(0.5, 3)))
    return out


# ----- activity: when people make requests ---------------------------------------------------

#: Relative request rates per local hour 0..23.
OFFICE = _hours("0 0 0 0 0 0 0.1 0.4 2 5 6 5 3 4 6 6 5 3 1 0.6 0.5 0.4 0.2 0.05")
EVENING = _hours("0.3 0.1 0 0 0 0 0.1 0.6 1 0.6 0.5 0.5 1 0.6 0.5 0.6 0.8 1.2 2 3.5 4.5 4.5 3 1.2")
MIXED = _hours("0.2 0.05 0 0 0 0 0.2 0.8 2 3 3.5 3.5 2.5 3 3.5 3.5 3 2.5 2 2.5 3 2.5 1.5 0.6")
LATE = _hours("1.5 0.8 0.3 0.05 0 0 0 0 0.1 0.8 2 3 3 3.5 4 4 3.5 3 2.5 3 3.5 4 3.5 2.5")
FLAT = tuple(1.0 for _ in range(24))
RHYTHMS = {"office": OFFICE, "evening": EVENING, "mixed": MIXED, "late": LATE, "flat": FLAT}


@dataclass(frozen=True, slots=True)
class Rhythm:
    """A person's day: time zone, relative rate per local hour, mean requests on an active day,
    and the chance of being active on a weekday and on a weekend day."""

    tz: str
    hours: tuple[float, ...]
    per_day: float
    weekday: float = 0.85
    weekend: float = 0.4

    def moments(self, rng: random.Random, day: date) -> list[datetime]:
        """UTC times of the requests of one local calendar day (sessions of bursts)."""
        active = self.weekend if day.weekday() >= 5 else self.weekday
        if rng.random() >= active:
            return []
        n = max(1, round(rng.lognormvariate(0, 0.6) * self.per_day))
        zone = ZoneInfo(self.tz)
        out: list[datetime] = []
        while len(out) < n:
            hour = rng.choices(_HOURS, cum_weights=_cumulative(self.hours))[0]
            t = datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=zone)
            t += timedelta(seconds=rng.randrange(60))
            for _ in range(min(n - len(out), 1 + int(rng.expovariate(1 / 6)))):
                out.append(t.astimezone(UTC))
                t += timedelta(seconds=5 + int(rng.expovariate(1 / 120)))
        return out


def local_days(tz: str, first: datetime = START, last: datetime = END) -> Iterator[date]:
    """Local calendar days in ``tz`` overlapping ``first`` .. ``last``."""
    zone = ZoneInfo(tz)
    day = first.astimezone(zone).date()
    end = last.astimezone(zone).date()
    while day <= end:
        yield day
        day += timedelta(days=1)


# ----- places --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Home:
    """A supported country people live in: time zones, home ISPs, mobile carriers, language."""

    country: str
    zones: tuple[str, ...]
    isps: tuple[int, ...]
    mobile: tuple[int, ...]
    lang: str


HOMES = (
    Home(
        "US",
        ("America/New_York", "America/Chicago", "America/Los_Angeles"),
        (7922, 7018, 701, 20115, 22773),
        (21928,),
        "en-US",
    ),
    Home("DE", ("Europe/Berlin",), (3320,), (3209,), "de-DE"),
    Home("GB", ("Europe/London",), (2856, 5089), (), "en-GB"),
    Home("FR", ("Europe/Paris",), (3215,), (), "fr-FR"),
    Home("NL", ("Europe/Amsterdam",), (1136,), (), "nl-NL"),
    Home("JP", ("Asia/Tokyo",), (17676,), (), "ja-JP"),
    Home("AU", ("Australia/Sydney",), (1221,), (), "en-AU"),
    Home("CA", ("America/Toronto",), (577, 812), (), "en-CA"),
)
HOME_WEIGHTS = (6, 3, 2, 1.5, 1, 1, 1, 1.5)


@dataclass(frozen=True, slots=True)
class Origin:
    """An unsupported country evaders live in: zone, home ISPs, languages, the cards they pay
    with ((card country, billing country, BIN), weights)."""

    country: str
    zone: str
    isps: tuple[int, ...]
    langs: tuple[str, ...]
    cards: tuple[tuple[str, str, str], ...]


ORIGINS = (
    Origin(
        "CN",
        "Asia/Shanghai",
        (4134, 4837, 9808),
        ("zh-CN", "zh-CN", "zh-CN", "en-US"),
        (
            ("CN", "CN", "62284800"),
            ("CN", "CN", "62170003"),
            ("US", "US", "48495100"),
            ("HK", "HK", "45395800"),
        ),
    ),
    Origin(
        "HK",
        "Asia/Hong_Kong",
        (4760, 9269),
        ("zh-HK", "en-GB", "zh-CN"),
        (("HK", "HK", "45395800"), ("HK", "HK", "52642300")),
    ),
    Origin(
        "RU",
        "Europe/Moscow",
        (12389, 8359, 3216, 31133),
        ("ru-RU", "ru-RU", "en-US"),
        (("RU", "RU", "22007012"), ("KZ", "KZ", "44057800"), ("US", "US", "48495100")),
    ),
    Origin(
        "IR",
        "Asia/Tehran",
        (197207, 58224, 44244),
        ("fa-IR", "fa-IR", "en-US"),
        (("IR", "IR", "60379910"), ("AE", "AE", "45848500"), ("US", "US", "48495100")),
    ),
)
ORIGIN_WEIGHTS = (6, 1, 3, 2)
#: Commercial VPN and small-host providers (M247, Datacamp/CDN77, Hetzner, OVH, DigitalOcean).
VPN_HOSTS = (9009, 60068, 24940, 16276, 14061)
VPN_COUNTRIES = ("US", "JP", "SG", "DE", "GB", "NL")
#: Big clouds (AWS, Microsoft, Google, DigitalOcean, Alibaba Cloud).
CLOUDS = (16509, 8075, 396982, 15169, 14061, 45102)
#: Operators of location-preserving relays (Akamai, Cloudflare, Fastly).
RELAY_OPERATORS = (36183, 13335, 54113)
HOME_CARDS = {
    "US": "41472000",
    "DE": "45633700",
    "GB": "46543200",
    "FR": "49723500",
    "NL": "51621800",
    "JP": "35680000",
    "AU": "45643000",
    "CA": "45190100",
    "SG": "45678900",
    "UA": "51683000",
}
UNSUPPORTED_CARDS = (("CN", "62284800"), ("RU", "22007012"), ("IR", "60379910"))
