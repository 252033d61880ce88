"""The account state machine.

::

    active ──► flagged ──► warned ──► blocked ──► appealed ──► reinstated
       ▲          │   (before the       (on/after       │  (operator)
       └──────────┘    effective date)   the date)      └──► blocked (appeal rejected)
    exempt: set and lifted by an operator only; the engine never moves an exempt account.

Engine moves (:func:`next_state`) follow the verdict and the enforcement date; operator moves
(:func:`operator_move`) follow the table in ``docs/accounts.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from geogate.accounts.rules import Verdict
from geogate.errors import StateConflict


class AccountState(enum.StrEnum):
    """The states of an account."""

    ACTIVE = "active"
    FLAGGED = "flagged"  # needs review; never blocks by itself
    WARNED = "warned"  # would be blocked; told so before the effective date
    BLOCKED = "blocked"
    EXEMPT = "exempt"
    APPEALED = "appealed"
    REINSTATED = "reinstated"


_ENGINE_FROZEN = frozenset({AccountState.EXEMPT, AccountState.APPEALED, AccountState.BLOCKED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """A state change and the rule that caused it (a rule name, or an operator action)."""

    to: AccountState
    rule: str


def next_state(
    current: AccountState,
    verdict: Verdict,
    *,
    at: datetime,
    effective_at: datetime | None,
) -> Move | None:
    """The engine's move for an account in ``current`` given a verdict at ``at``.

    A block verdict warns before ``effective_at`` and blocks on or after it (immediately when
    None). A flag verdict flags an active account. A flagged account whose evidence has gone
    returns to active; a warned one stays warned (it was told). Blocked, appealed and exempt
    accounts only move by an operator's hand. Returns None when nothing changes.
    """
    if current in _ENGINE_FROZEN:
        return None
    if verdict is Verdict.BLOCK:
        if effective_at is None or at >= effective_at:
            return Move(to=AccountState.BLOCKED, rule="enforce")
        if current is not AccountState.WARNED:
            return Move(to=AccountState.WARNED, rule="warn_before_effective_date")
        return None
    if verdict is Verdict.FLAG:
        if current in (AccountState.ACTIVE, AccountState.REINSTATED):
            return Move(to=AccountState.FLAGGED, rule="flag_for_review")
        return None
    if current is AccountState.FLAGGED:
        return Move(to=AccountState.ACTIVE, rule="evidence_cleared")
    return None


class OperatorAction(enum.StrEnum):
    """What an operator (or an appeal/exemption event) can do to an account."""

    EXEMPT = "exempt"
    UNEXEMPT = "unexempt"
    APPEAL = "appeal"
    REINSTATE = "reinstate"
    REJECT_APPEAL = "reject_appeal"
    BLOCK = "block"


_OPERATOR_MOVES: dict[OperatorAction, tuple[frozenset[AccountState], AccountState]] = {
    OperatorAction.EXEMPT: (
        frozenset(AccountState) - {AccountState.EXEMPT},
        AccountState.EXEMPT,
    ),
    OperatorAction.UNEXEMPT: (frozenset({AccountState.EXEMPT}), AccountState.ACTIVE),
    OperatorAction.APPEAL: (
        frozenset({AccountState.BLOCKED, AccountState.WARNED, AccountState.FLAGGED}),
        AccountState.APPEALED,
    ),
    OperatorAction.REINSTATE: (
        frozenset(
            {
                AccountState.APPEALED,
                AccountState.BLOCKED,
                AccountState.WARNED,
                AccountState.FLAGGED,
            }
        ),
        AccountState.REINSTATED,
    ),
    OperatorAction.REJECT_APPEAL: (frozenset({AccountState.APPEALED}), AccountState.BLOCKED),
    # An operator's own judgement (a report, a chargeback, an investigation): always with a
    # reason, recorded in the audit log, and the account is told like any blocked account.
    OperatorAction.BLOCK: (
        frozenset(
            {
                AccountState.ACTIVE,
                AccountState.FLAGGED,
                AccountState.WARNED,
                AccountState.REINSTATED,
            }
        ),
        AccountState.BLOCKED,
    ),
}


def operator_move(current: AccountState, action: OperatorAction, *, account: str) -> Move:
    """The move an operator action makes; :class:`StateConflict` when it does not apply."""
    allowed, to = _OPERATOR_MOVES[action]
    if current not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise StateConflict(
            f"account {account!r} is {current.value}: {action.value} applies only to {names}"
        )
    return Move(to=to, rule=f"operator:{action.value}")
