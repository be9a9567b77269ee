"""UID validation (PS3.5 9.1): digits and dots, at most 64 characters, no leading zeros."""

from __future__ import annotations

import re

from .errors import InvalidUIDError

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_valid_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and _UID.fullmatch(uid) is not None


def validate_uid(uid: str, what: str = "UID") -> str:
    """Return ``uid`` if valid, else raise :class:`InvalidUIDError` naming ``what``."""
    if not is_valid_uid(uid):
        shown = uid if len(uid) <= 80 else uid[:77] + "..."
        raise InvalidUIDError(f"invalid {what} {shown!r}: must be 1-64 chars of [0-9.] without leading zeros")
    return uid
