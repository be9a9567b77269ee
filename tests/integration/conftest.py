"""Integration fixtures: a throwaway PostgreSQL database for the session, and a catalog
fixture parametrized over both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from dicomweb_core.catalog.factory import open_catalog
from dicomweb_core.catalog.postgres import PostgresCatalog
from dicomweb_core.catalog.sqlite import SQLiteCatalog

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USERS = ("postgres", "root")


def _admin_dsn() -> str | None:
    """The first user that can connect to the server (trust auth), or ``None``."""
    errors = []
    for user in PG_USERS:
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"
        try:
            with psycopg.connect(dsn, connect_timeout=5):
                return dsn
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    _admin_dsn.errors = errors  # type: ignore[attr-defined]
    return None


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a freshly created, uniquely named database; dropped at the end of the session.

    If PostgreSQL is unreachable this fails when ``CI`` is set, and otherwise skips with
    the reason, so a missing server never passes silently in CI."""
    admin = _admin_dsn()
    if admin is None:
        reason = (
            f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable as {'/'.join(PG_USERS)} "
            f"({'; '.join(getattr(_admin_dsn, 'errors', []))}); PostgreSQL catalog tests NOT RUN"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"dicomweb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


_TABLES = "studies, series, instances, seq_attrs, outbox"


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
