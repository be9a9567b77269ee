"""A same-origin OHIF Viewer 3 at ``/viewer/`` (``dicomweb serve --viewer DIR``).

The published bundle is built for the site root (``PUBLIC_URL="/"``: absolute ``/app.bundle.js``
and ``/assets/...`` links, webpack's public path ``"/"`` in the JavaScript runtimes, ``url(/...)``
in the CSS); those are rewritten to ``/viewer/`` as the files are first served (and kept), and
``app-config.js`` is generated: one DICOMweb data source at ``/dicomweb`` of the
same origin (no CORS). Paths of the single-page app that are not files get ``index.html``.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..server import request_base_url

PREFIX = "/viewer"
#: OHIF's own pages (not files) that the UI links to or the study list opens.
SPA_ROUTES = ("viewer", "local", "segmentation", "tmtv", "microscopy")


def app_config(dicomweb_url: str, *, router_basename: str = PREFIX) -> bytes:
    """OHIF's ``window.config``: one DICOMweb data source (QIDO + WADO-RS) at ``dicomweb_url``,
    the viewer's own pages under ``router_basename`` (``/`` for a bundle served at a site root)."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": "dicomweb serve",
            "name": "dicomweb",
            "qidoRoot": dicomweb_url,
            "wadoRoot": dicomweb_url,
            "wadoUriRoot": dicomweb_url,
            "qidoSupportsIncludeField": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsReject": False,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": router_basename,
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "dicomweb",
        "dataSources": [source],
    }
    return b"window.config = " + orjson.dumps(config, option=orjson.OPT_INDENT_2) + b";\n"


def rebased_index(index_html: str) -> bytes:
    """``index.html`` with its root-absolute links and ``PUBLIC_URL`` moved under ``/viewer/``."""
    html = re.sub(r'(\b(?:src|href)=")/(?!/)', rf"\1{PREFIX}/", index_html)
    html = html.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}/"')
    return html.encode()


_WEBPACK_PUBLIC_PATH = b'__webpack_require__.p = "/";'
_CSS_ROOT_URL = re.compile(rb"url\(/(?!/)")


def rebased_asset(name: str, data: bytes) -> bytes:
    """A JavaScript or CSS file of the bundle with its root-absolute base moved to ``/viewer/``."""
    if name.endswith(".js"):
        return data.replace(_WEBPACK_PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}/";'.encode())
    if name.endswith(".css"):
        return _CSS_ROOT_URL.sub(f"url({PREFIX}/".encode(), data)
    return data


class _Bundle:
    """The bundle's files; ``index.html`` for anything else (the app's own routes)."""

    def __init__(self, directory: Path, index: bytes) -> None:
        self.root = directory.resolve()
        self.files = StaticFiles(directory=self.root)
        self.index = index
        #: Rebased JavaScript and CSS, by path: built once each (the bundle is fixed).
        self.rebased: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relative = scope["path"][len(scope.get("root_path", "")) :].lstrip("/")
        name = relative.rsplit("/", 1)[-1]
        if not relative or relative == "index.html" or "." not in name:
            await Response(self.index, media_type="text/html; charset=utf-8")(scope, receive, send)
        elif name.endswith((".js", ".css")):
            await self._rebased(relative)(scope, receive, send)
        else:
            await self.files(scope, receive, send)

    def _rebased(self, relative: str) -> Response:
        body = self.rebased.get(relative)
        if body is None:
            path = (self.root / relative).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                return Response("not found\n", status_code=404, media_type="text/plain")
            body = self.rebased[relative] = rebased_asset(path.name, path.read_bytes())
        kind = "text/javascript" if relative.endswith(".js") else "text/css"
        return Response(body, media_type=f"{kind}; charset=utf-8", headers={"Cache-Control": "max-age=3600"})


def viewer_routes(directory: Path, dicomweb_root: str) -> list[BaseRoute]:
    index = rebased_index((directory / "index.html").read_text(encoding="utf-8"))

    async def config(request: Request) -> Response:
        # Absolute: OHIF builds BulkDataURIs and frame URLs from it.
        body = app_config(request_base_url(request) + dicomweb_root)
        return Response(body, media_type="application/javascript")

    return [Route(PREFIX + "/app-config.js", config), Mount(PREFIX, app=_Bundle(directory, index))]
