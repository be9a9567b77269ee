"""The web UI in headless Chromium: playwright-core from tests/viewer (npm ci there) and
Debian's Chromium, as the OHIF test uses them."""

from __future__ import annotations

import os

import pytest

from tests.viewer.conftest import CHROMIUM, OHIF_DIST, PLAYWRIGHT


@pytest.fixture(scope="session")
def browser() -> None:
    missing = [str(p) for p in (PLAYWRIGHT, CHROMIUM) if not p.exists()]
    if not missing:
        return
    reason = f"the UI test needs {', '.join(missing)}; run scripts/test-prereqs"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip("NOT RUN: " + reason)


@pytest.fixture(scope="session")
def ohif_bundle(browser: None) -> str:
    if not (OHIF_DIST / "index.html").is_file():
        reason = f"the viewer part needs the OHIF bundle ({OHIF_DIST}); run scripts/test-prereqs"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip("NOT RUN: " + reason)
    return str(OHIF_DIST)
