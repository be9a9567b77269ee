"""One hostile client at a time against a real ``dicomweb serve``: each attack is answered
with a 4xx or cut off, the server's memory stays bounded (RSS from /proc) and a second client
keeps getting quick answers while it runs (see :class:`tests.abuse.attacks.Watch`)."""

from __future__ import annotations

import asyncio
import io
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.abuse.attacks import (
    ABUSE_ENV,
    Watch,
    big_instance,
    hold_open,
    hostile_instances,
    plant,
    stow_stream,
)
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("abuse-data")
    plant(data, list(hostile_instances().values()))
    log = tmp_path_factory.mktemp("abuse-log") / "server.log"
    # One worker: the second client's /healthz then probes the very event loop under attack.
    proc = ServiceProcess(
        "serve", args=["--data-dir", str(data), "--workers", "1"], env=ABUSE_ENV, log_path=log
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _instance_url(server: ServiceProcess, blob: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return (
        f"{server.base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


@pytest.mark.parametrize("name", sorted(hostile_instances()))
def test_stow_refuses_an_instance_whose_header_lies_about_its_pixel_data(
    server: ServiceProcess, name: str
) -> None:
    body, ctype = multipart_related([hostile_instances()[name]])
    resp = httpx.post(
        server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}, timeout=30
    )
    assert resp.status_code == 409
    assert resp.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert "NumberOfFrames" in resp.headers["warning"] or "needs" in resp.headers["warning"]


#: (path, expected status) per hostile instance. "huge-frame-count" claims 2147483647 frames
#: of 2x2 8-bit pixels and holds 32 bytes: frames 1..8 are really there and are served.
EXPECTED = {
    "huge-frame-count": [
        ("/frames/1", 200),
        ("/frames/8", 200),
        ("/frames/9", 404),
        ("/frames/2147483647", 404),
        ("/frames/1,2147483647", 404),
        ("/rendered", 200),
        ("/frames/2147483647/rendered", 404),
        ("/bulkdata/7FE00010", 200),
    ],
    "short-pixel-data": [
        ("/frames/1", 404),
        ("/frames/2", 404),
        ("/rendered", 404),
        ("/thumbnail", 404),
        ("/bulkdata/7FE00010", 200),
    ],
}


@pytest.mark.parametrize("name", sorted(hostile_instances()))
def test_a_catalogued_hostile_instance_answers_fast_with_404_or_the_real_bytes(
    server: ServiceProcess, name: str
) -> None:
    url = _instance_url(server, hostile_instances()[name])
    with Watch(server, f"frames, rendered, bulk data of {name}") as watch:
        for path, status in EXPECTED[name]:
            start = time.monotonic()
            resp = httpx.get(url + path, headers={"accept": "*/*"}, timeout=10)
            elapsed = time.monotonic() - start
            assert elapsed < 2.0, (path, elapsed)
            assert resp.status_code == status, (path, resp.status_code, resp.text[:300])
            if status == 404:
                assert "frame" in resp.text
            elif path.startswith("/frames/"):
                assert len(resp.content) < 1024  # one 4-byte frame in a multipart envelope
        # The retrieve of the whole instance is as stored (a few hundred bytes).
        assert httpx.get(url, headers={"accept": "*/*"}, timeout=10).status_code == 200
        time.sleep(0.3)  # a few probes of the second client
    watch.assert_held(max_growth_mib=50)


def test_endless_header_lines_are_cut_off_with_431(server: ServiceProcess) -> None:
    line = b"X-Endless: " + b"a" * 200 + b"\r\n"

    def connection() -> int:
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(100_000):  # 21 MB if never stopped
                    sock.sendall(line)
                    sent += len(line)
            except OSError:
                pass
            try:
                answer = sock.recv(100)
            except OSError:
                answer = b""
            assert answer[:12] in (b"HTTP/1.1 431", b""), answer
        return sent

    def attack() -> int:
        # The attacker comes back as soon as it is cut off, for two seconds.
        end = time.monotonic() + 2
        most = 0
        while time.monotonic() < end:
            most = max(most, connection())
        return most

    with Watch(server, "8 connections sending endless header lines") as watch:

        async def run() -> list[int]:
            return list(await asyncio.gather(*(asyncio.to_thread(attack) for _ in range(8))))

        sent = asyncio.run(run())
    assert max(sent) < 5 * 1024 * 1024, sent  # cut off long before the 21 MB
    watch.assert_held(max_growth_mib=50)


def test_connections_that_never_finish_their_headers_are_closed(server: ServiceProcess) -> None:
    with Watch(server, "200 connections that never finish their headers") as watch:
        held = asyncio.run(
            hold_open("127.0.0.1", server.port, 200, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 15)
        )
        silent = asyncio.run(hold_open("127.0.0.1", server.port, 50, b"", 15))
    # HEADER_TIMEOUT is 2 s here: every connection is closed by the server soon after.
    assert max(held) < 6, max(held)
    assert max(silent) < 6, max(silent)
    watch.assert_held(max_growth_mib=50)


def test_a_stalled_request_body_is_cut_off(server: ServiceProcess) -> None:
    with Watch(server, "request bodies that stop arriving") as watch:
        payload = (
            b"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
            b'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n\r\n--b\r\n'
        )
        held = asyncio.run(hold_open("127.0.0.1", server.port, 20, payload, 15))
    assert max(held) < 6, max(held)  # BODY_IDLE_TIMEOUT is 2 s here
    watch.assert_held(max_growth_mib=50)


@pytest.mark.parametrize(
    "query",
    [
        "window=nan,100",
        "window=40,inf",
        "window=1e400,10",
        "window=40,-5",
        "viewport=0,10",
        "viewport=99999999999,10",
        "viewport=64,64,0,0,1e300,1e300",
        "viewport=64,64,100000,100000,10,10",
        "viewport=64,64,0,0,0,10",
        "quality=1e3",
        "quality=0",
        "window=a,b",
    ],
)
def test_absurd_rendering_parameters_are_400_with_a_reason(server: ServiceProcess, query: str) -> None:
    blob = make_instance(rows=32, cols=32)
    body, ctype = multipart_related([blob])
    assert (
        httpx.post(
            server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}
        ).status_code
        == 200
    )
    resp = httpx.get(_instance_url(server, blob) + "/rendered?" + query, timeout=10)
    assert resp.status_code == 400, (query, resp.status_code, resp.text)
    assert resp.text.strip()


@pytest.mark.parametrize(
    "query",
    ["offset=99999999999999999999", "limit=1e9", "offset=-1", "limit=9223372036854775808", "offset=1_000"],
)
def test_out_of_range_paging_values_are_400(server: ServiceProcess, query: str) -> None:
    resp = httpx.get(server.base + "/dicomweb/studies?" + query, timeout=10)
    assert resp.status_code == 400, (query, resp.status_code, resp.text)
    assert "within" in resp.text


def test_stalled_clients_of_a_converted_instance_do_not_pin_memory(server: ServiceProcess) -> None:
    header, pixels, total = big_instance(rows=4096, cols=4096, bits=16, implicit=True)  # 32 MiB, Implicit VR
    url = stow_stream(server, header, pixels)["url"]
    request = (
        f"GET {url.split(str(server.port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
        'Accept: multipart/related; type="application/dicom"\r\n\r\n'
    ).encode()
    socks = []
    with Watch(
        server, "5 stalled clients of a 32 MiB Implicit VR instance converted to Explicit VR LE"
    ) as watch:
        for _ in range(5):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(request)
            socks.append(sock)
        # SEND_IDLE_TIMEOUT is 3 s: the server gives up on them; reading then finds the end.
        time.sleep(3.5)
        stalled_rss = sum(server.rss_kib().values()) / 1024
        time.sleep(2)
        deadline = time.monotonic() + 20
        received = []
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            got = 0
            try:
                while chunk := sock.recv(1 << 20):
                    got += len(chunk)
                    if got == 0:
                        break
            except (TimeoutError, OSError):
                pass
            received.append(got)
            sock.close()
    assert all(0 < r < total for r in received), (received, total)  # started, then cut off
    sys.stderr.write(f"[abuse] RSS while the 5 clients stall: {stalled_rss:.0f} MiB\n")
    assert stalled_rss - watch.rss_start_mib < 60, (stalled_rss, watch.report())
    watch.assert_held(max_growth_mib=60, max_latency=1.5)  # the pixel data is copied, never loaded


def test_a_conversion_that_fails_is_a_406_before_any_byte(server: ServiceProcess) -> None:
    from tests.dicomfiles import make_dataset, to_bytes, with_fragments

    ds = make_dataset(rows=64, cols=64, bits=8)
    with_fragments(ds, "1.2.840.10008.1.2.4.50", [b"\xff\xd8 this is not a JPEG bitstream \xff\xd9"])
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    blob = to_bytes(ds)
    body, ctype = multipart_related([blob])
    assert (
        httpx.post(
            server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}
        ).status_code
        == 200
    )
    for accept in ('multipart/related; type="application/dicom"', "application/dicom"):
        resp = httpx.get(_instance_url(server, blob), headers={"accept": accept}, timeout=30)
        assert resp.status_code == 406, (accept, resp.status_code)
        assert "convert" in resp.text or "decompress" in resp.text
    resp = httpx.get(
        _instance_url(server, blob) + "/frames/1",
        headers={"accept": 'multipart/related; type="application/octet-stream"'},
        timeout=30,
    )
    assert resp.status_code == 406, resp.status_code
    assert httpx.get(_instance_url(server, blob) + "/rendered", timeout=30).status_code == 406


