"""Account enforcement settings: the ``[accounts]`` table of a policy file.

Every weight, threshold and window used by the rules lives here with a documented default
(``docs/accounts.md``); a policy file overrides any of them. Unknown keys and wrong types raise
:class:`PolicySyntaxError` naming the policy file and the dotted key.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from geogate.errors import PolicySyntaxError
from geogate.policy.model import Policy


class Strength(enum.StrEnum):
    """Whether a rule may contribute to a block. Only strong rules count towards
    ``block_score``; weak rules (activity clock, language, relay and anonymizer patterns) add to
    the review score and can at most flag an account, whatever their weights."""

    STRONG = "strong"
    WEAK = "weak"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleConfig:
    """One rule's weight and thresholds. Fields a rule does not use are ignored."""

    weight: float
    min_requests: int = 0
    min_share: float = 0.0
    min_accounts: int = 0
    min_switches: int = 0
    window_minutes: int = 0
    min_user_agents: int = 0
    min_active_hours: int = 0
    min_confidence: float = 0.0
    account_score: float = 0.0
    unsupported_offsets: tuple[float, ...] = ()
    min_hidden_share: float = 0.0
    min_observations: int = 0
    max_exits: int = 0
    enabled: bool = True


#: Rule name -> (strength, region pointing, default settings). "Region pointing" rules say
#: where the user is; only they count when deciding whether an account "points to unsupported
#: regions" for egress concentration.
RULES: Final[Mapping[str, tuple[Strength, bool, RuleConfig]]] = {
    "direct_unsupported": (
        Strength.STRONG,
        True,
        RuleConfig(weight=1.0, min_requests=3, min_share=0.2),
    ),
    "payment_unsupported": (Strength.STRONG, True, RuleConfig(weight=1.0)),
    "continued_unsupported": (
        Strength.STRONG,
        True,
        RuleConfig(
            weight=1.0, min_requests=10, min_hidden_share=0.8, min_observations=10, min_share=0.5
        ),
    ),
    "vpn_switching": (
        Strength.STRONG,
        True,
        RuleConfig(weight=1.0, min_switches=3, window_minutes=15),
    ),
    "forwarded_unsupported": (
        Strength.STRONG,
        True,
        RuleConfig(weight=0.7, min_requests=3, min_share=0.2),
    ),
    "org_relay": (
        Strength.STRONG,
        False,
        RuleConfig(
            weight=1.0,
            min_accounts=3,
            min_user_agents=10,
            min_active_hours=20,
            min_hidden_share=0.8,
            min_share=0.3,
            max_exits=3,
            min_requests=10,
        ),
    ),
    "egress_concentration": (
        Strength.STRONG,
        False,
        RuleConfig(weight=0.6, min_accounts=5, min_share=0.5, account_score=0.5, min_requests=3),
    ),
    "signup_unsupported": (Strength.STRONG, True, RuleConfig(weight=0.3)),
    "anonymizer_use": (
        Strength.WEAK,
        False,
        # Below flag_score alone: keeping a VPN on at home is common and says nothing of where
        # the user is; with another weak signal it raises the account for review.
        RuleConfig(weight=0.2, min_requests=10, min_share=0.5),
    ),
    "relay_egress": (
        Strength.WEAK,
        False,
        RuleConfig(weight=0.2, min_accounts=5, min_requests=3),
    ),
    "relay_client": (
        Strength.WEAK,
        False,
        RuleConfig(weight=0.3, min_user_agents=10, min_active_hours=20, min_requests=200),
    ),
    "language": (
        Strength.WEAK,
        True,
        RuleConfig(weight=0.2, min_requests=10, min_share=0.5),
    ),
    "activity_clock": (
        Strength.WEAK,
        True,
        RuleConfig(
            weight=0.15,
            min_requests=50,
            min_confidence=0.6,
            unsupported_offsets=(8.0, 3.0),
        ),
    ),
}

_TOP_DEFAULTS: Final = {
    "window_days": 7,
    "payment_window_days": 180,
    "retention_days": 90,
    "flag_score": 0.3,
    "block_score": 1.0,
    "notify_blocked": True,
}


