"""Prometheus metrics (``/metrics``), correct with several uvicorn worker processes.

With ``--workers`` > 1 the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
any worker starts; every process then writes its samples to memory-mapped files there and a
scrape, answered by whichever worker, sums them (prometheus-client's multiprocess mode). With
one process, the samples live in memory. Importing this module reads that variable, so the
CLI sets it first.

Label values are bounded: route *templates* (never UIDs), a fixed set of methods, status codes,
DICOMweb transaction kinds, STOW failure reasons by DICOM status code.
"""

from __future__ import annotations

import functools
import os
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .instrumented import OpTimer
from .routes import operation_kind

#: The classic text format, which every Prometheus version scrapes (names are plain ASCII).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Request latencies: from a cached frame (sub-millisecond) to a large upload (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: DICOM failure reasons (PS3.18 Table 10.5.3-1) as label values.
FAILURE_REASONS = {
    0x0110: "processing_failure",
    0xA700: "out_of_resources",
    0xA900: "data_set_mismatch",
    0xC000: "cannot_understand",
    0xC122: "transfer_syntax_not_supported",
}


# ``*_created`` series double the exposition for nothing a dashboard uses.
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Pending:
    """One label set's requests since the last flush, in plain Python numbers."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "children", "count", "seconds")

    def __init__(self, children: tuple[Any, Any, Any, Any]) -> None:
        self.children = children
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.bytes_in = 0
        self.bytes_out = 0


class Metrics:
    """The process's metric families.

    The request path only adds to plain numbers of its label set (a dict lookup, a bisect,
    five additions: about a microsecond); :meth:`flush` moves them into the Prometheus
    families (locks, and in multiprocess mode memory-mapped files) once a second and before
    every scrape. A scrape answered by one worker therefore sees the other workers' requests
    of the last second at most one second late; its own, exactly.
    """

    def __init__(self, registry: CollectorRegistry, roots: Sequence[str]) -> None:
        self._roots = tuple(roots)
        r = registry
        self.requests = Counter(
            "dicomweb_http_requests", "HTTP requests by route template, method and status",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        # ``kind`` (the DICOMweb transaction: stow, search-studies, metadata, frames, rendered,
        # ...; "other" for health, metrics, UI) follows from the route and the method, so it
        # adds no series: QIDO/WADO latency by kind without a second histogram per request.
        self.duration = Histogram(
            "dicomweb_http_request_duration_seconds", "HTTP request latency (until the last body byte)",
            ["method", "route", "kind"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.bytes_in = Counter("dicomweb_http_request_bytes", "Request body bytes", ["route"], registry=r)
        self.bytes_out = Counter("dicomweb_http_response_bytes", "Response body bytes", ["route"], registry=r)
        self._in_flight_gauge = Gauge(
            "dicomweb_http_requests_in_flight", "Requests being served",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        #: Requests being served by this process (the middleware counts; the flush publishes).
        self.in_flight = 0
        self.stow_stored = Counter("dicomweb_stow_instances_stored", "Instances stored by STOW", registry=r)
        self.stow_failed = Counter(
            "dicomweb_stow_instances_failed", "Instances STOW refused, by DICOM failure reason",
            ["reason"], registry=r,
        )  # fmt: skip
        self.stow_bytes = Counter("dicomweb_stow_stored_bytes", "Bytes of the instances stored", registry=r)
        self.events_delivered = Counter("dicomweb_events_delivered", "Events the sink accepted", registry=r)
        self.event_failures = Counter(
            "dicomweb_event_delivery_failures", "Event deliveries the sink refused or missed", registry=r
        )
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        store_seconds = Histogram(
            "dicomweb_store_operation_duration_seconds",
            "Object store operations (put, get, get_range, head, delete)",
            ["op"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        store_errors = Counter("dicomweb_store_errors", "Store operations that failed", ["op"], registry=r)
        catalog_seconds = Histogram(
            "dicomweb_catalog_operation_duration_seconds",
            "Catalog queries and transactions (search, get_instance, list_instances, upsert, delete)",
            ["op"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        catalog_errors = Counter("dicomweb_catalog_errors", "Catalog failures", ["op"], registry=r)
        self.store_ops = OpTimer(store_seconds, store_errors, LATENCY_BUCKETS)
        self.catalog_ops = OpTimer(catalog_seconds, catalog_errors, LATENCY_BUCKETS)

    def observe(
        self, route: str, method: str, status: int, bytes_in: int, bytes_out: int, seconds: float
    ) -> None:
        key = (route, method, status)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(self._make_children(route, method, status))
        pending.count += 1
        pending.seconds += seconds
        pending.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        pending.bytes_in += bytes_in
        pending.bytes_out += bytes_out

    def flush(self, scrapes: int = 0) -> None:
        """Publish what :meth:`observe` gathered, and the in-flight count less ``scrapes`` (a
        scrape does not count itself: the gauge says how busy the service is)."""
        for p in self._pending.values():
            if not p.count:
                continue
            requests, duration, received, sent = p.children
            requests.inc(p.count)
            # A histogram child keeps one (non-cumulative) value per bucket and a sum; adding
            # a batch to them is what ``observe`` does one observation at a time.
            duration._sum.inc(p.seconds)
            for bucket, n in zip(duration._buckets, p.buckets, strict=True):
                if n:
                    bucket.inc(n)
            if p.bytes_in:
                received.inc(p.bytes_in)
            if p.bytes_out:
                sent.inc(p.bytes_out)
            p.count, p.seconds, p.bytes_in, p.bytes_out = 0, 0.0, 0, 0
            p.buckets = [0] * len(p.buckets)
        self._in_flight_gauge.set(self.in_flight - scrapes)
        self.store_ops.flush()
        self.catalog_ops.flush()

    def _make_children(self, route: str, method: str, status: int) -> tuple[Any, Any, Any, Any]:
        label_method = method if method in _METHODS else "other"
        kind = operation_kind(route, label_method, self._roots) or "other"
        return (
            self.requests.labels(label_method, route, str(status)),
            self.duration.labels(label_method, route, kind),
            self.bytes_in.labels(route),
            self.bytes_out.labels(route),
        )

    def events(self, delivered: int, failed: int) -> None:
        if delivered:
            self.events_delivered.inc(delivered)
        if failed:
            self.event_failures.inc(failed)

    def stow(self, stored_sizes: Sequence[int], failure_codes: Sequence[int]) -> None:
        if stored_sizes:
            self.stow_stored.inc(len(stored_sizes))
            self.stow_bytes.inc(sum(stored_sizes))
        for code in failure_codes:
            self.stow_failed.labels(FAILURE_REASONS.get(code, "other")).inc()


#: The roots under which routes are DICOMweb transactions (``operation_kind``).
DICOMWEB_ROOTS = ("/dicomweb", "/stow-rs", "/wado-rs")


@functools.cache
def process_metrics() -> Metrics:
    """The process's :class:`Metrics` (metric families register once per process)."""
    return Metrics(CollectorRegistry(auto_describe=False) if multiprocess() else REGISTRY, DICOMWEB_ROOTS)


class _Backlog:
    """The outbox gauges, computed at scrape time from the catalog (one number per cluster,
    whichever worker or replica answers)."""

    def __init__(self, pending: int, oldest: float | None) -> None:
        self.pending = pending
        self.oldest = oldest

    def collect(self) -> list[Metric]:
        pending = GaugeMetricFamily("dicomweb_outbox_pending_events", "Undelivered events in the outbox")
        pending.add_metric([], self.pending)
        age = GaugeMetricFamily(
            "dicomweb_outbox_oldest_pending_age_seconds", "Age of the oldest undelivered event (0: none)"
        )
        age.add_metric([], max(0.0, time.time() - self.oldest) if self.oldest is not None else 0.0)
        return [pending, age]


def exposition(backlog: tuple[int, float | None] | None = None) -> bytes:
    """The text exposition of every process's samples (and the outbox gauges, when given)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry(auto_describe=False)
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if backlog is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_Backlog(*backlog))
        text += generate_latest(extra)
    return text


def process_exited() -> None:
    """Drop this process's live gauges (in-flight) from the multiprocess files."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
