"""The PostgreSQL catalog (psycopg 3, async, with a connection pool).

Writers of the same study are serialised by a transaction-scoped advisory lock on the
study UID: the study/series aggregates are recounted inside the writing transaction, and
under READ COMMITTED two concurrent writers would otherwise each miss the other's row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from .rows import RECORD_COLUMNS, instance_rows, last_per_key, record_from_row
from .schema import CREATE_VERSION_TABLE, pending_migrations
from .sql import instance_filter, statements, study_count_params
from .writes import CurrentRow, WritePlan, plan_writes

if TYPE_CHECKING:
    from .qido import QidoQuery

_S = statements("postgres")
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# Any constant works; it only has to differ from hashtextextended() of a study UID in practice.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7242519031)"
_DEADLOCK_RETRIES = 3

Cursor = AsyncCursor[tuple[Any, ...]]


class PostgresCatalog:
    """Catalog in a PostgreSQL database reached by ``dsn`` (``postgresql://user@host:port/db``)."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None

    def _where(self) -> str:
        # The DSN without a password, for error messages.
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        host = f"{info.get('host', '')}:{info.get('port', 5432)}"
        return f"{info.get('user', '')}@{host}/{info.get('dbname', '')}"

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            # One direct connection first: fails fast with the server's own reason, where the
            # pool would retry silently until its timeout.
            probe = await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=max(1, int(self._timeout))
            )
            await probe.close()
        except psycopg.Error as exc:
            raise CatalogError(f"postgres catalog {self._where()} unreachable: {str(exc).strip()}") from exc
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=self._timeout,
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise CatalogError(f"postgres catalog {self._where()} unreachable: {exc}") from exc
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Cursor]:
        """A cursor inside one transaction; database errors become :class:`CatalogError`."""
        if self._pool is None:
            raise CatalogError("postgres catalog is not open")
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.errors.DeadlockDetected:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise CatalogError(f"postgres catalog: {exc}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Cursor]:
        """A cursor on an autocommit connection: one round trip per read, no BEGIN/COMMIT."""
        if self._pool is None:
            raise CatalogError("postgres catalog is not open")
        try:
            async with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except (psycopg.Error, PoolTimeout) as exc:
            raise CatalogError(f"postgres catalog: {exc}") from exc

    async def _migrate(self) -> None:
        async with self._tx() as cur:
            await cur.execute(_MIGRATION_LOCK)
            await cur.execute(CREATE_VERSION_TABLE)
            await cur.execute("SELECT max(version) FROM schema_version")
            row = await cur.fetchone()
            current = (row[0] if row else None) or 0
            for version, stmts in pending_migrations("postgres", current, "postgres catalog"):
                for stmt in stmts:
                    await cur.execute(stmt)  # DDL text from schema.py
                await cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    async def check(self) -> None:
        async with self._read() as cur:
            await cur.execute("SELECT 1 FROM schema_version LIMIT 1")

    # -- writes ---------------------------------------------------------------------------

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        return (await self.upsert_instances([record], events))[0]

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        if not records:
            return []
        return (await self._write(list(records), None, events, "replace")).previous

    async def store_instances(
        self, items: Sequence[NewInstance], policy: DuplicatePolicy = "replace"
    ) -> StoreResult:
        if not items:
            return StoreResult([], [])
        plan = await self._write([i.record for i in items], [i.events for i in items], (), policy)
        return StoreResult(plan.decisions, plan.garbage)

    async def _write(
        self,
        records: list[InstanceRecord],
        item_events: list[Sequence[OutboxEvent]] | None,
        events: Sequence[OutboxEvent],
        policy: DuplicatePolicy,
    ) -> WritePlan:
        now = time.time()
        rows = [instance_rows(r, now) for r in records]
        uids = sorted({r.sop_instance_uid for r in records})
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with self._tx() as cur:
                    # The SOP Instance UIDs first: two stores of one UID (in any study) are
                    # serialised even when no row exists yet, so each sees the other's row.
                    await cur.executemany(_LOCK, [("sop:" + u,) for u in uids])
                    locked = sorted({r.study_uid for r in records})
                    await cur.executemany(_LOCK, [(s,) for s in locked])
                    await cur.execute(
                        "SELECT sop_instance_uid, study_uid, series_uid, object_key, digest FROM instances"
                        " WHERE sop_instance_uid = ANY(%s) FOR UPDATE",
                        (uids,),
                    )
                    current = {r[0]: CurrentRow(*r[1:]) for r in await cur.fetchall()}
                    # An instance moving away from another study: that study's counts change too.
                    moved_from = sorted({o.study_uid for o in current.values()} - set(locked))
                    await cur.executemany(_LOCK, [(s,) for s in moved_from])
                    plan = plan_writes(records, current, policy)
                    if plan.replaced:
                        await cur.execute(
                            "DELETE FROM seq_attrs WHERE sop_instance_uid = ANY(%s)", (plan.replaced,)
                        )
                    winners = [rows[i] for i in plan.apply]
                    if winners:
                        await cur.executemany(_S.upsert_instance, [r.instance for r in winners])
                        await cur.executemany(_S.upsert_series, last_per_key([r.series for r in winners]))
                        await cur.executemany(_S.upsert_study, last_per_key([r.study for r in winners]))
                    seq = [s for r in winners for s in r.seq]
                    if seq:
                        await cur.executemany(_S.insert_seq, seq)
                    await self._refresh(cur, plan.series, sorted(plan.studies))
                    chosen = (
                        [e for i in plan.apply for e in item_events[i]] if item_events is not None else []
                    )
                    await self._enqueue(cur, [*events, *chosen], now)
                    if plan.garbage:
                        await cur.executemany(_S.insert_garbage, [(k, now) for k in plan.garbage])
            except psycopg.errors.DeadlockDetected as exc:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise CatalogError(f"postgres catalog: {exc}") from exc
                continue
            return plan
        raise AssertionError("unreachable")

    @staticmethod
    async def _refresh(cur: Cursor, series: Iterable[str], studies: Iterable[str]) -> None:
        series_params = [(s,) for s in series]
        if series_params:
            await cur.executemany(_S.count_series, series_params)
            await cur.executemany(_S.drop_empty_series, series_params)
        study_params = [(s,) for s in studies]
        if study_params:
            await cur.executemany(_S.count_study, [study_count_params(s) for (s,) in study_params])
            await cur.executemany(_S.drop_empty_study, study_params)

    @staticmethod
    async def _enqueue(cur: Cursor, events: Sequence[OutboxEvent], now: float) -> None:
        if events:
            await cur.executemany(
                _S.insert_event, [(e.id, e.type, e.source, e.body, e.attempts, now) for e in events]
            )

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] | EventsFor = (),
    ) -> list[InstanceRecord]:
        where, params = instance_filter("%s", study_uid, series_uid, sop_instance_uid)
        async with self._tx() as cur:
            await cur.execute(_LOCK, (study_uid,))
            await cur.execute(f"DELETE FROM seq_attrs WHERE {where}", params)
            await cur.execute(
                f"DELETE FROM instances WHERE {where} RETURNING {RECORD_COLUMNS}",
                params,
            )
            records = [record_from_row(r) for r in await cur.fetchall()]
            now = time.time()
            if records:
                await self._refresh(cur, dict.fromkeys(r.series_uid for r in records), [study_uid])
                await cur.executemany(_S.insert_garbage, [(r.object_key, now) for r in records])
            await self._enqueue(cur, events_for(events, records), now)
        return records

    # -- reads ----------------------------------------------------------------------------

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None:
        where, params = instance_filter("%s", study_uid, series_uid, sop_instance_uid)
        async with self._read() as cur:
            await cur.execute(_S.select_records(where), params, binary=True)
            row = await cur.fetchone()
        return record_from_row(row) if row is not None else None

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        where, params = instance_filter("%s", study_uid, series_uid, None)
        sql = _S.select_records(where) + " ORDER BY series_uid, instance_number NULLS LAST, sop_instance_uid"
        async with self._read() as cur:
            await cur.execute(sql, params, binary=True)
            rows = await cur.fetchall()
        return [record_from_row(r) for r in rows]

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        from . import qidosql

        plan = qidosql.plan(query, "postgres")
        extra: dict[str, bytes] = {}
        async with self._read() as cur:
            # Binary results: bytea arrives as raw bytes instead of hex text to decode. Not
            # prepared: a generic plan cannot use an index for a LIKE prefix given as a parameter.
            await cur.execute(plan.sql, plan.params, prepare=False, binary=True)
            rows = await cur.fetchall()
            if plan.needs_metadata and rows:
                col = plan.level_key_column
                await cur.execute(
                    f"SELECT k, (SELECT metadata FROM instances WHERE {col} = k LIMIT 1)"
                    " FROM unnest(%s::text[]) AS k",
                    ([r[0] for r in rows],),
                    binary=True,
                )
                extra = {k: bytes(m) for k, m in await cur.fetchall() if m is not None}
        return qidosql.results(query, rows, extra, base_url)

    # -- garbage --------------------------------------------------------------------------

    async def garbage(self, limit: int = 500) -> list[str]:
        async with self._read() as cur:
            await cur.execute(_S.select_garbage, (limit,))
            return [r[0] for r in await cur.fetchall()]

    async def forget_garbage(self, keys: Sequence[str]) -> None:
        if keys:
            async with self._tx() as cur:
                await cur.execute("DELETE FROM garbage WHERE object_key = ANY(%s)", (list(keys),))

    async def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self._read() as cur:
            await cur.execute(
                "SELECT object_key FROM instances WHERE object_key = ANY(%s)"
                " UNION SELECT object_key FROM garbage WHERE object_key = ANY(%s)",
                (list(keys), list(keys)),
            )
            return {r[0] for r in await cur.fetchall()}

    async def all_object_keys(self) -> AsyncIterator[list[str]]:
        after = ""
        while True:
            async with self._read() as cur:
                await cur.execute(_S.key_page, (after, 1000))
                page = [r[0] for r in await cur.fetchall()]
            if not page:
                return
            yield page
            after = page[-1]

    # -- outbox ---------------------------------------------------------------------------

    async def pending_events(self, limit: int = 100) -> list[OutboxEvent]:
        async with self._read() as cur:
            await cur.execute(_S.pending_events, (limit,))
            rows = await cur.fetchall()
        return [OutboxEvent(id=r[0], type=r[1], source=r[2], body=bytes(r[3]), attempts=r[4]) for r in rows]

    async def outbox_backlog(self) -> tuple[int, float | None]:
        async with self._read() as cur:
            await cur.execute(_OUTBOX_BACKLOG)
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), row[1]

    async def mark_events_sent(self, ids: Sequence[str]) -> None:
        if ids:
            now = time.time()
            async with self._tx() as cur:
                await cur.executemany(_S.mark_sent, [(now, i) for i in ids])

    async def record_event_attempt(self, event_id: str) -> None:
        async with self._tx() as cur:
            await cur.execute(_S.record_attempt, (event_id,))

    async def claim_events(self, limit: int = 100, lease_seconds: float = 60.0) -> list[OutboxEvent]:
        now = time.time()
        async with self._tx() as cur:
            # SKIP LOCKED: concurrent claimers (other replicas) take disjoint batches.
            await cur.execute(_CLAIM_EVENTS, (now + lease_seconds, now, limit))
            rows = sorted(await cur.fetchall(), key=lambda r: (r[5], r[0]))
        return [OutboxEvent(id=r[0], type=r[1], source=r[2], body=bytes(r[3]), attempts=r[4]) for r in rows]

    async def release_events(self, ids: Sequence[str]) -> None:
        if ids:
            async with self._tx() as cur:
                await cur.execute("UPDATE outbox SET lease_until = NULL WHERE id = ANY(%s)", (list(ids),))

    async def enqueue_quiet_studies(
        self, quiet_before: float, make_event: QuietEventFactory, limit: int = 100
    ) -> int:
        async with self._tx() as cur:
            # A study being written is locked by its writer: skipped now, seen next round
            # (its ``updated`` moves on anyway).
            await cur.execute(_QUIET_STUDIES, (quiet_before, limit))
            rows = await cur.fetchall()
            if not rows:
                return 0
            events = [make_event(r[0], bytes(r[1])) for r in rows]
            await self._enqueue(cur, events, time.time())
            await cur.execute(
                "UPDATE studies SET quiet_sent = updated WHERE study_uid = ANY(%s)", ([r[0] for r in rows],)
            )
        return len(rows)


#: The outbox gauges (partial index ``outbox_pending``).
_OUTBOX_BACKLOG = "SELECT count(*), min(created) FROM outbox WHERE sent IS NULL"
_CLAIM_EVENTS = (
    "UPDATE outbox SET lease_until = %s WHERE id IN (SELECT id FROM outbox WHERE sent IS NULL"
    " AND (lease_until IS NULL OR lease_until < %s) ORDER BY created, id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, type, source, body, attempts, created"
)
_QUIET_STUDIES = (
    "SELECT study_uid, attrs FROM studies WHERE updated <= %s"
    " AND (quiet_sent IS NULL OR quiet_sent < updated) ORDER BY updated LIMIT %s FOR UPDATE SKIP LOCKED"
)
