"""What ``GET /`` and ``GET /dicomweb/`` answer: the version, the service roots and where to go
next (HTML for a browser, JSON otherwise). Built once per app; a request only picks a body."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

DOCS = {
    "DICOMweb standard (PS3.18)": "https://dicom.nema.org/medical/dicom/current/output/html/part18.html",
    "DICOM JSON model (PS3.18 Annex F)": (
        "https://dicom.nema.org/medical/dicom/current/output/html/part18.html#chapter_F"
    ),
}
ROOT_PURPOSE = {
    "/dicomweb": "STOW-RS, QIDO-RS and WADO-RS under one root",
    "/stow-rs": "STOW-RS (store)",
    "/wado-rs": "QIDO-RS (search) and WADO-RS (retrieve)",
}


def package_version() -> str:
    try:
        return version("dicomweb-core")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


class LandingPage:
    def __init__(self, roots: Sequence[str], links: dict[str, str], browser_home: str = "") -> None:
        #: Where ``GET /`` sends a browser (the web UI), if anywhere.
        self._home = browser_home
        doc = {
            "service": "DICOMweb Ingestion Service",
            "version": package_version(),
            "roots": {root: ROOT_PURPOSE.get(root, "") for root in roots},
            "links": links,
            "docs": DOCS,
        }
        self._json = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        self._html = _html(doc).encode()

    async def respond(self, request: Request) -> Response:
        """``GET /``: a browser goes to the web UI (when there is one); others get the page."""
        if self._home and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(self._home, status_code=302)
        return await self.describe(request)

    async def describe(self, request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return Response(self._html, media_type="text/html; charset=utf-8")
        return Response(self._json, media_type="application/json")


def _html(doc: Mapping[str, object]) -> str:
    def items(mapping: object, describe: bool) -> str:
        assert isinstance(mapping, dict)
        rows = []
        for key, value in mapping.items():
            k, v = html.escape(str(key)), html.escape(str(value))
            rows.append(
                f'<li><a href="{k}">{k}</a> {v}</li>' if describe else f'<li><a href="{v}">{k}</a></li>'
            )
        return "\n".join(rows)

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DICOMweb Ingestion Service</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>DICOMweb Ingestion Service</h1>
<p>Version <code>{html.escape(str(doc["version"]))}</code></p>
<h2>Roots</h2><ul>
{items(doc["roots"], True)}
</ul>
<h2>Links</h2><ul>
{items(doc["links"], True)}
</ul>
<h2>Docs</h2><ul>
{items(doc["docs"], False)}
</ul>
<p>Ask for <code>Accept: application/json</code> for this page as JSON.</p>
</body></html>
"""
