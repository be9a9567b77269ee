"""A 1 GiB instance streamed through ``dicomweb stow-svc`` into S3: bounded memory, stored
whole, as a multipart upload that leaves nothing pending."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServiceProcess, stow_streamed_instance

GiB = 1 << 30


@pytest.mark.slow
def test_one_gib_instance_streams_through_stow_into_s3_in_bounded_memory(
    s3_bucket_env: dict[str, str], s3_admin: Any, tmp_path: Path
) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=bucket)
    env = {**s3_bucket_env, "BUCKET_NAME": bucket, "CATALOG_URL": f"sqlite:///{tmp_path}/catalog.db"}
    server = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log").start()
    try:
        resp, total, sha256, growth_mib = stow_streamed_instance(server, GiB)
        assert resp.status_code == 200, resp.text
    finally:
        server.stop()
    # A memory bound, not a timing: 8 MiB parts, a few in flight, never the whole upload.
    assert growth_mib < 128, f"stow-svc RSS grew by {growth_mib:.0f} MiB for a 1 GiB upload to S3"
    (obj,) = s3_admin.list_objects_v2(Bucket=bucket)["Contents"]
    assert obj["Size"] == total
    assert "-" in s3_admin.head_object(Bucket=bucket, Key=obj["Key"])["ETag"]  # a multipart upload
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    check = hashlib.sha256()
    body = s3_admin.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
    for block in iter(lambda: body.read(1 << 22), b""):
        check.update(block)
    assert check.hexdigest() == sha256
