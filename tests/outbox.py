"""The event outbox, read straight from the catalog database.

An outbox whose events are all marked sent is *settled*: the dispatcher has nothing left to
deliver, so the events a sink has received by then are all it will receive (a row is marked
sent only after the sink accepted it). Tests wait for that instead of sleeping and counting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.polling import wait_until

#: (event id, event type, sent)
OutboxRow = tuple[str, str, bool]
_SELECT = "SELECT id, type, sent IS NOT NULL FROM outbox ORDER BY created, id"


def sqlite_outbox(data_dir: Path) -> list[OutboxRow]:
    with sqlite3.connect(data_dir / "catalog.db") as db:
        return [(r[0], r[1], bool(r[2])) for r in db.execute(_SELECT)]


def postgres_outbox(dsn: str) -> list[OutboxRow]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1], bool(r[2])) for r in conn.execute(_SELECT)]


def settled(read: Callable[[], list[OutboxRow]], count: int, timeout: float = 30.0) -> list[OutboxRow]:
    """Wait until the outbox holds ``count`` events, every one of them sent; its rows."""

    def check() -> list[OutboxRow] | None:
        rows = read()
        return rows if len(rows) == count and all(sent for _, _, sent in rows) else None

    return wait_until(check, timeout=timeout, what=f"{count} events in the outbox, all sent")