def test_full_size_renders_of_a_large_instance_stay_bounded(server: ServiceProcess) -> None:
    header, pixels, _ = big_instance(rows=8192, cols=8192, bits=8, implicit=False)  # 64 MiB
    url = stow_stream(server, header, pixels)["url"]

    def render(_: int) -> int:
        return httpx.get(url + "/rendered", headers={"accept": "image/jpeg"}, timeout=120).status_code

    with Watch(server, "5 concurrent full-size renders of an 8192x8192 instance") as watch:

        async def run() -> list[int]:
            return list(await asyncio.gather(*(asyncio.to_thread(render, i) for i in range(5))))

        statuses = asyncio.run(run())
    assert statuses == [200] * 5
    watch.assert_held(max_growth_mib=500, max_latency=1.5)


def test_the_server_is_still_healthy_after_the_attacks(server: ServiceProcess, tmp_path: Path) -> None:
    assert server.proc is not None and server.proc.poll() is None
    assert httpx.get(server.base + "/readyz", timeout=5).status_code == 200


def test_worker_processes_are_guarded_too(tmp_path: Path) -> None:
    """With --workers > 1 uvicorn imports the protocol by name in each worker; the limits come
    from the same environment."""
    env = {**ABUSE_ENV, "MAX_REQUEST_HEADER_SIZE": "4096"}
    proc = ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path), "--workers", "2"], env=env, log_path=tmp_path / "log"
    ).start(timeout=60)
    try:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 431")
        held = asyncio.run(hold_open("127.0.0.1", proc.port, 10, b"GET /healthz HTTP/1.1\r\n", 15))
        assert max(held) < 6, held
        assert httpx.get(proc.base + "/healthz", timeout=5).status_code == 200
    finally:
        proc.stop()


