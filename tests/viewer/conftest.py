"""A real OHIF Viewer 3 (its prebuilt static bundle) served next to the embedded server.

The bundle and the browser driver come from ``scripts/test-prereqs`` (npm ``@ohif/app`` unpacked
into ``tests/viewer/.ohif-app-<version>/``, ``npm ci`` into ``tests/viewer/node_modules``) and the
browser from Debian (``/usr/bin/chromium``).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dicomweb_core.ui.viewer import app_config
from tests.servers import ServiceProcess

HERE = Path(__file__).resolve().parent
OHIF_VERSION = "3.13.2"
OHIF_DIST = HERE / f".ohif-app-{OHIF_VERSION}" / "dist"
PLAYWRIGHT = HERE / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")


def missing_prerequisites() -> list[str]:
    missing = []
    if not (OHIF_DIST / "index.html").is_file():
        missing.append(f"the OHIF Viewer bundle ({OHIF_DIST})")
    if not PLAYWRIGHT.is_dir():
        missing.append(f"playwright-core ({PLAYWRIGHT}; npm ci --prefix tests/viewer)")
    if not CHROMIUM.is_file():
        missing.append(f"Chromium ({CHROMIUM}; apt-get install chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    return missing


@pytest.fixture(scope="session")
def viewer_prerequisites() -> None:
    missing = missing_prerequisites()
    if not missing:
        return
    reason = "viewer test needs " + ", ".join(missing) + "; run scripts/test-prereqs"
    if os.environ.get("CI"):
        # In CI a missing browser or bundle is a broken setup, never a silent pass.
        pytest.fail(reason, pytrace=False)
    pytest.skip("NOT RUN: " + reason)


class _OhifHandler(SimpleHTTPRequestHandler):
    """The bundle as files, our ``app-config.js`` in place of its own, and ``index.html`` for the
    single-page app's routes (``/viewer?StudyInstanceUIDs=...``)."""

    config_js: bytes = b""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/app-config.js":
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(self.config_js)))
            self.end_headers()
            self.wfile.write(self.config_js)
            return
        if not Path(self.translate_path(path)).exists():
            self.path = "/index.html"
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the bundle is ~100 files; its request log is noise


@pytest.fixture(params=["no-auth", "bearer-token"])
def viewer_token(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None: the server runs without access control. Otherwise a real access token (``dicom.read
    dicom.write``) from a real OpenID Provider (tests/auth); the server then runs AUTH_MODE=oidc
    and the browser sends the token on every request (as OHIF does once its ``oidc`` sign-in ran)."""
    if request.param == "no-auth":
        yield None
        return
    from tests.auth.conftest import OidcProvider, SigningKey

    (tmp_path / "oidc").mkdir()
    provider = OidcProvider(tmp_path / "oidc", [SigningKey("viewer-key")]).start()
    request.node.oidc_provider = provider
    yield provider.token("dicom.read dicom.write")
    provider.stop()


@pytest.fixture
def dicomweb_server(
    request: pytest.FixtureRequest, tmp_path: Path, viewer_token: str | None
) -> Iterator[ServiceProcess]:
    env: dict[str, str] = {}
    if viewer_token is not None:
        from tests.auth.conftest import auth_env

        env = auth_env(request.node.oidc_provider)
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp_path / "data"), "--cors", "*"],
        env=env,
        log_path=tmp_path / "server.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ohif_url(viewer_prerequisites: None, dicomweb_server: ServiceProcess) -> Iterator[str]:
    """Where the viewer is served (another origin than the DICOMweb server: CORS is exercised)."""
    handler = type(
        "Handler",
        (_OhifHandler,),
        {"config_js": app_config(dicomweb_server.base + "/dicomweb", router_basename="/")},
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(OHIF_DIST)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
