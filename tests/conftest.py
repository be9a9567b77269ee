"""Shared fixtures: the real embedded server over HTTP, in a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServiceProcess

# The S3-compatible server (SeaweedFS) fixtures: s3_server, s3_bucket_env, s3_admin, s3_store, ...
pytest_plugins = ["tests.s3fixtures", "tests.pgfixtures"]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One ``dicomweb serve`` for the session (tests use fresh UIDs, so they don't collide)."""
    data = tmp_path_factory.mktemp("embedded")
    server = ServiceProcess("serve", args=["--data-dir", str(data / "data")], log_path=data / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A server of its own (for tests that inspect the data directory)."""
    server = ServiceProcess("serve", args=["--data-dir", str(tmp_path / "data")], log_path=tmp_path / "server.log")
    server.start()
    yield server
    server.stop()
