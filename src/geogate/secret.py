"""A value that must not show up in logs, reprs or tracebacks (passwords, signing keys)."""

from __future__ import annotations

import hmac


class Secret:
    """A string whose ``repr`` and ``str`` are masked; ``reveal()`` returns the value.

    Equality compares in constant time, so a secret can be checked against input safely.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself; call only where it is sent or used."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)
