"""pytest fixtures for a real S3-compatible server (SeaweedFS, SigV4 credentials).

Enable with ``pytest_plugins = ["tests.s3fixtures"]`` (in ``tests/conftest.py`` or in a
test module). One server and one bucket serve the whole session; tests keep apart by
using keys under a prefix of their own (``s3_prefix``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
import pytest_asyncio
from botocore.config import Config

from dicomweb_core.bucket import BucketConfig, load_bucket_config
from dicomweb_core.stores.s3 import MIN_PART_SIZE, S3ObjectStore
from tests.s3server import S3Server, start_seaweedfs

S3_ACCESS_KEY = "dicomweb-test-access"
S3_SECRET_KEY = "dicomweb-test-secret-7f3a9c"
S3_BUCKET = "dicomweb-test"


def admin_client(server: S3Server) -> Any:
    """A plain (synchronous) boto3 client, to look at the bucket independently of the store."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session, killed at the end."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), S3_ACCESS_KEY, S3_SECRET_KEY)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_admin(s3_server: S3Server) -> Iterator[Any]:
    client = admin_client(s3_server)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_bucket_env(s3_server: S3Server, s3_admin: Any) -> dict[str, str]:
    """``BUCKET_*``/``AWS_*`` variables for the session's bucket (created here)."""
    s3_admin.create_bucket(Bucket=S3_BUCKET)
    return s3_server.bucket_env(S3_BUCKET)


@pytest.fixture(scope="session")
def s3_bucket_config(s3_bucket_env: dict[str, str]) -> BucketConfig:
    return load_bucket_config(s3_bucket_env)


@pytest.fixture
def s3_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}/"


@pytest_asyncio.fixture(loop_scope="function")
async def s3_store(s3_bucket_config: BucketConfig) -> AsyncIterator[S3ObjectStore]:
    """A store on the session's bucket with the smallest part size S3 allows (5 MiB)."""
    store = S3ObjectStore(s3_bucket_config, part_size=MIN_PART_SIZE, max_attempts=2)
    try:
        yield store
    finally:
        await store.close()
