"""Argon2id password hashes for ``[[console.users]]`` (argon2-cffi's defaults, RFC 9106).

``python -m geogate.console.passwords`` reads a password (prompted, or one line on standard
input) and prints its hash for the configuration file; the password itself is never stored.
"""

from __future__ import annotations

import getpass
import sys
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_CHARS: Final = 12
_HASHER: Final = PasswordHasher()
# Verified against when the user name is unknown, so that a wrong name costs as much time as
# a wrong password (no user enumeration by timing).
_DUMMY: Final = _HASHER.hash("geogate-console-no-such-user")


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password``; ValueError when it is shorter than 12 characters."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return _HASHER.hash(password)


def verify_password(hashed: str | None, password: str) -> bool:
    """True when ``password`` matches ``hashed`` (None: an unknown user, always False after
    the same work)."""
    try:
        return _HASHER.verify(hashed or _DUMMY, password) and hashed is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def main() -> int:
    """Prompt for a password (or read it from standard input) and print its hash."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("geogate: error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        print(hash_password(password))
    except ValueError as exc:
        print(f"geogate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
