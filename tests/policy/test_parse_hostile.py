"""Hostile policy files: whatever the text, parsing ends in a PolicySyntaxError with one line
naming the file (and the line and key when known), never another exception; ``policy check``
validates every table, ``[accounts]`` included, with the code ingestion uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geogate.errors import PolicySyntaxError
from geogate.policy.parse import parse_policy

HEAD = '[policy]\nid = "p"\n[[rules]]\nid = "cn"\nregions = ["CN"]\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("x = " + "9" * 5000, "4300 digits"),
        (HEAD.replace('id = "p"', 'id = "p"\neffective = 0001-01-01T00:00:00+01:00'), "1970"),
        (HEAD.replace('id = "p"', 'id = "p"\neffective = 2300-01-01'), "1970 to 2100"),
        (HEAD + "[[rules]]\nid = 'x'\nregions = ['RU']\neffective = 1900-01-01\n", "1970"),
    ],
)
def test_malformed_policy_is_a_policy_syntax_error(text: str, fragment: str) -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        parse_policy(text, path="p.toml")
    message = caught.value.one_line()
    assert message.startswith("p.toml")
    assert fragment in message


def policy_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("[accounts]\nbogus = 1\n", "accounts.bogus: unknown key"),
        ("[accounts]\nflag_score = 2.0\nblock_score = 1.0\n", "flag_score"),
        ("[accounts.rules.nope]\nweight = 1\n", "accounts.rules.nope: unknown rule"),
        ("[accounts]\nnotify_blocked = 'yes'\n", "accounts.notify_blocked"),
    ],
)
def test_policy_check_validates_the_accounts_table(
    tmp_path: Path, table: str, fragment: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(HEAD + table, encoding="utf-8")
    r = policy_check(path)
    assert r.returncode == 2, r.stdout
    assert fragment in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_policy_check_out_of_range_date_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        HEAD.replace('id = "p"', 'id = "p"\neffective = 0001-01-01T00:00:00+01:00'),
        encoding="utf-8",
    )
    r = policy_check(path)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"geogate: error: {path}:3: policy.effective: 0001-01-01T00:00:00+01:00 is outside "
        "the years 1970 to 2100"
    )


@pytest.mark.parametrize("value", ["9" * 400, "inf", "nan", "1e300"])
def test_huge_or_non_finite_accounts_numbers_are_policy_errors(tmp_path: Path, value: str) -> None:
    """Found by the fuzz suite: a 400-digit weight overflowed float() (OverflowError)."""
    path = tmp_path / "policy.toml"
    path.write_text(HEAD + f"[accounts.rules.language]\nweight = {value}\n", encoding="utf-8")
    r = policy_check(path)
    assert r.returncode == 2, r.stdout
    assert "accounts.rules.language.weight" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "text", ["[serve]\nport = " + "9" * 5000 + "\n", "x = " + "[" * 3000 + "]" * 3000 + "\n"]
)
def test_service_config_blow_ups_are_config_errors(tmp_path: Path, text: str) -> None:
    """Found by the fuzz suite: tomllib's ValueError and RecursionError escaped load_config."""
    from geogate.errors import ConfigError  # noqa: PLC0415
    from geogate.service.config import load_config  # noqa: PLC0415

    path = tmp_path / "geogate.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path, env={})
