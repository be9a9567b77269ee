"""The push engine: walk, probe, batch, send with retries, journal, count.

One producer walks the items in order, reads each header in a worker thread (is it DICOM,
which SOP Instance UID) and fills batches; ``concurrency`` senders take batches from a
bounded queue (so at most ``2 x concurrency`` batches are ready ahead of the network) and
POST them. What a server acknowledges is written to the journal as each answer arrives.

Retries: a connection error, a timeout, 408/429/5xx, and per-instance failures that can
pass on a second try (0x0110, 0xA7xx) are retried with exponential backoff and full jitter
(honouring ``Retry-After``); any other 4xx fails the batch with the server's reason, and a
per-instance refusal (0xC000, ...) fails that instance only, never re-sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from .answer import Answer, describe, is_transient, parse_answer, reason_from_body
from .body import Framing, ItemReadError, stream_body
from .journal import Journal
from .options import PushOptions
from .probe import Header, NotDicomError, probe
from .progress import Progress, make_progress
from .sources import Item, Skipped, walk
from .summary import Tally

log = logging.getLogger("dicomweb.push")
_PROBE_GROUP = 32
_TRANSIENT_HTTP = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Ready:
    item: Item
    header: Header


@dataclass(frozen=True)
class NotSent:
    """Why an item is not sent: ``skipped`` (not DICOM; not an error) or failed (unreadable)."""

    reason: str
    skipped: bool


def _probe_all(items: Sequence[Item]) -> list[Header | NotSent]:
    out: list[Header | NotSent] = []
    for item in items:
        try:
            with item.source.open() as f:
                out.append(probe(f))
        except NotDicomError as exc:
            out.append(NotSent(str(exc), skipped=True))
        except OSError as exc:
            out.append(NotSent(f"cannot read: {exc}", skipped=False))
    return out


class Pusher:
    def __init__(self, options: PushOptions, tally: Tally) -> None:
        self.o = options
        self.tally = tally
        self.framing = Framing.new()
        self.journal = Journal(options.journal, options.url) if options.journal else None
        self.progress: Progress | None = None
        self._queue: asyncio.Queue[list[Ready] | None] = asyncio.Queue(maxsize=2 * options.concurrency)
        self._unsent: set[Item] = set()

    async def run(self) -> None:
        walked = await asyncio.to_thread(walk, list(self.o.paths))
        try:
            await self._run(walked.items, walked.skipped)
        finally:
            await asyncio.to_thread(walked.close)
            if self.journal is not None:
                self.journal.close()

    async def _run(self, items: list[Item], unreadable: Sequence[Skipped]) -> None:
        for s in unreadable:
            self.tally.failed.append((s.key, s.reason))
        if self.o.resume and self.journal is not None:
            acked = self.journal.acknowledged()
            todo = []
            for item in items:
                if acked.get(item.key) == (item.size, item.mtime_ns):
                    self.tally.skipped.append((item.key, "already acknowledged (journal)"))
                else:
                    todo.append(item)
            items = todo
        self._unsent = set(items)
        self.progress = make_progress(
            len(items), sum(i.size for i in items), interval=self.o.progress_interval
        )
        headers = {"Accept": "application/dicom+json", "Accept-Encoding": "identity"}
        if self.o.token:
            headers["Authorization"] = f"Bearer {self.o.token}"
        limits = httpx.Limits(
            max_connections=self.o.concurrency, max_keepalive_connections=self.o.concurrency
        )
        timeout = httpx.Timeout(self.o.timeout, connect=min(30.0, self.o.timeout))
        try:
            async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
                senders = [asyncio.create_task(self._sender(client)) for _ in range(self.o.concurrency)]
                try:
                    await self._produce(items)
                    for _ in senders:
                        await self._queue.put(None)
                    await asyncio.gather(*senders)
                finally:
                    for task in senders:
                        task.cancel()
                    await asyncio.gather(*senders, return_exceptions=True)
        finally:
            self.progress.close()
            self.tally.not_sent = len(self._unsent)

    # -- producer ---------------------------------------------------------------------------
    async def _produce(self, items: list[Item]) -> None:
        batch: list[Ready] = []
        nbytes = 0
        for start in range(0, len(items), _PROBE_GROUP):
            group = items[start : start + _PROBE_GROUP]
            for item, result in zip(group, await asyncio.to_thread(_probe_all, group), strict=True):
                if isinstance(result, NotSent):
                    item.source.release()
                    if result.skipped:
                        self._settle(item, skipped=result.reason)
                    else:
                        self._settle(item, failed=result.reason)
                    continue
                if self.o.study and result.study_instance_uid != self.o.study:
                    item.source.release()
                    self._settle(item, failed=f"belongs to study {result.study_instance_uid}, not --study")
                    continue
                if batch and (len(batch) >= self.o.batch.files or nbytes + item.size > self.o.batch.nbytes):
                    await self._queue.put(batch)
                    batch, nbytes = [], 0
                batch.append(Ready(item, result))
                nbytes += item.size
        if batch:
            await self._queue.put(batch)

    # -- senders ----------------------------------------------------------------------------
    async def _sender(self, client: httpx.AsyncClient) -> None:
        while (batch := await self._queue.get()) is not None:
            try:
                await self._send(client, batch)
            finally:
                for ready in batch:
                    ready.item.source.release()

    async def _send(self, client: httpx.AsyncClient, batch: list[Ready]) -> None:
        pending = list(batch)
        attempt = 0
        while pending:
            wait, reason = await self._attempt(client, pending)
            if reason is None:
                return
            attempt += 1
            if attempt > self.o.retries:
                for ready in pending:
                    self._settle(ready.item, failed=f"gave up after {attempt} attempts: {reason}")
                return
            delay = random.uniform(0, min(self.o.backoff_max, self.o.backoff * 2 ** (attempt - 1)))
            delay = max(delay, min(wait or 0.0, self.o.backoff_max))
            log.info("push: %d instance(s) will be retried in %.1f s (%s)", len(pending), delay, reason)
            await asyncio.sleep(delay)

    async def _attempt(
        self, client: httpx.AsyncClient, pending: list[Ready]
    ) -> tuple[float | None, str | None]:
        """One POST of ``pending``. Settles what it can and removes it from ``pending``;
        returns (Retry-After, reason) when what is left should be retried, else (None, None)."""
        items = [r.item for r in pending]
        try:
            response = await client.post(
                self.o.url,
                content=stream_body(self.framing, items, self.o.chunk),
                headers={
                    "Content-Type": self.framing.content_type,
                    "Content-Length": str(self.framing.length(items)),
                },
            )
        except ItemReadError as exc:
            self._settle(exc.item, failed=exc.reason)
            pending[:] = [r for r in pending if r.item is not exc.item]
            return 0.0, f"{exc.item.key} could not be read" if pending else None
        except httpx.HTTPError as exc:  # connection refused/reset, timeouts, protocol errors
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        status = response.status_code
        if status in _TRANSIENT_HTTP or status >= 500:
            return _retry_after(response), f"HTTP {status}: {reason_from_body(response.content)}"
        if status in (200, 202, 409) or (400 <= status < 500 and _looks_like_answer(response)):
            try:
                answer = parse_answer(response.content)
            except ValueError as exc:
                if status == 200:  # every part stored, whatever the body says
                    answer = Answer(stored={r.header.sop_instance_uid for r in pending})
                else:
                    for r in pending:
                        self._settle(r.item, failed=f"HTTP {status}: {exc}")
                    pending.clear()
                    return None, None
            return None, self._apply(answer, pending, status)
        reason = f"HTTP {status}: {reason_from_body(response.content) or response.reason_phrase}"
        for r in pending:
            self._settle(r.item, failed=reason)
        pending.clear()
        return None, None

    def _apply(self, answer: Answer, pending: list[Ready], status: int) -> str | None:
        acked = [r for r in pending if r.header.sop_instance_uid in answer.stored]
        if self.journal is not None and acked:
            self.journal.record(
                (r.item.key, r.item.size, r.item.mtime_ns, r.header.sop_instance_uid) for r in acked
            )
        for r in acked:
            self._settle(r.item, stored=True)
        retry: list[Ready] = []
        reasons: list[str] = []
        for r in pending:
            uid = r.header.sop_instance_uid
            if uid in answer.stored:
                continue
            code = answer.failed.get(uid)
            if code is None:
                retry.append(r)
                reasons.append(f"HTTP {status}: instance missing from the answer")
            elif is_transient(code):
                retry.append(r)
                reasons.append(f"refused for now: {describe(code)}")
            else:
                self._settle(r.item, failed=f"refused: {describe(code)}")
        pending[:] = retry
        return reasons[0] if retry else None

    def _settle(self, item: Item, *, stored: bool = False, skipped: str = "", failed: str = "") -> None:
        if item not in self._unsent:
            return
        self._unsent.discard(item)
        if stored:
            self.tally.stored += 1
            self.tally.stored_bytes += item.size
        elif skipped:
            self.tally.skipped.append((item.key, skipped))
        else:
            self.tally.failed.append((item.key, failed))
        if self.progress is not None:
            self.progress.advance(1, item.size)


def _looks_like_answer(response: httpx.Response) -> bool:
    """A 4xx carrying a STOW answer with per-instance failures (Orthanc answers 400 so)."""
    return response.content.lstrip()[:1] in (b"{", b"[") and b'"00081198"' in response.content[:65536]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
