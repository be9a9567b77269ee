"""Where the web UI's "open in viewer" goes (``dicomweb serve --viewer DIR`` / ``--viewer-url``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

VIEWER_DIR_ENV = "DICOMWEB_VIEWER_DIR"
VIEWER_URL_ENV = "DICOMWEB_VIEWER_URL"


@dataclass(frozen=True, slots=True)
class UiSettings:
    #: An unpacked OHIF Viewer 3 bundle (its ``dist/``), served at ``/viewer/``.
    viewer_dir: Path | None = None
    #: Otherwise: an OHIF viewer elsewhere (``https://viewer.example.org/viewer``); the UI
    #: appends ``?StudyInstanceUIDs=<uid>``.
    viewer_url: str = ""


def load_ui_settings(env: Mapping[str, str]) -> UiSettings:
    raw_dir = env.get("DICOMWEB_VIEWER_DIR", "")
    viewer_dir = Path(raw_dir) if raw_dir else None
    if viewer_dir is not None and not (viewer_dir / "index.html").is_file():
        raise ConfigError(f"--viewer {raw_dir}: no index.html there (expected an OHIF Viewer 3 dist/ folder)")
    url = env.get("DICOMWEB_VIEWER_URL", "")
    if url and not url.startswith(("http://", "https://", "/")):
        raise ConfigError(f"--viewer-url {url!r} must be an http(s) URL or a path")
    return UiSettings(viewer_dir=viewer_dir, viewer_url=url)
