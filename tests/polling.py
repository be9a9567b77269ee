"""Polling with a deadline: tests wait for a state the code under test reaches, never for a
fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "the condition") -> T:
    """Call ``check`` until it returns something truthy, and return that; fail after ``timeout``
    seconds with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(0.02)