def _default_rules() -> dict[str, RuleConfig]:
    return {name: spec[2] for name, spec in RULES.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountsConfig:
    """All settings of account enforcement (see ``docs/accounts.md``).

    ``window_days``: request evidence older than this (before the evaluation time) no longer
    counts; this is what lets a traveller who came home stop "showing the evidence".
    ``payment_window_days``: the same for payments. ``retention_days``: day buckets kept per
    account. An account is flagged at ``flag_score`` and, with at least one strong rule firing,
    would be blocked (warned before the effective date) at ``block_score``.
    """

    window_days: int = 7
    payment_window_days: int = 180
    retention_days: int = 90
    flag_score: float = 0.3
    block_score: float = 1.0
    notify_blocked: bool = True
    rules: Mapping[str, RuleConfig] = field(default_factory=_default_rules)

    def rule(self, name: str) -> RuleConfig:
        """The settings of rule ``name``."""
        return self.rules[name]

    @classmethod
    def default(cls) -> AccountsConfig:
        """The documented defaults."""
        return _DEFAULT

    @classmethod
    def from_policy(cls, policy: Policy) -> AccountsConfig:
        """Settings from ``policy.accounts`` (the ``[accounts]`` table), memoised per policy."""
        cached = _CACHE.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        config = parse_accounts_table(policy.accounts, path=policy.source or policy.label)
        _CACHE[id(policy)] = (policy, config)
        return config


_DEFAULT = AccountsConfig()
_CACHE: dict[int, tuple[Policy, AccountsConfig]] = {}
_RULE_FIELDS: Final = {f.name: f for f in fields(RuleConfig)}


def _number(value: object, key: str, path: str, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicySyntaxError("must be a number", path=path, key=key)
    if integer and not isinstance(value, int):
        raise PolicySyntaxError("must be a whole number", path=path, key=key)
    if value < 0:
        raise PolicySyntaxError("must not be negative", path=path, key=key)
    if not value <= 1e12:  # also NaN and inf; float() of a huge integer would overflow
        raise PolicySyntaxError("must be a number up to 1e12", path=path, key=key)
    return float(value)


def parse_accounts_table(table: Mapping[str, Any], *, path: str = "<policy>") -> AccountsConfig:
    """Parse an ``[accounts]`` table (already decoded TOML) into :class:`AccountsConfig`."""
    top: dict[str, Any] = {}
    rules = _default_rules()
    for key, value in table.items():
        dotted = f"accounts.{key}"
        if key == "rules":
            if not isinstance(value, dict):
                raise PolicySyntaxError("must be a table", path=path, key=dotted)
            for name, settings in value.items():
                rules[name] = _parse_rule(name, settings, path)
            continue
        if key not in _TOP_DEFAULTS:
            allowed = ", ".join(sorted([*_TOP_DEFAULTS, "rules"]))
            raise PolicySyntaxError(
                f"unknown key (expected one of {allowed})", path=path, key=dotted
            )
        default = _TOP_DEFAULTS[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise PolicySyntaxError("must be true or false", path=path, key=dotted)
            top[key] = value
        elif isinstance(default, int):
            top[key] = int(_number(value, dotted, path, integer=True))
        else:
            top[key] = _number(value, dotted, path, integer=False)
    config = AccountsConfig(**top, rules=rules)
    if config.flag_score > config.block_score:
        raise PolicySyntaxError(
            "flag_score must not exceed block_score", path=path, key="accounts.flag_score"
        )
    if config.window_days < 1:
        raise PolicySyntaxError("must be at least 1", path=path, key="accounts.window_days")
    return config


def _parse_rule(name: str, settings: object, path: str) -> RuleConfig:
    prefix = f"accounts.rules.{name}"
    if name not in RULES:
        raise PolicySyntaxError(
            f"unknown rule (expected one of {', '.join(RULES)})", path=path, key=prefix
        )
    if not isinstance(settings, dict):
        raise PolicySyntaxError("must be a table", path=path, key=prefix)
    base = RULES[name][2]
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        dotted = f"{prefix}.{key}"
        f = _RULE_FIELDS.get(key)
        if f is None:
            raise PolicySyntaxError("unknown setting", path=path, key=dotted)
        current = getattr(base, key)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise PolicySyntaxError("must be true or false", path=path, key=dotted)
            changes[key] = value
        elif isinstance(current, tuple):
            if not isinstance(value, list):
                raise PolicySyntaxError("must be a list of numbers", path=path, key=dotted)
            changes[key] = tuple(float(_signed(v, dotted, path)) for v in value)
        elif isinstance(current, int):
            changes[key] = int(_number(value, dotted, path, integer=True))
        else:
            number = _number(value, dotted, path, integer=False)
            if key in ("min_share", "min_confidence", "min_hidden_share") and number > 1:
                raise PolicySyntaxError("must be between 0 and 1", path=path, key=dotted)
            changes[key] = number
    return replace(base, **changes)


def _signed(value: object, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicySyntaxError("must be a list of numbers", path=path, key=key)
    if not -12 <= value <= 14:
        raise PolicySyntaxError("UTC offsets lie between -12 and +14 hours", path=path, key=key)
    return float(value)
