"""Reads a ``/metrics`` answer into samples a test can compare."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


def scrape(base: str) -> dict[Key, float]:
    r = httpx.get(base + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def parse(text: str) -> dict[Key, float]:
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def poll(base: str, ok: Callable[[dict[Key, float]], bool], timeout: float = 20.0) -> dict[Key, float]:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base)
        if ok(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("metrics never reached the expected state")
        time.sleep(0.1)
