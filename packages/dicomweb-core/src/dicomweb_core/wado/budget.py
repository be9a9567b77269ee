"""The shared budget for heavy retrieve work: conversions, frame decodes, renders.

Each such job may hold up to ``MAX_DECODED_SIZE`` of memory in a worker thread; at most
``DECODE_CONCURRENCY`` run at once, the others wait their turn (the event loop never does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from ..limits import Limits

T = TypeVar("T")


class Budget:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._slots = asyncio.Semaphore(self.limits.decode_concurrency)

    async def run(self, fn: Callable[..., T], /, *args: object) -> T:
        """``fn(*args)`` in a worker thread, within the concurrency budget."""
        async with self._slots:
            return await asyncio.to_thread(fn, *args)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for a whole job (its reads included), then use :meth:`run_held`."""
        async with self._slots:
            yield

    @staticmethod
    async def run_held(fn: Callable[..., T], /, *args: object) -> T:
        """``fn(*args)`` in a worker thread, inside a :meth:`slot` already held."""
        return await asyncio.to_thread(fn, *args)