def test_slow_but_steady_clients_are_not_cut_off(server: ServiceProcess) -> None:
    """The timeouts are idle timeouts: a client that keeps sending (or reading) a little at a
    time, for longer than any of them, completes."""
    blob = make_instance(rows=64, cols=64)
    body, ctype = multipart_related([blob])

    def trickle() -> Iterator[bytes]:
        step = len(body) // 8 + 1
        for i in range(0, len(body), step):
            time.sleep(0.6)  # 8 pieces over ~5 s; BODY_IDLE_TIMEOUT is 2 s
            yield body[i : i + step]

    resp = httpx.post(
        server.base + "/dicomweb/studies", content=trickle(), headers={"content-type": ctype}, timeout=30
    )
    assert resp.status_code == 200, resp.text

    header, pixels, total = big_instance(rows=2048, cols=2048, bits=16, implicit=False)  # 8 MiB
    url = stow_stream(server, header, pixels)["url"]
    got = 0
    start = time.monotonic()
    with httpx.stream("GET", url, headers={"accept": "*/*"}, timeout=30) as stream:
        for chunk in stream.iter_raw(1 << 20):
            got += len(chunk)
            time.sleep(0.5)  # ~4 s in all; SEND_IDLE_TIMEOUT is 3 s
    assert got > total and time.monotonic() - start > 3
