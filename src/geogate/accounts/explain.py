"""Plain-language explanation of an account: its state, how it got there, and every piece of
evidence and every rule behind it (``geogate accounts explain``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from geogate.accounts.config import AccountsConfig, Strength
from geogate.accounts.evidence import COUNTER_NAMES, AccountEvidence, infer_clock
from geogate.accounts.rules import Assessment
from geogate.store.protocol import AccountRow, NoticeRow, TransitionRow

_STATE_MEANING = {
    "active": "nothing against it",
    "flagged": "flagged for review: some evidence, not enough to warn or block",
    "warned": "warned: it would be blocked once the policy takes effect, and was told so",
    "blocked": "blocked: requests naming this account are refused",
    "exempt": "exempt: an operator exempted it; rules are evaluated but never change its state",
    "appealed": "appealed: waiting for an operator to reinstate it or reject the appeal",
    "reinstated": "reinstated by an operator; only evidence after that counts",
}


def _when(epoch: int | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def explain_lines(
    row: AccountRow,
    assessment: Assessment,
    *,
    config: AccountsConfig,
    transitions: Sequence[TransitionRow] = (),
    notices: Sequence[NoticeRow] = (),
) -> list[str]:
    """Lines of text explaining ``row`` as of ``assessment.at``."""
    ev = AccountEvidence.from_dict(row.evidence)
    at = assessment.at
    meaning = _STATE_MEANING.get(row.state, row.state)
    lines = [f"Account {row.account} is {row.state.upper()} — {meaning}."]
    if row.state_since:
        lines.append(f"In this state since {row.state_since:%Y-%m-%d %H:%M} UTC.")
    last = transitions[-1] if transitions else None
    if last is not None:
        lines.append(
            f"It got there by {last.actor} on {last.at:%Y-%m-%d %H:%M} UTC "
            f"({last.from_state} -> {last.to_state}, {last.note or 'no note'}) under policy "
            f"{last.policy_version}, because of: {', '.join(last.rules) or 'an operator decision'}."
        )
    lines.append("")
    eff = assessment.effective_at
    if assessment.post_date and eff is not None:
        lines.append(
            f"The enforcement date {eff:%Y-%m-%d} has passed: only evidence from on or after it "
            "counts towards a block (evidence from before it can warn, never block)."
        )
    elif eff is not None:
        lines.append(
            f"Before the enforcement date {eff:%Y-%m-%d}: evidence that would block warns."
        )
    lines.append(
        f"Assessment as of {at:%Y-%m-%d %H:%M} UTC: strong rules {assessment.strong_score:.2f} "
        f"(block at {config.block_score:.2f}; weak rules never count towards it), review score "
        f"{assessment.score:.2f} (flag at {config.flag_score:.2f}) -> {assessment.verdict.label}."
    )
    if assessment.regions:
        lines.append(f"Evidence points to: {', '.join(assessment.regions)}.")
    if row.state == "blocked" and assessment.verdict.label != "block":
        lines.append(
            "REVIEW: the account is blocked, but no evidence "
            + ("from after the enforcement date " if assessment.post_date else "")
            + "blocks it any more. An operator should reinstate it or confirm the block."
        )
    elif row.state == "blocked":
        decisive = [s.rule for s in assessment.fired if s.strength is Strength.STRONG]
        lines.append(f"The block stands on: {', '.join(decisive)}.")
    lines.append("Rules (fired first):")
    for s in sorted(assessment.signals, key=lambda s: (not s.fired, s.rule)):
        mark = "FIRED " if s.fired else "not fired"
        lines.append(f"  [{mark:9}] {s.rule} (weight {s.weight:g}, {s.strength.value}): {s.text}")
    lines.append("")
    lines.append("Evidence:")
    lines.append(
        f"  seen from {_when(ev.first_seen)} to {_when(ev.last_seen)}; {ev.requests} requests "
        "in all."
    )
    recent = ev.window(at, config.window_days)
    counts = ", ".join(
        f"{n.replace('_', ' ')} {c}" for n, c in zip(COUNTER_NAMES, recent, strict=True) if c
    )
    lines.append(f"  last {config.window_days} days: {counts or 'no activity'}.")
    if ev.regions:
        total = sum(v[0] for v in ev.regions.values()) or 1
        parts = [
            f"{r} {100 * v[0] / total:.0f}%{' (unsupported)' if v[2] else ''}"
            for r, v in sorted(ev.regions.items(), key=lambda kv: -kv[1][0])
        ]
        lines.append(
            f"  share of directly located requests by region (all time): {', '.join(parts)}."
        )
    if ev.payments:
        for key, v in sorted(ev.payments.items()):
            country, source = key.split(":", 1)
            lines.append(
                f"  payments: {v[0]} with {source.replace('_', ' ')} {country}"
                f"{' (unsupported)' if v[3] else ''}, {_when(v[1])} to {_when(v[2])}."
            )
    else:
        lines.append("  payments: none seen.")
    su: dict[str, Any] | None = ev.signup
    if su:
        lines.append(
            f"  signup: {_when(su.get('ts'))} from {su.get('region') or 'an unknown location'}"
            f"{' (unsupported)' if su.get('unsupported') else ''}"
            f"{', through an anonymizer' if su.get('anonymized') else ''}"
            + (f", phone {su.get('phone_country')}" if su.get("phone_country") else "")
            + "."
        )
    else:
        lines.append("  signup: not seen.")
    if ev.languages:
        tags = ", ".join(f"{t} {n}" for t, n in sorted(ev.languages.items(), key=lambda kv: -kv[1]))
        lines.append(f"  Accept-Language (preferred tag, requests): {tags}.")
    clock = infer_clock(ev.hours)
    if clock is not None:
        lines.append(
            f"  activity clock: fits {clock.range_text} (best UTC{clock.offset_hours:+d}, "
            f"confidence {clock.confidence:.2f} over {clock.events} requests); active in "
            f"{ev.active_hours()} of 24 hours."
        )
    groups = ev.group_keys()
    if groups:
        lines.append(f"  groups: {', '.join(groups)} (API keys are shown as digests).")
    lines.append(
        f"  distinct user agents: {len(ev.user_agents)}{'+' if len(ev.user_agents) >= 64 else ''}."
    )
    if ev.egress:
        shown = ", ".join(
            f"{k} ({n})" for k, n in sorted(ev.egress.items(), key=lambda kv: -kv[1])[:8]
        )
        lines.append(f"  datacenter/anonymizer egress used (requests): {shown}.")
    if ev.forwarded:
        fwd = ", ".join(f"{r} {v[0]}" for r, v in sorted(ev.forwarded.items()))
        lines.append(f"  forwarded-chain addresses in unsupported regions: {fwd}.")
    if transitions:
        lines.append("")
        lines.append("History:")
        for t in transitions:
            lines.append(
                f"  {t.at:%Y-%m-%d %H:%M} {t.from_state} -> {t.to_state} by {t.actor} "
                f"({t.note or '-'}; rules: {', '.join(t.rules) or '-'}; policy {t.policy_version})"
            )
    if notices:
        lines.append("")
        lines.append("Notices:")
        for n in notices:
            lines.append(
                f"  {n.kind} for {n.policy_version}: {n.state}, {n.attempts} attempts"
                + (f", last error: {n.last_error}" if n.last_error else "")
            )
    return lines
