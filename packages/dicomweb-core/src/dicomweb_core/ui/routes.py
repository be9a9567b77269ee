"""The web UI at ``/ui/`` (plain HTML/CSS/JS, no build step) and an optional same-origin OHIF
Viewer at ``/viewer/`` for ``dicomweb serve``.

The page talks to ``/dicomweb`` like any DICOMweb client (QIDO, WADO thumbnails, STOW, DELETE),
with a bearer token when the user gives one. ``/ui/config.json`` tells it where a viewer is.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .settings import UiSettings

STATIC = Path(__file__).resolve().parent / "static"

__all__ = ["public_paths", "ui_routes"]


def public_paths(settings: UiSettings) -> list[str]:
    """The pages and files that carry no data, open even when access control is on: a browser
    cannot send a bearer token for a page load (the page sends it on its DICOMweb requests)."""
    paths = ["/ui", "/ui/", "/ui/config.json"]
    paths += [f"/ui/{f.name}" for f in STATIC.iterdir() if f.is_file()]
    if settings.viewer_dir is not None:
        from .viewer import PREFIX, SPA_ROUTES

        paths += [PREFIX, f"{PREFIX}/", f"{PREFIX}/app-config.js", *(f"{PREFIX}/{r}" for r in SPA_ROUTES)]
        root = settings.viewer_dir.resolve()
        paths += [f"{PREFIX}/{f.relative_to(root).as_posix()}" for f in root.rglob("*") if f.is_file()]
    return paths


def ui_routes(settings: UiSettings, dicomweb_root: str) -> list[BaseRoute]:
    # OHIF's route that opens studies (``?StudyInstanceUIDs=``).
    viewer = "/viewer/viewer" if settings.viewer_dir is not None else settings.viewer_url
    config = orjson.dumps({"dicomweb": dicomweb_root, "viewer": viewer or None})

    async def ui_config(request: Request) -> Response:
        return Response(config, media_type="application/json")

    routes: list[BaseRoute] = [
        Route("/ui/config.json", ui_config),
        Mount("/ui", app=StaticFiles(directory=STATIC, html=True)),
    ]
    if settings.viewer_dir is not None:
        from .viewer import viewer_routes

        routes.extend(viewer_routes(settings.viewer_dir, dicomweb_root))
    return routes
