"""``/metrics`` against the real server: route templates (never UIDs), STOW outcomes, the outbox
gauges, and correct totals with several worker processes."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.dicomfiles import make_instance, multipart_related, uid
from tests.e2e.test_wado_retrieve import store
from tests.observability.promtext import parse, poll, scrape, value
from tests.servers import ServiceProcess, free_port

UID_IN_TEXT = re.compile(r"\d+\.\d+\.\d+\.\d+\.\d+")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("metrics")
    s = ServiceProcess("serve", args=["--data-dir", str(tmp / "data")], log_path=tmp / "log")
    s.start()
    yield s
    s.stop()


def test_requests_are_labelled_by_route_template_never_by_uid(server: ServiceProcess) -> None:
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(server, [blob])
    study = f"{server.base}/dicomweb/studies/{ds.StudyInstanceUID}"
    assert httpx.get(study + "/metadata").status_code == 200
    assert httpx.get(study + "/series").status_code == 200
    assert httpx.get(f"{server.base}/wado-rs/studies/{uid()}/metadata").status_code == 404
    assert httpx.get(f"{server.base}/no/such/{uid()}").status_code == 404
    instance = f"{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert httpx.get(instance, headers={"Accept": "application/dicom"}).content == blob

    total = "dicomweb_http_requests_total"
    # Each worker publishes its counts within a second.
    poll(server.base, lambda m: value(m, total, method="GET", route="unmatched", status="404") >= 1)
    time.sleep(1.2)
    r = httpx.get(server.base + "/metrics")
    assert UID_IN_TEXT.search(r.text) is None, "a UID leaked into a label"
    m = parse(r.text)
    assert value(m, total, method="POST", route="/dicomweb/studies", status="200") >= 1
    assert value(m, total, method="GET", route="/dicomweb/studies/{study}/metadata", status="200") >= 1
    assert value(m, total, method="GET", route="/dicomweb/studies/{study}/series", status="200") >= 1
    assert value(m, total, method="GET", route="/wado-rs/studies/{study}/metadata", status="404") >= 1
    assert value(m, total, method="GET", route="unmatched", status="404") >= 1
    hist = "dicomweb_http_request_duration_seconds_count"
    assert value(m, hist, method="GET", route="/dicomweb/studies/{study}/metadata", kind="metadata") >= 1
    assert value(m, hist, method="POST", route="/dicomweb/studies", kind="stow") >= 1
    assert value(m, hist, method="GET", route="/dicomweb/studies/{study}/series", kind="search-series") >= 1
    assert value(m, hist, method="GET", route="/healthz", kind="other") == 0
    assert value(m, "dicomweb_http_request_bytes_total", route="/dicomweb/studies") >= len(blob)
    assert value(m, "dicomweb_http_response_bytes_total", route="/dicomweb/studies/{study}/metadata") > 100
    # The store's and the catalog's operations behind those requests.
    ops = "dicomweb_store_operation_duration_seconds_count"
    assert value(m, ops, op="put") >= 1 and value(m, ops, op="get") >= 1
    ops = "dicomweb_catalog_operation_duration_seconds_count"
    assert value(m, ops, op="upsert") >= 1 and value(m, ops, op="search") >= 1
    assert value(m, ops, op="get_instance") + value(m, ops, op="list_instances") >= 2
    # Nothing else is being served (the scrape does not count itself).
    assert value(m, "dicomweb_http_requests_in_flight") == 0


def test_stow_stored_and_failed_by_reason(server: ServiceProcess) -> None:
    before = scrape(server.base)
    good = [make_instance(), make_instance()]
    body, ctype = multipart_related([*good, b"this is not DICOM at all" * 10])
    r = httpx.post(server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
    assert r.status_code == 202, r.text
    route = {"method": "POST", "route": "/stow-rs/studies", "status": "202"}
    was = value(before, "dicomweb_http_requests_total", **route)
    # Each worker publishes its counts within a second.
    after = poll(server.base, lambda m: value(m, "dicomweb_http_requests_total", **route) > was)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dicomweb_stow_instances_stored_total") == 2
    assert delta("dicomweb_stow_instances_failed_total", reason="cannot_understand") == 1
    assert delta("dicomweb_stow_stored_bytes_total") == sum(len(b) for b in good)
    assert delta("dicomweb_http_requests_total", method="POST", route="/stow-rs/studies", status="202") == 1


def test_outbox_gauges_and_failures_with_a_sink_that_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    s = ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path / "data")], env={"K_SINK": dead}, log_path=tmp_path / "log"
    )
    s.start()
    try:
        assert value(scrape(s.base), "dicomweb_outbox_pending_events") == 0
        store(s, [make_instance()])
        m = poll(
            s.base,
            lambda m: (
                value(m, "dicomweb_event_delivery_failures_total") >= 1
                and value(m, "dicomweb_outbox_oldest_pending_age_seconds") > 0.2
            ),
        )
        assert value(m, "dicomweb_outbox_pending_events") == 1
        assert value(m, "dicomweb_events_delivered_total") == 0
    finally:
        s.stop()


def test_totals_are_right_with_several_workers(tmp_path: Path) -> None:
    s = ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path / "data"), "--workers", "2"], log_path=tmp_path / "log"
    )
    s.start(timeout=60)
    try:
        before = scrape(s.base)
        n = 40
        for _ in range(n):  # a new connection each time: the kernel spreads them over the workers
            assert httpx.get(s.base + "/healthz").status_code == 200
        # Whichever worker answers the scrape, it reports every worker's requests (each worker
        # publishes its counts within a second).
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        was = value(before, "dicomweb_http_requests_total", **healthz)
        poll(s.base, lambda m: value(m, "dicomweb_http_requests_total", **healthz) - was == n)
        time.sleep(1.5)
        for _ in range(6):
            m = scrape(s.base)
            assert value(m, "dicomweb_http_requests_total", **healthz) - was == n
            assert (
                value(
                    m,
                    "dicomweb_http_request_duration_seconds_count",
                    kind="other",
                    **{k: v for k, v in healthz.items() if k != "status"},
                )
                >= n
            )
            assert value(m, "dicomweb_http_requests_in_flight") == 0
    finally:
        s.stop()


def test_in_flight_counts_a_request_being_served(server: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance()])
    release = threading.Event()
    result: list[int] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        release.wait(20)
        yield body[100:]

    def upload() -> None:
        headers = {"content-type": ctype}
        r = httpx.post(server.base + "/dicomweb/studies", content=slow_body(), headers=headers)
        result.append(r.status_code)

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        poll(server.base, lambda m: value(m, "dicomweb_http_requests_in_flight") == 1)
    finally:
        release.set()
        uploader.join(30)
    assert result == [200]
    poll(server.base, lambda m: value(m, "dicomweb_http_requests_in_flight") == 0)


def test_a_killed_servers_metrics_directory_is_removed_at_the_next_start(tmp_path: Path) -> None:
    """With several workers the metrics files live in a temp directory named after the server's
    pid; after a kill -9 it stays behind, and the next start removes it (and only it)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    env_args = ["--data-dir", str(tmp_path / "data"), "--workers", "2"]

    def ours() -> list[Path]:
        return sorted(p for p in tmp.iterdir() if p.name.startswith("dicomweb-metrics-"))

    first = ServiceProcess("serve", args=env_args, env=env, log_path=tmp_path / "log1").start(timeout=60)
    assert first.proc is not None
    [stale] = ours()
    assert stale.name.startswith(f"dicomweb-metrics-{first.proc.pid}-")
    first.kill()
    assert stale.is_dir()  # SIGKILL: nothing cleaned up
    # Another server that is still running (this test's own pid) keeps its directory; so do
    # a directory of a dead pid that is a link and a file named like ours.
    live = tmp / f"dicomweb-metrics-{os.getpid()}-live"
    live.mkdir()
    link = tmp / f"dicomweb-metrics-{first.proc.pid}-link"
    link.symlink_to(live)

    second = ServiceProcess("serve", args=env_args, env=env, log_path=tmp_path / "log2").start(timeout=60)
    try:
        assert second.proc is not None
        assert not stale.exists()
        assert live.is_dir() and link.is_symlink()
        [fresh] = [p for p in ours() if p not in (live, link)]
        assert fresh.name.startswith(f"dicomweb-metrics-{second.proc.pid}-")
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        was = value(scrape(second.base), "dicomweb_http_requests_total", **healthz)
        for _ in range(4):
            assert httpx.get(second.base + "/healthz").status_code == 200
        poll(second.base, lambda m: value(m, "dicomweb_http_requests_total", **healthz) - was == 4)
        assert any(fresh.iterdir())  # the workers write their metrics there
    finally:
        second.stop()
    assert not fresh.exists()  # a clean stop removes it
