"""Generated bad requests over HTTP against a real ``dicomweb serve``: multipart framing,
DICOM headers, query strings, Accept and Range headers. Whatever comes, the answer is not a
5xx, the server stays up and answers quickly, and nothing is stored for a rejected part."""

from __future__ import annotations

import functools
import io
import string
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.abuse.attacks import ABUSE_ENV
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


class Target:
    def __init__(self, server: ServiceProcess, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.client = httpx.Client(base_url=server.base, timeout=30)
        self.blob = make_instance(rows=16, cols=16, frames=2)
        ds = pydicom.dcmread(io.BytesIO(self.blob), stop_before_pixels=True)
        self.instance = (
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        body, ctype = multipart_related([self.blob])
        assert (
            self.client.post("/dicomweb/studies", content=body, headers={"content-type": ctype}).status_code
            == 200
        )

    def objects(self) -> list[Path]:
        return sorted(p for p in (self.data_dir / "studies").rglob("*") if p.is_file())

    def alive(self) -> None:
        assert self.server.proc is not None and self.server.proc.poll() is None
        assert self.client.get("/healthz", timeout=2).status_code == 200


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz-data")
    log = tmp_path_factory.mktemp("fuzz-log") / "server.log"
    # One worker: "still responsive" is then asked of the process that took the request.
    server = ServiceProcess(
        "serve", args=["--data-dir", str(data), "--workers", "1"], env=ABUSE_ENV, log_path=log
    ).start()
    try:
        yield Target(server, data)
    finally:
        server.stop()


@functools.cache
def _small_instance() -> bytes:
    return make_instance(rows=8, cols=8)


@st.composite
def mangled_stow(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid one-instance STOW body, then damaged: in the DICOM header, anywhere, cut short,
    with a wrong boundary or media type."""
    blob = bytearray(_small_instance())
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(128, min(len(blob) - 1, 700)))  # inside the DICOM header
        blob[where] = draw(st.integers(0, 255))
    boundary = draw(st.sampled_from(["b", "fuzz-boundary", "x" * 69]))
    body = bytearray(multipart_related([bytes(blob)], boundary=boundary)[0])
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.integers(0, len(body) - 1))
        body[where : where + 1] = draw(st.binary(min_size=0, max_size=8))
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    ctype = draw(
        st.sampled_from(
            [
                f'multipart/related; type="application/dicom"; boundary={boundary}',
                f"multipart/related; boundary={boundary}",
                'multipart/related; type="application/dicom"',
                f"multipart/related; type=application/dicom; boundary={'y' * 300}",
                "application/dicom",
                "text/plain",
                f'multipart/related; type="image/jpeg"; boundary={boundary}',
            ]
        )
    )
    return bytes(body), ctype


@FUZZ
@given(request=mangled_stow())
def test_a_mangled_stow_is_never_a_5xx_and_stores_nothing_it_refuses(
    target: Target, request: tuple[bytes, str]
) -> None:
    body, ctype = request
    before = target.objects()
    resp = target.client.post("/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code < 500, (resp.status_code, resp.text)
    after = target.objects()
    if resp.status_code != 200:
        assert after == before, (resp.status_code, resp.text)
    else:
        assert len(after) <= len(before) + 1
    assert not [p for p in after if ".tmp" in p.name]
    target.alive()


query_value = st.one_of(
    st.text(PRINTABLE, max_size=30),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "99999999999999999999", "0", "", "%00", "1,2,3"]),
)


@FUZZ
@given(
    path=st.sampled_from(
        [
            "/dicomweb/studies",
            "/dicomweb/series",
            "/dicomweb/instances",
            "{i}/rendered",
            "{i}/thumbnail",
            "{i}/frames/1/rendered",
        ]
    ),
    params=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(
                    [
                        "limit",
                        "offset",
                        "window",
                        "viewport",
                        "quality",
                        "includefield",
                        "StudyDate",
                        "PatientName",
                        "fuzzymatching",
                        "00100020",
                    ]
                ),
                st.text(PRINTABLE, min_size=1, max_size=12),
            ),
            query_value,
        ),
        max_size=4,
    ),
)
def test_generated_query_strings_are_never_a_5xx(
    target: Target, path: str, params: list[tuple[str, str]]
) -> None:
    resp = target.client.get(path.replace("{i}", target.instance), params=params)
    assert resp.status_code < 500, (path, params, resp.status_code, resp.text)
    target.alive()


header_value = st.one_of(
    st.text(PRINTABLE, max_size=60).map(str.strip),  # h11 refuses to send surrounding spaces
    st.sampled_from(
        [
            'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
            "multipart/related; type=image/jpeg",
            "application/octet-stream; q=nan",
            "*/*;q=0",
            "bytes=0-",
            "bytes=-0",
            "bytes=99999999999999999999-",
            "bytes=5-1",
            "bytes=0-1,4-5",
        ]
    ),
)


@FUZZ
@given(
    path=st.sampled_from(
        [
            "",
            "/metadata",
            "/frames/1",
            "/frames/2,1",
            "/frames/3",
            "/bulkdata/7FE00010",
            "/rendered",
            "/frames/0",
        ]
    ),
    accept=header_value,
    byte_range=header_value,
)
def test_generated_accept_and_range_headers_are_never_a_5xx(
    target: Target, path: str, accept: str, byte_range: str
) -> None:
    resp = target.client.get(target.instance + path, headers={"accept": accept, "range": byte_range})
    assert resp.status_code < 500, (path, accept, byte_range, resp.status_code, resp.text)
    target.alive()


@FUZZ
@given(
    head=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda method, path, headers: f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode(
                "latin-1", "replace"
            ),
            st.sampled_from(["GET", "POST", "DELETE", "PUT", "G\x00T", ""]),
            st.one_of(st.text(PRINTABLE, max_size=80), st.just("/dicomweb/studies?limit=%ff%00")),
            st.text(PRINTABLE + "\t", max_size=200),
        ),
    )
)
def test_raw_malformed_requests_are_answered_or_closed_never_a_5xx(target: Target, head: bytes) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", target.server.port), timeout=10) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    status = answer[9:12]
    assert not status.startswith(b"5"), answer[:300]
    target.alive()
