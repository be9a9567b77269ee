"""Reading a STOW-RS answer (PS3.18 10.5.3) into per-instance outcomes.

200 means every part was stored; 202 some were (``ReferencedSOPSequence``) and some were
not (``FailedSOPSequence`` with a ``FailureReason``); 409 none were. Of the failure reasons,
only "processing failure" (0x0110) and "out of resources" (0xA7xx) can succeed on a retry;
the others (0xC000 cannot understand, 0xA900 data set does not match SOP class, 0xC122
transfer syntax not supported, ...) are permanent refusals and are never re-sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

_FAILED_SOP_SEQ = "00081198"
_REFERENCED_SOP_SEQ = "00081199"
_REF_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"

PROCESSING_FAILURE = 0x0110
_REASONS = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}


def is_transient(status: int) -> bool:
    return status == PROCESSING_FAILURE or (status & 0xFF00) == 0xA700


def describe(status: int) -> str:
    name = _REASONS.get(status) or _REASONS.get(status & 0xFF00) or _REASONS.get(status & 0xF000)
    return f"0x{status:04X} {name}" if name else f"0x{status:04X}"


@dataclass
class Answer:
    """What one answer says: stored SOP UIDs, and failed SOP UIDs with their status."""

    stored: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)


def _uid_of(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    values = (item.get(_REF_SOP_INSTANCE) or {}).get("Value") or [""]
    return str(values[0]).strip()


def _status_of(item: dict[str, Any], tag: str) -> int | None:
    values = (item.get(tag) or {}).get("Value") or []
    try:
        return int(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def parse_answer(body: bytes) -> Answer:
    """Parse a DICOM JSON STOW answer; raises ValueError when the body is not one."""
    try:
        doc = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"answer is not DICOM JSON: {exc}") from exc
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    if not isinstance(doc, dict):
        raise ValueError("answer is not a DICOM JSON data set")
    answer = Answer()
    for item in (doc.get(_REFERENCED_SOP_SEQ) or {}).get("Value") or []:
        uid = _uid_of(item)
        if uid:
            answer.stored.add(uid)
    for item in (doc.get(_FAILED_SOP_SEQ) or {}).get("Value") or []:
        uid = _uid_of(item)
        if uid:
            status = _status_of(item, _FAILURE_REASON)
            answer.failed[uid] = 0xC000 if status is None else status
    return answer


def reason_from_body(body: bytes, limit: int = 300) -> str:
    """A short, printable reason from an error body (JSON ``detail``/``error`` or the text)."""
    text = body[:4096].decode("utf-8", errors="replace").strip()
    try:
        doc = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        for key in ("detail", "error", "reason", "message", "Message", "Details"):
            if isinstance(doc.get(key), str):
                text = doc[key]
                break
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")
