"""API tokens of the account API: a name, a role and a masked secret."""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from geogate.secret import Secret


class Role(enum.IntEnum):
    """What a token may do; an operator may do everything a viewer may."""

    VIEWER = 1
    OPERATOR = 2

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer`` or ``operator`` (any case); ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"expected 'viewer' or 'operator', got {text!r}") from None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One API token: a name (recorded as the actor of operator actions), a role, the secret
    (a plain string or a :class:`~geogate.secret.Secret`; the repr never shows it)."""

    name: str
    role: Role
    secret: str | Secret

    def reveal(self) -> str:
        """The secret itself, for comparing with a presented token."""
        return self.secret.reveal() if isinstance(self.secret, Secret) else self.secret

    def matches(self, presented: str) -> bool:
        """True when ``presented`` is this token's secret (constant-time comparison)."""
        return hmac.compare_digest(presented.encode(), self.reveal().encode())

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, role={self.role.name.lower()}, secret='***')"
