"""The embedded SQLite catalog (stdlib ``sqlite3``).

One connection, used only from one worker thread: SQLite serialises writers anyway, and a
single thread keeps the connection's statement cache warm and needs no locking. WAL mode
with ``synchronous=FULL`` makes a commit durable before the caller acknowledges a store.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import CatalogError
from ..models import InstanceRecord
from .base import (
    DuplicatePolicy,
    EventsFor,
    NewInstance,
    OutboxEvent,
    QuietEventFactory,
    StoreResult,
    events_for,
)
from .rows import instance_rows, last_per_key, record_from_row
from .schema import CREATE_VERSION_TABLE, pending_migrations
from .sql import instance_filter, statements, study_count_params
from .writes import CurrentRow, WritePlan, plan_writes

if TYPE_CHECKING:
    from .qido import QidoQuery

R = TypeVar("R")

_S = statements("sqlite")


def _wrap_errors(fn: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise CatalogError(f"sqlite catalog: {exc}") from exc

    return wrapper


class SQLiteCatalog:
    """Catalog in one SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Point lookups (an instance, a series' instances) run on the event loop over their
        # own read-only connection: in WAL mode readers never wait for the writer, and an
        # indexed lookup costs less than the trip to the writer's thread.
        self._reader: sqlite3.Connection | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        if self._executor is None:
            raise CatalogError("sqlite catalog is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CatalogError("sqlite catalog is not open")
        return self._conn

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-catalog")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.path != ":memory:":  # a second connection to :memory: is another database
            self._reader = _wrap_errors(self._open_reader)()

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=10000")
        return reader

    @_wrap_errors
    def _open_sync(self) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction spans
        # exactly one catalog operation.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")  # for opening and migrating; see below
        conn.execute("PRAGMA foreign_keys=OFF")
        self._conn = conn
        try:
            self._migrate_sync()
        except BaseException:
            self._close_sync()
            raise
        # From now on writes wait for other processes in _begin_immediate, in short steps:
        # SQLite's own busy handler would answer them in sleeps of up to 100 ms.
        conn.execute("PRAGMA busy_timeout=0")

    def _migrate_sync(self) -> None:
        c = self._c
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute(CREATE_VERSION_TABLE)
            row = c.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, stmts in pending_migrations("sqlite", current, f"sqlite catalog {self.path}"):
                for stmt in stmts:
                    c.execute(stmt)
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        try:
            await self._run(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def check(self) -> None:
        await self._run(_wrap_errors(lambda: self._c.execute("SELECT 1 FROM schema_version").fetchone()))

    # -- writes ---------------------------------------------------------------------------

    def _transaction(self, body: Callable[[sqlite3.Connection], R]) -> R:
        c = self._c
        _begin_immediate(c)
        try:
            result = body(c)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return result

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        return (await self.upsert_instances([record], events))[0]

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        """Bulk form of :meth:`upsert_instance`: one transaction for all ``records``.
        Returns, per record, the previous object key when it differed."""
        if not records:
            return []
        plan = await self._run(self._write_sync, list(records), None, events, "replace")
        return plan.previous

    async def store_instances(
        self, items: Sequence[NewInstance], policy: DuplicatePolicy = "replace"
    ) -> StoreResult:
        if not items:
            return StoreResult([], [])
        records = [i.record for i in items]
        plan = await self._run(self._write_sync, records, [i.events for i in items], (), policy)
        return StoreResult(plan.decisions, plan.garbage)

    @_wrap_errors
    def _write_sync(
        self,
        records: list[InstanceRecord],
        item_events: list[Sequence[OutboxEvent]] | None,
        events: Sequence[OutboxEvent],
        policy: DuplicatePolicy,
    ) -> WritePlan:
        now = time.time()
        rows = [instance_rows(r, now) for r in records]  # parse outside the write lock

        def body(c: sqlite3.Connection) -> WritePlan:
            current: dict[str, CurrentRow] = {}
            for sop in dict.fromkeys(r.sop_instance_uid for r in records):
                old = c.execute(_S.old_instance, (sop,)).fetchone()
                if old is not None:
                    current[sop] = CurrentRow(*old)
            plan = plan_writes(records, current, policy)
            c.executemany(_S.delete_seq_of_instance, [(sop,) for sop in plan.replaced])
            winners = [rows[i] for i in plan.apply]
            c.executemany(_S.upsert_instance, [r.instance for r in winners])
            c.executemany(_S.upsert_series, last_per_key([r.series for r in winners]))
            c.executemany(_S.upsert_study, last_per_key([r.study for r in winners]))
            c.executemany(_S.insert_seq, [s for r in winners for s in r.seq])
            self._refresh(c, plan.series, plan.studies)
            chosen = [e for i in plan.apply for e in item_events[i]] if item_events is not None else []
            self._enqueue(c, [*events, *chosen], now)
            c.executemany(_S.insert_garbage, [(k, now) for k in plan.garbage])
            return plan

        return self._transaction(body)

    @staticmethod
    def _refresh(c: sqlite3.Connection, series: Iterable[str], studies: Iterable[str]) -> None:
        """Recompute the aggregates of the touched series and studies; drop empty ones."""
        series_params = [(s,) for s in series]
        c.executemany(_S.count_series, series_params)
        c.executemany(_S.drop_empty_series, series_params)
        study_params = [(s,) for s in studies]
        c.executemany(_S.count_study, [study_count_params(s) for (s,) in study_params])
        c.executemany(_S.drop_empty_study, study_params)

    @staticmethod
    def _enqueue(c: sqlite3.Connection, events: Sequence[OutboxEvent], now: float) -> None:
        c.executemany(_S.insert_event, [(e.id, e.type, e.source, e.body, e.attempts, now) for e in events])

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] | EventsFor = (),
    ) -> list[InstanceRecord]:
        return await self._run(self._delete_sync, study_uid, series_uid, sop_instance_uid, events)

    @_wrap_errors
    def _delete_sync(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        events: Sequence[OutboxEvent] | EventsFor,
    ) -> list[InstanceRecord]:
        where, params = instance_filter("?", study_uid, series_uid, sop_uid)

        def body(c: sqlite3.Connection) -> list[InstanceRecord]:
            records = [record_from_row(r) for r in c.execute(_S.select_records(where), params)]
            now = time.time()
            if records:
                c.execute(f"DELETE FROM seq_attrs WHERE {where}", params)
                c.execute(f"DELETE FROM instances WHERE {where}", params)
                self._refresh(c, dict.fromkeys(r.series_uid for r in records), [study_uid])
                c.executemany(_S.insert_garbage, [(r.object_key, now) for r in records])
            self._enqueue(c, events_for(events, records), now)
            return records

        return self._transaction(body)

    # -- reads ----------------------------------------------------------------------------

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None:
        where, params = instance_filter("?", study_uid, series_uid, sop_instance_uid)
        if self._reader is not None:
            row = _wrap_errors(_read_one)(self._reader, _S.select_records(where), params)
        else:
            row = await self._run(self._fetchone, _S.select_records(where), params)
        return record_from_row(row) if row is not None else None

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        where, params = instance_filter("?", study_uid, series_uid, None)
        sql = _S.select_records(where) + " ORDER BY series_uid, instance_number NULLS LAST, sop_instance_uid"
        if self._reader is not None:
            rows = _wrap_errors(_read_all)(self._reader, sql, params)
        else:
            rows = await self._run(self._fetchall, sql, params)
        return [record_from_row(r) for r in rows]

    @_wrap_errors
    def _fetchone(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._c.execute(sql, params).fetchone()
        return row

    @_wrap_errors
    def _fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._c.execute(sql, params).fetchall()

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        return await self._run(self._search_sync, query, base_url)

    @_wrap_errors
    def _search_sync(self, query: QidoQuery, base_url: str) -> list[dict[str, Any]]:
        from . import qidosql

        plan = qidosql.plan(query, "sqlite")
        rows = self._c.execute(plan.sql, plan.params).fetchall()
        extra: dict[str, bytes] = {}
        if plan.needs_metadata and rows:
            extra = self._representative_metadata(plan.level_key_column, [r[0] for r in rows])
        return qidosql.results(query, rows, extra, base_url)

    def _representative_metadata(self, column: str, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        sql = f"SELECT metadata FROM instances WHERE {column} = ? LIMIT 1"
        for key in keys:
            row = self._c.execute(sql, (key,)).fetchone()
            if row is not None:
                out[key] = row[0]
        return out

    # -- garbage --------------------------------------------------------------------------

    async def garbage(self, limit: int = 500) -> list[str]:
        return [r[0] for r in await self._run(self._fetchall, _S.select_garbage, (limit,))]

    async def forget_garbage(self, keys: Sequence[str]) -> None:
        if keys:
            await self._run(self._executemany_tx, _S.forget_garbage, [(k,) for k in keys])

    async def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        return await self._run(self._referenced_sync, list(keys))

    @_wrap_errors
    def _referenced_sync(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            batch = keys[i : i + 500]
            marks = ", ".join("?" * len(batch))
            for table in ("instances", "garbage"):
                sql = f"SELECT object_key FROM {table} WHERE object_key IN ({marks})"
                found.update(r[0] for r in self._c.execute(sql, batch))
        return found

    async def all_object_keys(self) -> AsyncIterator[list[str]]:
        after = ""
        while True:
            page = [r[0] for r in await self._run(self._fetchall, _S.key_page, (after, 1000))]
            if not page:
                return
            yield page
            after = page[-1]

    # -- outbox ---------------------------------------------------------------------------

    async def pending_events(self, limit: int = 100) -> list[OutboxEvent]:
        rows = await self._run(self._fetchall, _S.pending_events, (limit,))
        return [OutboxEvent(id=r[0], type=r[1], source=r[2], body=bytes(r[3]), attempts=r[4]) for r in rows]

    async def outbox_backlog(self) -> tuple[int, float | None]:
        rows = await self._run(self._fetchall, _OUTBOX_BACKLOG, ())
        return int(rows[0][0]), rows[0][1]

    async def mark_events_sent(self, ids: Sequence[str]) -> None:
        await self._run(self._executemany_tx, _S.mark_sent, [(time.time(), i) for i in ids])

    async def record_event_attempt(self, event_id: str) -> None:
        await self._run(self._executemany_tx, _S.record_attempt, [(event_id,)])

    @_wrap_errors
    def _executemany_tx(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self._transaction(lambda c: c.executemany(sql, params))

    async def claim_events(self, limit: int = 100, lease_seconds: float = 60.0) -> list[OutboxEvent]:
        rows = await self._run(self._claim_sync, limit, lease_seconds)
        return [OutboxEvent(id=r[0], type=r[1], source=r[2], body=bytes(r[3]), attempts=r[4]) for r in rows]

    @_wrap_errors
    def _claim_sync(self, limit: int, lease_seconds: float) -> list[tuple[Any, ...]]:
        # BEGIN IMMEDIATE serialises claimers (other processes on the same file included).
        now = time.time()

        def body(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return c.execute(_CLAIM_EVENTS, (now + lease_seconds, now, limit)).fetchall()

        return sorted(self._transaction(body), key=lambda r: (r[5], r[0]))

    async def release_events(self, ids: Sequence[str]) -> None:
        sql = "UPDATE outbox SET lease_until = NULL WHERE id = ?"
        await self._run(self._executemany_tx, sql, [(i,) for i in ids])

    async def enqueue_quiet_studies(
        self, quiet_before: float, make_event: QuietEventFactory, limit: int = 100
    ) -> int:
        return await self._run(self._quiet_sync, quiet_before, make_event, limit)

    @_wrap_errors
    def _quiet_sync(self, quiet_before: float, make_event: QuietEventFactory, limit: int) -> int:
        def body(c: sqlite3.Connection) -> int:
            rows = c.execute(_QUIET_STUDIES, (quiet_before, limit)).fetchall()
            events = [make_event(r[0], bytes(r[1])) for r in rows]
            self._enqueue(c, events, time.time())
            mark = "UPDATE studies SET quiet_sent = updated WHERE study_uid = ?"
            c.executemany(mark, [(r[0],) for r in rows])
            return len(rows)

        return self._transaction(body)


#: The outbox gauges (partial index ``outbox_pending``).
_OUTBOX_BACKLOG = "SELECT count(*), min(created) FROM outbox WHERE sent IS NULL"
_CLAIM_EVENTS = (
    "UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox WHERE sent IS NULL"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY created, id LIMIT ?)"
    " RETURNING id, type, source, body, attempts, created"
)
_QUIET_STUDIES = (
    "SELECT study_uid, attrs FROM studies WHERE updated <= ?"
    " AND (quiet_sent IS NULL OR quiet_sent < updated) ORDER BY updated LIMIT ?"
)


def _begin_immediate(c: sqlite3.Connection, timeout: float = 10.0) -> None:
    """BEGIN IMMEDIATE, waiting for another process' write transaction in short steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10, ... 100 ms between attempts; with several
    worker processes sharing one file, a writer mostly waits for a commit that takes a
    couple of milliseconds, and those long sleeps would dominate. (Same-process writers are
    already serialised by the single writer thread.)
    """
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            c.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.005)


def _read_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
    return row


def _read_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()
