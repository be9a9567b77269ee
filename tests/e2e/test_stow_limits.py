"""Configured caps and CORS on the STOW side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dicomfiles import chunks, make_instance, multipart_related
from tests.servers import ServiceProcess


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ServiceProcess]:
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp_path / "data"), "--cors", "https://viewer.example.org"],
        env={"MAX_REQUEST_SIZE": "100000"},
        log_path=tmp_path / "log",
    ).start()
    yield server
    server.stop()


def _objects(server: ServiceProcess) -> list[Path]:
    data = Path(server.args[server.args.index("--data-dir") + 1])
    return [p for p in data.rglob("*") if p.is_file() and not p.name.startswith("catalog.db")]


def test_declared_length_over_cap_is_413(capped: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance(rows=256, cols=256)])
    resp = httpx.post(capped.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 413
    assert "cap" in resp.text
    assert _objects(capped) == []


def test_chunked_body_over_cap_is_413_and_leaves_nothing(capped: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance(), make_instance(rows=256, cols=256)])
    resp = httpx.post(
        capped.base + "/stow-rs/studies", content=chunks(body, 8192), headers={"content-type": ctype}
    )
    assert resp.status_code == 413
    assert _objects(capped) == []


def test_under_the_cap_is_stored(capped: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance()])
    assert (
        httpx.post(
            capped.base + "/stow-rs/studies", content=body, headers={"content-type": ctype}
        ).status_code
        == 200
    )


def test_cors_preflight_for_stow(capped: ServiceProcess) -> None:
    resp = httpx.options(
        capped.base + "/dicomweb/studies",
        headers={
            "origin": "https://viewer.example.org",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "https://viewer.example.org"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "content-type" in resp.headers["access-control-allow-headers"].lower()


def test_cors_refuses_other_origins(capped: ServiceProcess) -> None:
    resp = httpx.options(
        capped.base + "/dicomweb/studies",
        headers={"origin": "https://evil.example.com", "access-control-request-method": "POST"},
    )
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


def test_no_cors_headers_by_default(embedded: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance()])
    resp = httpx.post(
        embedded.base + "/stow-rs/studies",
        content=body,
        headers={"content-type": ctype, "origin": "https://viewer.example.org"},
    )
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers
