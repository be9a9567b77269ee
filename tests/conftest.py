"""Shared fixtures: the real embedded server over HTTP, in a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgfixtures import create_database, drop_database
from tests.servers import ServiceProcess

# The S3-compatible server (SeaweedFS) fixtures: s3_server, s3_bucket_env, s3_admin, s3_store, ...
pytest_plugins = ["tests.s3fixtures", "tests.pgfixtures"]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def embedded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One ``dicomweb serve`` per catalog backend for the session: every test that uses it runs
    against the SQLite catalog and against PostgreSQL (tests use fresh UIDs, so they don't collide)."""
    data = tmp_path_factory.mktemp(f"embedded-{request.param}")
    args = ["--data-dir", str(data / "data")]
    dsn = None
    if request.param == "postgresql":
        admin = request.getfixturevalue("pg_admin_dsn")
        dsn = create_database(admin)
        args += ["--catalog-url", dsn]
    server = ServiceProcess("serve", args=args, log_path=data / "server.log")
    server.start()
    yield server
    server.stop()
    if dsn is not None:
        drop_database(request.getfixturevalue("pg_admin_dsn"), dsn)


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A server of its own (for tests that inspect the data directory)."""
    server = ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path / "data")], log_path=tmp_path / "server.log"
    )
    server.start()
    yield server
    server.stop()
