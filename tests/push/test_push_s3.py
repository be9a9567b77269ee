"""``dicomweb push`` into the scaled-out deployment: ``stow-svc`` on a real S3-compatible server
(SeaweedFS) with a PostgreSQL catalog, read back through ``wado-svc``; then the same tree again
with ``--resume`` after the journal lost nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.push.helpers import build_tree, run_push, server_sops
from tests.servers import ServiceProcess


@pytest.fixture
def stow_and_wado(
    s3_bucket_env: dict[str, str], s3_admin: Any, pg_database: str, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess, str]]:
    bucket = f"push-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    env = {**s3_bucket_env, "BUCKET_NAME": bucket, "CATALOG_URL": pg_database}
    stow = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log").start()
    wado = ServiceProcess("wado-svc", env=env, log_path=tmp_path / "wado.log")
    try:
        wado.start()
        yield stow, wado, pg_database
    finally:
        stow.stop()
        wado.stop()


def test_push_into_stow_svc_on_s3_and_postgresql(
    stow_and_wado: tuple[ServiceProcess, ServiceProcess, str], tmp_path: Path
) -> None:
    stow, wado, dsn = stow_and_wado
    tree = build_tree(tmp_path / "src", plain=4, per_archive=2)
    journal, report = tmp_path / "j.sqlite", tmp_path / "r.json"
    run = run_push([tree.root], stow.base + "/stow-rs", "--concurrency", "3", journal=journal, report=report)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == tree.count
    assert set(tree.sops) <= server_sops(wado.base + "/wado-rs")
    with psycopg.connect(dsn) as conn:
        rows = {r[0] for r in conn.execute("SELECT sop_instance_uid FROM instances")}
    assert rows == set(tree.sops)
    again = run_push([tree.root], stow.base + "/stow-rs", "--resume", journal=journal, report=report)
    assert again.returncode == 0 and again.report["stored"] == 0
