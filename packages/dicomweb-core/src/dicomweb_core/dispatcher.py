"""Delivers outbox events: at least once, in the background, with exponential backoff.

The catalog holds every event in its outbox table from the transaction that stored the
instance; this loop sends pending ones and marks them sent. A broker outage only delays
delivery; a crash loses nothing (pending rows are sent after restart, possibly twice —
consumers dedupe by ``ce-id``).

Replicas share the outbox: each claims a batch with a lease (``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so two replicas never send the same event at the same time; an
event is sent twice only when its holder died (or stalled past the lease) before marking it.

With ``quiet_seconds`` set, the same loop also turns studies that have not changed for that
long into a study-level event (``StudyRevisionEvent``), through the outbox as well: the state
lives in the catalog, so it survives restarts and scale-to-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .backoff import Backoff
from .catalog.base import Catalog, OutboxEvent
from .errors import DicomwebError
from .events import EventSender

log = logging.getLogger("dicomweb.events")


class OutboxDispatcher:
    def __init__(
        self,
        catalog: Catalog,
        sender: EventSender,
        *,
        poll_interval: float = 1.0,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        # Small batches under a short lease: a crashed holder delays its events by at most
        # the lease, and a slow sink rarely outlasts it (which would mean a second copy).
        batch: int = 20,
        lease_seconds: float = 15.0,
        quiet_seconds: float = 0.0,
        quiet_event: Callable[[str, bytes], OutboxEvent] | None = None,
    ) -> None:
        self._catalog = catalog
        self._sender = sender
        self._poll = poll_interval
        self._backoff = Backoff(backoff, max_backoff)
        self._batch = batch
        self._lease = lease_seconds
        self._quiet = quiet_seconds if quiet_event is not None else 0.0
        self._quiet_event = quiet_event
        if self._quiet:
            # A quiet study is noticed within a fraction of the quiet time.
            self._poll = min(self._poll, max(0.05, self._quiet / 4))
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        #: Told (delivered, failed) after each attempt: the metrics hook.
        self.on_result: Callable[[int, int], None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    def notify(self) -> None:
        """New events were committed: deliver them now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._sender.close()

    async def _run(self) -> None:
        self._backoff.reset()
        while True:
            try:
                await self._enqueue_quiet_studies()
                delivered_all = await self._deliver_pending()
            except DicomwebError as exc:
                log.warning("outbox read failed: %s", exc.reason)
                delivered_all = False
            except Exception:
                log.exception("outbox dispatcher error")
                delivered_all = False
            if delivered_all:
                self._backoff.reset()
                timeout = self._poll
            else:
                timeout = self._backoff.next()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _enqueue_quiet_studies(self) -> None:
        if not self._quiet or self._quiet_event is None:
            return
        before = time.time() - self._quiet
        while True:
            found = await self._catalog.enqueue_quiet_studies(before, self._quiet_event, self._batch)
            if found < self._batch:
                return

    async def _deliver_pending(self) -> bool:
        while True:
            events = await self._catalog.claim_events(self._batch, self._lease)
            if not events:
                return True
            sent: list[str] = []
            try:
                for event in events:
                    try:
                        await self._sender.send_once(event)
                    except DicomwebError as exc:
                        log.warning("event %s not delivered yet: %s", event.id, exc.reason)
                        await self._catalog.record_event_attempt(event.id)
                        if self.on_result is not None:
                            self.on_result(0, 1)
                        return False
                    sent.append(event.id)
            finally:
                if sent:
                    await self._catalog.mark_events_sent(sent)
                    if self.on_result is not None:
                        self.on_result(len(sent), 0)
                done = set(sent)
                unsent = [e.id for e in events if e.id not in done]
                if unsent:
                    # Shielded: a cancelled dispatcher (shutdown) still hands its batch back.
                    await asyncio.shield(self._catalog.release_events(unsent))
