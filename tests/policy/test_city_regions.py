"""City regions in policies (``"UA-23/Zaporizhzhia"``): parsed, validated with file and line,
matched most specific first (city, then any subdivision, then the country), and checked by
``geogate policy check`` against the snapshot's places."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from geogate.errors import PolicySyntaxError
from geogate.policy.model import Action, Region
from geogate.policy.parse import load_policy, parse_policy, region_line, resolve_policy_path
from geogate.service.app import create_app
from geogate.service.config import ServiceConfig

POLICY = """\
[policy]
id = "t"

[[rules]]
id = "occupied"
regions = ["UA-23", "UA-65"]

[[rules]]
id = "free"
action = "allow"
regions = [
    "UA-23/Zaporizhzhia",
    "UA-65/Kherson",
]

[[rules]]
id = "brent"
regions = ["GB-BEN"]
"""


def test_city_regions_parse_and_keep_their_spelling() -> None:
    region = Region.parse(" ua-23/ Zaporizhzhia ")
    assert region.code == "UA-23/Zaporizhzhia"
    assert (region.is_city, region.is_subdivision) == (True, True)
    assert (region.subdivision, region.city, region.country) == ("UA-23", "Zaporizhzhia", "UA")
    assert Region.parse("UA-23/Zaporizhzhya").key == region.key  # one city, two spellings
    assert Region.parse("UA-23/GeoNames:687700").key == "UA-23/geonames:687700"
    assert not Region.parse("UA-23").is_city


def test_most_specific_rule_wins() -> None:
    p = parse_policy(POLICY)
    at = {"country": "UA", "subdivision": "UA-23"}
    assert p.rule_for(**at, city="Zaporizhzhya").id == "free"  # type: ignore[union-attr]
    assert p.rule_for(**at, city="Enerhodar").id == "occupied"  # type: ignore[union-attr]
    assert p.rule_for(**at).id == "occupied"  # type: ignore[union-attr]
    assert p.match(**at, city="zaporizhzhia") == (p.rules[1], "UA-23/Zaporizhzhia")
    # A rule on any subdivision of the record matches; the first one named wins.
    gb = p.match(country="GB", subdivision="GB-ENG", more_subdivisions=("GB-BEN",))
    assert gb == (p.rules[2], "GB-BEN")
    assert p.rule_for(country="GB", subdivision="GB-ENG") is None
    # A city inside another subdivision is another city.
    assert p.rule_for(country="UA", subdivision="UA-65", city="Zaporizhzhia").id == "occupied"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ('"UA/Kherson"', "needs its ISO 3166-2 subdivision"),
        ('"UA-65/"', "must be a name of 1 to 100"),
        ('"UA-65/' + "x" * 101 + '"', "must be a name of 1 to 100"),
        ('"UA-65/(district)"', "must be a name"),
        ('"UA-65/a\\\\b"', "a character a name cannot have"),
        ('"UA-23/Zaporizhzhia", "UA-23/zaporizhzhya"', "already in rule"),
        ('"UA-23/Запоріжжя"', "write the city in ASCII"),
        # A GeoNames reference without a GeoNames id was taken for a city name (a warning).
        ('"UA-23/geonames:abc"', "GeoNames id in digits"),
        ('"UA-23/geonames:-1"', "GeoNames id in digits"),
        ('"UA-23/geonames:"', "GeoNames id in digits"),
        ('"UA-23/geonames:1e5"', "GeoNames id in digits"),
        ('"UA-23/geonames:0x10"', "GeoNames id in digits"),
        ('"UA-23/geonames:99999999999"', "GeoNames id in digits"),
        ('"UA-23/geonames:687700", "UA-23/GEONAMES:0687700"', "already in rule"),
        ('"UA-23/Zapo\u200drizhzhia"', "a character a name cannot have"),
        ('"UA-23/\u202eaihzhziropaZ"', "a character a name cannot have"),
        ('"UA-23\uff0fZaporizhzhia"', "not an ISO 3166-1 alpha-2 country"),
        ('"/"', "needs its ISO 3166-2 subdivision"),
        ('"UA-23//Zaporizhzhia"', "a character a name cannot have"),
    ],
)
def test_bad_city_regions_name_file_line_and_key(entry: str, fragment: str) -> None:
    text = f'[policy]\nid = "t"\n\n[[rules]]\nid = "r"\nregions = [{entry}]\n'
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text, path="p.toml")
    assert str(info.value).startswith("p.toml:6: rules[0].regions: ")
    assert fragment in str(info.value)


def test_a_geonames_reference_has_one_spelling() -> None:
    region = Region.parse("ua-23/GEONAMES: 0687700")
    assert (region.code, region.key) == ("UA-23/geonames:687700", "UA-23/geonames:687700")


def test_region_line_points_at_the_city(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    p = load_policy(path)
    free = p.rules[1]
    kherson = next(r for r in free.regions if r.city == "Kherson")
    assert region_line(p, free, kherson) == 13


def test_presets_carve_out_the_free_oblast_capitals() -> None:
    for name in ("unsupported-regions", "supported-countries"):
        p = load_policy(resolve_policy_path(f"builtin:{name}"))
        for sub, city in (("UA-23", "Zaporizhzhia"), ("UA-65", "Kherson")):
            assert p.rule_for(country="UA", subdivision=sub, city=city).action is Action.ALLOW  # type: ignore[union-attr]
            assert p.rule_for(country="UA", subdivision=sub).action is Action.DENY  # type: ignore[union-attr]
            assert p.rule_for(country="UA", subdivision=sub, city="Melitopol").action is Action.DENY  # type: ignore[union-attr]


def _policy_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", "policy", "check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_policy_check_warns_of_cities_the_data_never_names(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY.replace('"UA-65/Kherson"', '"UA-65/Khersonn"'))
    r = _policy_check(str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ok {path}")
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{path}:13: warning: rule 'free': no range of the snapshot")
    assert "'Khersonn' of UA-65" in lines[0]


def test_policy_check_is_quiet_on_the_presets() -> None:
    r = _policy_check("builtin:unsupported-regions", "builtin:supported-countries")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_the_service_logs_city_rules_that_never_match(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A running service says, at start, which city rules its snapshot can never match (the
    oblast's rule applies there instead); the presets' city rules match, so they are quiet."""
    path = tmp_path / "p.toml"
    path.write_text(POLICY.replace('"UA-65/Kherson"', '"UA-65/Khersonn"'))
    with caplog.at_level(logging.WARNING, logger="geogate.service"):
        create_app(ServiceConfig(policies=(str(path),)), handle_sighup=False)
    found = [r.getMessage() for r in caplog.records if "never matches" in r.getMessage()]
    assert len(found) == 1
    assert found[0].startswith(
        f"policy {path}: rule 'free': no range of the snapshot is in 'Khersonn' of UA-65 "
        "(cities there include Kherson, "  # the closest spelling first
    )
    assert found[0].endswith("the rule on UA-65/Khersonn never matches")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geogate.service"):
        create_app(ServiceConfig(policies=("builtin:unsupported-regions",)), handle_sighup=False)
    assert not [r for r in caplog.records if "never matches" in r.getMessage()]
