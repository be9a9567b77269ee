"""The audit trail: one JSON line per DICOMweb transaction, on the ``dicomweb.audit`` logger.

It holds the facts an IHE ATNA record needs (when, who, what, which study/series/instance,
outcome, bytes, from where) and nothing else: never a token, a query string or any attribute
beyond UIDs. Path segments that are not well-formed UIDs are written as ``"invalid"``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

AUDIT_LOGGER = "dicomweb.audit"
#: Where :func:`note_stored` leaves what STOW stored, for the audit line of its request.
SCOPE_KEY = "dicomweb.audit"
#: Instances listed per STOW line at most (the count is always complete).
MAX_LISTED = 1000

_UID = re.compile(r"[0-9][0-9.]{0,63}")
_LEVELS = {"studies": "study", "series": "series", "instances": "instance"}
_QIDO_ENDS = frozenset(_LEVELS)


def audit_logger() -> logging.Logger:
    """The audit logger, writing bare JSON lines to stderr whatever the root logger's level and
    format (set up once; a logging configuration that already handles it is kept)."""
    logger = logging.getLogger(AUDIT_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@dataclass(slots=True)
class AuditRecord:
    transaction: str
    action: str
    method: str
    route: str
    uids: dict[str, str]
    remote: str
    started: float = field(default_factory=time.perf_counter)
    subject: str = ""
    client_id: str = ""
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""
    stored: list[dict[str, str]] = field(default_factory=list)
    stored_count: int = 0
    failed_count: int = 0

    def line(self) -> bytes:
        status = self.status
        outcome = "success" if 200 <= status < 400 else "denied" if status in (401, 403) else "failure"
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "type": "dicomweb.audit",
            "transaction": self.transaction,
            "action": self.action,
            "method": self.method,
            "route": self.route,
            **self.uids,
            "subject": self.subject or None,
            "client_id": self.client_id or None,
            "outcome": outcome,
            "status": status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "remote": self.remote,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
        }
        if self.reason:
            entry["reason"] = self.reason
        if self.transaction == "STOW-RS":
            entry["stored_count"] = self.stored_count
            entry["failed_count"] = self.failed_count
            entry["stored"] = self.stored
        return orjson.dumps(entry)


def describe(path: str, root: str, method: str) -> tuple[str, str, dict[str, str]]:
    """(transaction, route template, UIDs) of a request path under a DICOMweb root."""
    parts = [p for p in path[len(root) :].split("/") if p]
    route = [root]
    uids: dict[str, str] = {}
    i = 0
    while i < len(parts):
        name = parts[i]
        route.append(name if name in _LEVELS or name in ("metadata", "rendered", "thumbnail") else "…")
        level = _LEVELS.get(name)
        if level is not None and i + 1 < len(parts):
            value = parts[i + 1]
            uids[level] = value if _UID.fullmatch(value) else "invalid"
            route.append("{" + level + "}")
            i += 1
        elif name in ("frames", "bulkdata") and i + 1 < len(parts):
            route[-1] = name
            route.append("{frames}" if name == "frames" else "{tag}")
            i += 1
        i += 1
    if method == "POST":
        transaction = "STOW-RS"
    elif method == "DELETE":
        transaction = "DELETE"
    elif parts and parts[-1] in _QIDO_ENDS:
        transaction = "QIDO-RS"
    else:
        transaction = "WADO-RS"
    return transaction, "/".join(route), uids


def note_stored(scope: MutableMapping[str, Any], stored: list[tuple[str, str, str]], failed: int) -> None:
    """Called by STOW with what it stored: (study, series, instance) UIDs, and the failures."""
    record = scope.get(SCOPE_KEY)
    if not isinstance(record, AuditRecord):
        return
    record.stored_count = len(stored)
    record.failed_count = failed
    record.stored = [
        {"study": study, "series": series, "instance": instance}
        for study, series, instance in stored[:MAX_LISTED]
    ]
