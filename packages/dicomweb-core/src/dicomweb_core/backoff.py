"""Exponential backoff between retries: the one schedule the event sender and the outbox
dispatcher share."""

from __future__ import annotations


class Backoff:
    """Delays of ``initial``, ``2 * initial``, ``4 * initial``, ... capped at ``maximum``;
    :meth:`reset` starts again from ``initial`` (after a success)."""

    __slots__ = ("_delay", "initial", "maximum")

    def __init__(self, initial: float, maximum: float) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial} and {maximum}")
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def next(self) -> float:
        """The delay to wait now; the following one doubles, up to ``maximum``."""
        delay = self._delay
        self._delay = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._delay = self.initial
