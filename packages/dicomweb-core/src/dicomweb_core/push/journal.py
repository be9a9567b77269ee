"""The resume journal: which items a server has acknowledged (SQLite, one file per server).

A row says the server at ``url`` answered "stored" for the item at ``key`` when it had this
``size`` and ``mtime_ns``, with this SOP Instance UID. A re-run with ``--resume`` skips an
item only when its key, size and mtime all match, so a file rewritten since is sent again.
Rows are committed as the answers arrive (WAL, one transaction per answered request), so
whatever a Ctrl-C, a crash or a network cut interrupts, the journal never claims more than
the server acknowledged.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acknowledged (
    url TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    acknowledged_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (url, key)
)
"""


def default_journal_path(url: str) -> Path:
    """``$XDG_CACHE_HOME/dicomweb/push/<hash of the URL>.sqlite`` (``~/.cache`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(cache) / "dicomweb" / "push" / f"{digest}.sqlite"


class Journal:
    def __init__(self, path: Path, url: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._url = url.rstrip("/")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def acknowledged(self) -> dict[str, tuple[int, int]]:
        """key -> (size, mtime_ns) of every item this server acknowledged."""
        rows = self._db.execute(
            "SELECT key, size, mtime_ns FROM acknowledged WHERE url = ?", (self._url,)
        ).fetchall()
        return {key: (size, mtime) for key, size, mtime in rows}

    def record(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Record (key, size, mtime_ns, sop_instance_uid) rows in one transaction."""
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO acknowledged (url, key, size, mtime_ns, sop_instance_uid)"
                " VALUES (?, ?, ?, ?, ?)",
                [(self._url, *row) for row in rows],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
