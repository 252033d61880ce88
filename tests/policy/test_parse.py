"""Policy files: presets load, every mistake is reported with file, line and key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from geogate.errors import PolicyError, PolicySyntaxError
from geogate.policy.model import Action, Mode, PolicySet, Region
from geogate.policy.parse import load_policy, parse_policy, resolve_policy_path

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
[policy]
id = "t"
version = "1"
effective = 2024-07-09

[[rules]]
id = "cn"
regions = ["CN", "HK"]
"""


def test_presets_in_policies_dir_are_the_builtins() -> None:
    for name in ("unsupported-regions", "supported-countries"):
        shipped = load_policy(REPO / "policies" / f"{name}.toml")
        builtin = load_policy(resolve_policy_path(f"builtin:{name}"))
        assert shipped.label == builtin.label
        assert shipped.rules == builtin.rules


def test_deny_list_preset_covers_the_announced_regions() -> None:
    p = load_policy(resolve_policy_path("builtin:unsupported-regions"))
    assert p.mode is Mode.DENY_LIST
    denied = {r.code for r in p.regions(Action.DENY)}
    expected = {"CN", "HK", "MO", "RU", "IR", "CU", "KP", "SY", "VE"}
    expected |= {"UA-43", "UA-40", "UA-14", "UA-09", "UA-23", "UA-65"}
    assert denied == expected
    assert all(r.effective_at == datetime(2024, 7, 9, tzinfo=UTC) for r in p.rules)


def test_allow_list_preset_supports_ukraine_but_not_its_occupied_regions() -> None:
    p = load_policy(resolve_policy_path("builtin:supported-countries"))
    assert p.mode is Mode.ALLOW_LIST
    assert p.rule_for(country="UA", subdivision=None).action is Action.ALLOW  # type: ignore[union-attr]
    assert p.rule_for(country="UA", subdivision="UA-43").action is Action.DENY  # type: ignore[union-attr]
    assert p.rule_for(country="CN", subdivision=None) is None
    at = datetime(2024, 7, 10, tzinfo=UTC)
    assert p.unlisted_action_at(at) is Action.DENY


def test_bare_date_means_midnight_utc() -> None:
    p = parse_policy(MINIMAL)
    assert p.rules[0].effective_at == datetime(2024, 7, 9, tzinfo=UTC)
    assert p.rules[0].regions == {Region("CN"), Region("HK")}


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        (MINIMAL.replace('"HK"', '"Hong Kong"'), 9, "rules[0].regions", "ISO 3166"),
        (
            MINIMAL.replace("effective = 2024-07-09", 'effective = "soon"'),
            5,
            "policy.effective",
            "date",
        ),
        (MINIMAL + '\n[[rules]]\nid = "cn"\nregions = ["RU"]\n', 12, "rules[1].id", "duplicate"),
        (
            MINIMAL + '\n[[rules]]\nid = "ru"\nregions = ["CN"]\n',
            13,
            "rules[1].regions",
            "already in rule",
        ),
        (
            MINIMAL.replace('version = "1"', 'version = "1"\nmode = "blocklist"'),
            5,
            "policy.mode",
            "deny-list",
        ),
        (
            MINIMAL.replace('id = "cn"', 'id = "cn"\naction = "warn"'),
            9,
            "rules[0].action",
            "allow or deny",
        ),
        (MINIMAL + '\n[anonymizers]\ntor = "block"\n', 12, "anonymizers.tor", "allow, warn"),
        (MINIMAL + '\n[anonymizers]\nsocks = "deny"\n', 12, "anonymizers.socks", "unknown key"),
        (
            MINIMAL + '\n[exemptions]\nnetworks = ["10.0.0.0/33"]\n',
            12,
            "exemptions.networks",
            "CIDR",
        ),
        (MINIMAL.replace("[policy]", "[polcy]"), 2, "polcy", "unknown key"),
        (MINIMAL.replace('id = "t"', 'id = "t'), 3, None, "invalid TOML"),
    ],
)
def test_mistakes_name_file_line_and_key(
    text: str, line: int, key: str | None, fragment: str
) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text, path="p.toml")
    err = info.value
    assert err.path == "p.toml"
    assert err.line == line, str(err)
    if key:
        assert err.key == key
    assert fragment in str(err)
    assert str(err).startswith(f"p.toml:{line}")
    assert "\n" not in str(err)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicySyntaxError, match="no such file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicySyntaxError, match="directory"):
        load_policy(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[policy]\nid = '\xe9'\n")
    with pytest.raises(PolicySyntaxError, match="UTF-8"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="built-ins"):
        resolve_policy_path("builtin:nope")


def test_policy_set_picks_the_version_in_force() -> None:
    v1 = parse_policy(MINIMAL, path="v1")
    v2 = parse_policy(
        MINIMAL.replace('version = "1"', 'version = "2"\nvalid_from = 2025-01-01').replace(
            '"CN", "HK"', '"CN", "HK", "MO"'
        ),
        path="v2",
    )
    ps = PolicySet.of([v2, v1])
    assert ps.in_force(datetime(2024, 1, 1, tzinfo=UTC)).version == "1"
    assert ps.in_force(datetime(2025, 1, 1, tzinfo=UTC)).version == "2"
    assert ps.latest.version == "2"
    # Segments split at every instant where some outcome changes.
    assert ps.segment(datetime(2024, 7, 8, tzinfo=UTC)) != ps.segment(
        datetime(2024, 7, 9, tzinfo=UTC)
    )
    with pytest.raises(PolicyError, match="valid_from"):
        PolicySet.of([v1, parse_policy(MINIMAL, path="v1b")])


def test_scheduled_deny_warns_before_its_date() -> None:
    rule = parse_policy(MINIMAL).rules[0]
    assert rule.action_at(datetime(2024, 7, 8, 23, 59, tzinfo=UTC)) is Action.WARN
    assert rule.action_at(datetime(2024, 7, 9, tzinfo=UTC)) is Action.DENY
