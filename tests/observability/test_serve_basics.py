"""What a newcomer sees first: the landing page, the access log, a clear port-in-use error."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import DICOMWEB, ServiceProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("basics")
    s = ServiceProcess(
        "serve", args=["--data-dir", str(tmp / "data"), "--log-level", "info"], log_path=tmp / "log"
    )
    s.start()
    yield s
    s.stop()


def wait_for_log(server: ServiceProcess, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.log_tail()
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the log: {server.log_tail()}")


def test_landing_page_json_by_default_html_for_a_browser(server: ServiceProcess) -> None:
    for path in ("/", "/dicomweb/"):
        r = httpx.get(server.base + path, headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        doc = r.json()
        assert doc["version"] == "0.1.0"
        assert set(doc["roots"]) == {"/dicomweb", "/stow-rs", "/wado-rs"}
        assert {"/metrics", "/ui/", "/healthz"} <= set(doc["links"])
        assert any(url.startswith("https://dicom.nema.org/") for url in doc["docs"].values())
    browser = {"Accept": "text/html,*/*;q=0.8"}
    page = httpx.get(server.base + "/dicomweb/", headers=browser)
    assert page.headers["content-type"].startswith("text/html")
    assert '<a href="/dicomweb">/dicomweb</a>' in page.text
    assert '<a href="/ui/">/ui/</a>' in page.text and "0.1.0" in page.text
    # A browser at / goes to the web UI.
    home = httpx.get(server.base + "/", headers=browser)
    assert home.status_code == 302 and home.headers["location"] == "/ui/"
    assert "<title>DICOMweb studies</title>" in httpx.get(server.base + "/ui/").text
    # Without the slash: redirected to the page, not a 404.
    r = httpx.get(server.base + "/dicomweb", follow_redirects=True)
    assert r.status_code == 200 and r.json()["roots"]


def test_one_access_line_per_request_without_the_query(server: ServiceProcess) -> None:
    r = httpx.get(
        server.base + "/dicomweb/studies",
        params={"PatientName": "DOE^SECRET"},
        headers={"X-Request-ID": "probe-access-1"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "probe-access-1"
    text = wait_for_log(server, "id=probe-access-1")
    lines = [line for line in text.splitlines() if "id=probe-access-1" in line]
    assert len(lines) == 1
    line = lines[0]
    assert "dicomweb.access" in line
    assert "GET /dicomweb/studies 200 0B in 2B out " in line  # method, path, status, bytes
    assert "ms id=probe-access-1" in line  # duration
    assert "SECRET" not in text and "PatientName" not in text


def test_quiet_has_no_access_lines(tmp_path: Path) -> None:
    s = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp_path / "data"), "--log-level", "info", "--quiet"],
        log_path=tmp_path / "log",
    )
    s.start()
    try:
        assert httpx.get(s.base + "/healthz", headers={"X-Request-ID": "quiet-1"}).status_code == 200
        wait_for_log(s, "Uvicorn running")
        assert httpx.get(s.base + "/readyz").status_code == 200
    finally:
        s.stop()
    text = s.log_tail()
    assert "Application startup complete" in text  # it does log, just not per request
    assert "dicomweb.access" not in text and "quiet-1" not in text


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = subprocess.run(
            [DICOMWEB, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"dicomweb: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(is another server running? pick one with --port)"
    ], done.stderr
    assert "startup complete" not in done.stdout + done.stderr


@pytest.mark.parametrize("command, root", [("stow-svc", "/stow-rs"), ("wado-svc", "/wado-rs")])
def test_each_service_has_metrics_and_a_landing_page(command: str, root: str, tmp_path: Path) -> None:
    s = ServiceProcess(
        command,
        args=["--data-dir", str(tmp_path / "data"), "--insecure-no-auth"],
        log_path=tmp_path / "log",
    )
    s.start()
    try:
        doc = httpx.get(s.base + "/").json()
        assert list(doc["roots"]) == [root] and "/ui/" not in doc["links"]
        assert httpx.get(s.base + "/studies").status_code == 404
        metrics = httpx.get(s.base + "/metrics")
        assert metrics.status_code == 200
        assert 'dicomweb_http_requests_total{method="GET",route="/",status="200"} 1.0' in metrics.text
        assert httpx.get(s.base + "/ui/").status_code == 404  # the UI is the embedded server's
    finally:
        s.stop()
