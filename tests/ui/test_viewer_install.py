"""``dicomweb viewer install`` against a local npm-registry stand-in (real HTTP): the tarball is
checked against the pinned integrity before anything is unpacked, only ``package/dist`` is
kept, hostile members are refused, and ``dicomweb serve`` then serves the bundle at /viewer/."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicomweb_core.ui.install import OHIF_VERSION
from tests.httpserver import BackgroundServer, QuietHandler
from tests.servers import DICOMWEB, ServiceProcess

INDEX = b'<!doctype html><script src="/app-config.js"></script><script defer src="/app.bundle.js"></script>'


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    def __init__(self) -> None:
        self.packages: dict[str, bytes] = {}
        registry = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                body = registry.packages.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = BackgroundServer()
        self.server.serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def publish(self, version: str, data: bytes) -> None:
        self.packages[f"/@ohif/app/-/app-{version}.tgz"] = data


@pytest.fixture
def registry() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.server.stop()


def install(
    registry: Registry, data_dir: Path, version: str, digest: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DICOMWEB, "viewer", "install", "--data-dir", str(data_dir), "--registry", registry.url,
         "--version", version, "--integrity", digest],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_install_then_serve(registry: Registry, tmp_path: Path) -> None:
    package = tarball({
        "package/package.json": b'{"name": "@ohif/app"}',
        "package/dist/index.html": INDEX,
        "package/dist/app.bundle.js": b'__webpack_require__.p = "/";',
        "package/src/ignored.js": b"not kept",
    })  # fmt: skip
    # Published under the pinned version's name (with this stand-in's own integrity), so that
    # serve finds it by itself.
    registry.publish(OHIF_VERSION, package)
    data = tmp_path / "data"
    done = install(registry, data, OHIF_VERSION, integrity(package))
    assert done.returncode == 0, done.stderr
    dist = data / "viewer" / f"ohif-{OHIF_VERSION}"
    assert sorted(p.name for p in dist.iterdir()) == ["app.bundle.js", "index.html"]
    assert str(dist) in done.stdout
    # Installed twice: nothing to do.
    assert install(registry, data, OHIF_VERSION, integrity(package)).returncode == 0
    (data / "viewer" / "secret.js").write_text("outside the bundle")

    s = ServiceProcess("serve", args=["--data-dir", str(data)], log_path=tmp_path / "log")
    s.start()
    try:
        page = httpx.get(s.base + "/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
        assert page.status_code == 200 and b'src="/viewer/app.bundle.js"' in page.content
        bundle = httpx.get(s.base + "/viewer/app.bundle.js").content
        assert bundle == b'__webpack_require__.p = "/viewer/";'
        config = httpx.get(s.base + "/viewer/app-config.js").text
        assert f'"qidoRoot": "{s.base}/dicomweb"' in config and '"routerBasename": "/viewer"' in config
        ui = httpx.get(s.base + "/ui/config.json").json()
        assert ui == {"dicomweb": "/dicomweb", "viewer": "/viewer/viewer"}
        # Nothing outside the bundle is served.
        assert httpx.get(s.base + "/viewer/..%2fsecret.js").status_code == 404
        assert b"outside" not in httpx.get(s.base + "/viewer/..%2f..%2fviewer%2fsecret.js").content
    finally:
        s.stop()


def test_a_tarball_that_does_not_match_the_pin_leaves_nothing(registry: Registry, tmp_path: Path) -> None:
    package = tarball({"package/dist/index.html": INDEX})
    registry.publish("9.9.8", package)
    data = tmp_path / "data"
    done = install(registry, data, "9.9.8", integrity(package + b"tampered"))
    assert done.returncode == 1
    assert (
        done.stderr.startswith("dicomweb viewer install: ")
        and "does not match the pinned integrity" in done.stderr
    )
    assert list((data / "viewer").iterdir()) == []


def test_hostile_members_are_refused(registry: Registry, tmp_path: Path) -> None:
    package = tarball({"package/dist/index.html": INDEX, "package/dist/../../../escaped.txt": b"x"})
    registry.publish("9.9.7", package)
    data = tmp_path / "data"
    done = install(registry, data, "9.9.7", integrity(package))
    assert done.returncode == 1 and "refusing tarball member" in done.stderr
    assert not (tmp_path / "escaped.txt").exists() and list((data / "viewer").iterdir()) == []
    missing = install(registry, data, "0.0.0", integrity(package))
    assert missing.returncode == 1 and "answered 404" in missing.stderr
