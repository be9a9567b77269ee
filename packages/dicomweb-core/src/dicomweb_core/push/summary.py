"""What a push did: counts, reasons, throughput; as text for people and JSON for ``--report``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MB = 1_000_000


@dataclass
class Tally:
    url: str
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stored: int = 0
    stored_bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    not_sent: int = 0  # left when interrupted
    interrupted: bool = False

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.not_sent

    def as_json(self) -> dict[str, Any]:
        secs = max(self.seconds, 1e-9)
        return {
            "url": self.url,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "stored": self.stored,
            "stored_bytes": self.stored_bytes,
            "skipped": [{"item": k, "reason": r} for k, r in self.skipped],
            "failed": [{"item": k, "reason": r} for k, r in self.failed],
            "not_sent": self.not_sent,
            "seconds": round(secs, 3),
            "files_per_second": round(self.stored / secs, 2),
            "mb_per_second": round(self.stored_bytes / MB / secs, 2),
        }

    def text(self, *, limit: int = 20) -> str:
        secs = max(self.seconds, 1e-9)
        lines = [
            f"stored {self.stored} instances ({self.stored_bytes / MB:,.1f} MB) in {secs:,.1f} s: "
            f"{self.stored / secs:,.1f} files/s, {self.stored_bytes / MB / secs:,.1f} MB/s",
        ]
        for label, rows in (("skipped", self.skipped), ("failed", self.failed)):
            if not rows:
                lines.append(f"{label} 0")
                continue
            by_reason = Counter(_reason_class(r) for _, r in rows)
            lines.append(f"{label} {len(rows)}: " + "; ".join(f"{n} {r}" for r, n in by_reason.most_common()))
            lines += [f"  {k}: {r}" for k, r in rows[:limit]]
            if len(rows) > limit:
                lines.append(f"  … and {len(rows) - limit} more (see --report)")
        if self.not_sent:
            lines.append(f"not sent {self.not_sent}")
        return "\n".join(lines)


def _reason_class(reason: str) -> str:
    """Group reasons for the one-line count ("not a DICOM file", "HTTP 413", ...)."""
    head = reason.split(":", 1)[0]
    return head if len(head) <= 60 else head[:60] + "…"
