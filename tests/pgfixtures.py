"""pytest fixtures for a real PostgreSQL server (the machine's own, on 127.0.0.1:5432).

``pg_admin_dsn`` (session) finds a superuser that can connect; ``pg_database`` (per test)
creates a fresh, uniquely named database and drops it afterwards, so services started by a
test share one clean catalog. PostgreSQL missing: the fixtures fail under ``CI`` (a
missing server must never pass silently there) and skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USERS = ("postgres", "root")


def find_admin_dsn() -> tuple[str | None, list[str]]:
    """The DSN of the first user that can connect (trust auth), and why the others could not."""
    errors = []
    for user in PG_USERS:
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"
        try:
            with psycopg.connect(dsn, connect_timeout=5):
                return dsn, errors
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    return None, errors


def create_database(admin_dsn: str, prefix: str = "dicomweb_e2e") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_dsn: str, dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    admin, errors = find_admin_dsn()
    if admin is None:
        reason = (
            f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable as {'/'.join(PG_USERS)} "
            f"({'; '.join(errors)}); PostgreSQL tests NOT RUN"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return admin


@pytest.fixture
def pg_database(pg_admin_dsn: str) -> Iterator[str]:
    """The DSN of a fresh, empty database of its own (dropped after the test)."""
    dsn = create_database(pg_admin_dsn)
    try:
        yield dsn
    finally:
        drop_database(pg_admin_dsn, dsn)
