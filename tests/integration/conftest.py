"""Integration fixtures: a throwaway PostgreSQL database for the session, and a catalog
fixture parametrized over both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from dicomweb_core.catalog.factory import open_catalog
from dicomweb_core.catalog.postgres import PostgresCatalog
from dicomweb_core.catalog.sqlite import SQLiteCatalog
from tests.pgfixtures import create_database, drop_database


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a freshly created, uniquely named database for the session (dropped at the
    end). ``pg_admin_dsn`` (tests/pgfixtures.py) fails under ``CI`` when PostgreSQL is
    unreachable and skips with the reason elsewhere, so it never passes silently in CI."""
    dsn = create_database(pg_admin_dsn, prefix="dicomweb_test")
    try:
        yield dsn
    finally:
        drop_database(pg_admin_dsn, dsn)


_TABLES = "studies, series, instances, seq_attrs, outbox, garbage"


@pytest.fixture(params=["sqlite", "postgres"])
async def catalog(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteCatalog | PostgresCatalog]:
    """An open, empty catalog of each backend."""
    if request.param == "sqlite":
        cat = open_catalog(f"sqlite:///{tmp_path}/catalog.db")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        cat = open_catalog(dsn)
    assert isinstance(cat, SQLiteCatalog | PostgresCatalog)
    await cat.open()
    if isinstance(cat, PostgresCatalog):
        with psycopg.connect(cat.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {_TABLES}")  # type: ignore[arg-type]
    try:
        yield cat
    finally:
        await cat.close()
