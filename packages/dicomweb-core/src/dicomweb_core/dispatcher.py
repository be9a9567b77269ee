"""Delivers outbox events: at least once, in the background, with exponential backoff.

The catalog holds every event in its outbox table from the transaction that stored the
instance; this loop sends pending ones and marks them sent. A broker outage only delays
delivery; a crash loses nothing (pending rows are sent after restart, possibly twice —
consumers dedupe by ``ce-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .catalog.base import Catalog
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
        batch: int = 100,
    ) -> None:
        self._catalog = catalog
        self._sender = sender
        self._poll = poll_interval
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

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

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the outbox is empty (tests and graceful shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not await self._catalog.pending_events(limit=1):
                return
            self.notify()
            await asyncio.sleep(0.05)
        raise TimeoutError("outbox not drained")

    async def _run(self) -> None:
        delay = self._backoff
        while True:
            try:
                delivered_all = await self._deliver_pending()
            except DicomwebError as exc:
                log.warning("outbox read failed: %s", exc.reason)
                delivered_all = False
            except Exception:
                log.exception("outbox dispatcher error")
                delivered_all = False
            if delivered_all:
                delay = self._backoff
                timeout = self._poll
            else:
                timeout = delay
                delay = min(delay * 2, self._max_backoff)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver_pending(self) -> bool:
        while True:
            events = await self._catalog.pending_events(limit=self._batch)
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
                        return False
                    sent.append(event.id)
            finally:
                if sent:
                    await self._catalog.mark_events_sent(sent)
