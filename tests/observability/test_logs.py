"""``LOG_FORMAT=json``: one JSON object per line, the request id from ``X-Request-ID`` or
``traceparent`` (or generated) in the log and in the response, no query strings (PHI)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dicomfiles import make_instance
from tests.e2e.test_wado_retrieve import store
from tests.servers import DICOMWEB, ServiceProcess, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("jsonlogs")
    s = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp / "data"), "--log-level", "info"],
        env={"LOG_FORMAT": "json"},
        log_path=tmp / "log",
    )
    s.start()
    yield s
    s.stop()


def records(server: ServiceProcess) -> list[dict[str, Any]]:
    assert server.log_path is not None
    lines = server.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]  # every line is JSON


def access_record(server: ServiceProcess, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [
            r
            for r in records(server)
            if r.get("request_id") == request_id and r["logger"] == "dicomweb.access"
        ]
        if found:
            assert len(found) == 1
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no access record for {request_id}")


def test_every_line_is_json_and_the_access_record_has_the_fields(server: ServiceProcess) -> None:
    store(server, [make_instance()])
    r = httpx.get(
        server.base + "/dicomweb/studies",
        params={"PatientName": "DOE^SECRET", "PatientID": "PID-SECRET"},
        headers={"X-Request-ID": "json-probe-1"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "json-probe-1"
    rec = access_record(server, "json-probe-1")
    assert rec["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["timestamp"])
    assert (
        rec["method"] == "GET" and rec["path"] == "/dicomweb/studies" and rec["route"] == "/dicomweb/studies"
    )
    assert rec["status"] == 200 and rec["bytes_in"] == 0 and rec["bytes_out"] == len(r.content)
    assert isinstance(rec["duration_ms"], float) and rec["duration_ms"] > 0
    text = server.log_tail()
    assert "SECRET" not in text and "PatientName" not in text
    # uvicorn's own lines are JSON too.
    assert any(r["logger"].startswith("uvicorn") for r in records(server))


def test_request_id_from_traceparent_or_generated(server: ServiceProcess) -> None:
    r = httpx.get(server.base + "/healthz", headers={"traceparent": TRACEPARENT})
    assert r.headers["x-request-id"] == TRACE_ID
    assert access_record(server, TRACE_ID)["route"] == "/healthz"
    # No id, or one that is not a short token: a fresh random one, returned and logged.
    for headers in ({}, {"X-Request-ID": "x" * 500}, {"X-Request-ID": "bad id\twith spaces"}):
        r = httpx.get(server.base + "/healthz", headers=headers)
        generated = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
        assert access_record(server, generated)["status"] == 200
    ids = {httpx.get(server.base + "/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_a_not_found_frame_is_logged_with_its_route_template(server: ServiceProcess) -> None:
    study = "1.2.3.4"
    r = httpx.get(
        f"{server.base}/dicomweb/studies/{study}/series/9.8/instances/7.6/frames/1",
        headers={"X-Request-ID": "json-probe-404"},
    )
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "json-probe-404"
    rec = access_record(server, "json-probe-404")
    assert rec["route"] == "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"
    assert rec["status"] == 404


def test_an_unknown_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [DICOMWEB, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")],
        env={"LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dicomweb: configuration error: LOG_FORMAT='xml' must be 'text' or 'json'"
    ]
