"""The S3 object store against a real SeaweedFS (SigV4), and the bucket configuration loader."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest

from dicomweb_core.bucket import BucketConfig, load_bucket_config
from dicomweb_core.errors import ConfigError, NotFoundError, StoreError
from dicomweb_core.stores.base import READ_CHUNK
from dicomweb_core.stores.s3 import MIN_PART_SIZE, S3ObjectStore, S3ObjectWriter
from tests.s3server import S3Server, start_seaweedfs
from tests.servers import free_port

pytest_plugins = ["tests.s3fixtures"]

MiB = 1 << 20
BUCKET = "dicomweb-test"  # the session bucket of tests.s3fixtures


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def write_in_chunks(writer: S3ObjectWriter, data: bytes, chunk: int) -> None:
    view = memoryview(data)
    for offset in range(0, len(data), chunk):
        await writer.write(view[offset : offset + chunk])


async def read_all(store: S3ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


def uploads_in_progress(s3_admin: Any, prefix: str) -> list[dict[str, Any]]:
    response = s3_admin.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return list(response.get("Uploads", []))


def store_for(config: BucketConfig, **changes: Any) -> S3ObjectStore:
    fields = {name: getattr(config, name) for name in BucketConfig.__dataclass_fields__}
    return S3ObjectStore(
        BucketConfig(**{**fields, **changes}), part_size=MIN_PART_SIZE, connect_timeout=1, max_attempts=1
    )


# --- the store -------------------------------------------------------------------------------


async def test_check_passes_on_an_existing_bucket(s3_store: S3ObjectStore) -> None:
    await s3_store.check()
    assert s3_store.bucket_name == BUCKET


async def test_small_object_is_one_put_and_reads_back(s3_store: S3ObjectStore, s3_prefix: str) -> None:
    data = payload(300_001)
    key = s3_prefix + "small.dcm"
    writer = await s3_store.open_writer(key)
    await write_in_chunks(writer, data, 65_536)
    assert await s3_store.size(key) is None  # nothing visible before commit
    stored = await writer.commit()

    assert writer.upload_id is None
    assert stored.key == key and stored.size == len(data)
    assert stored.etag == hashlib.md5(data).hexdigest()  # a single PUT's ETag is the MD5
    assert await s3_store.size(key) == len(data)
    assert await read_all(s3_store, key) == data
    assert await s3_store.read_range(key, 1000, 17) == data[1000:1017]


async def test_empty_object_round_trip(s3_store: S3ObjectStore, s3_prefix: str) -> None:
    key = s3_prefix + "empty"
    writer = await s3_store.open_writer(key)
    stored = await writer.commit()
    assert stored.size == 0
    assert await s3_store.size(key) == 0
    assert await read_all(s3_store, key) == b""


async def test_multipart_round_trip_with_ranged_reads(
    s3_store: S3ObjectStore, s3_prefix: str, s3_admin: Any
) -> None:
    data = payload(23 * MiB + 12_345, seed=1)
    key = s3_prefix + "large.dcm"
    writer = await s3_store.open_writer(key)
    await write_in_chunks(writer, data, MiB + 7)  # chunks straddle part boundaries
    assert writer.upload_id is not None
    assert await s3_store.size(key) is None
    stored = await writer.commit()

    assert stored.size == len(data)
    assert stored.etag.endswith("-5")  # 4 full 5 MiB parts + the rest
    assert s3_admin.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(data)
    assert uploads_in_progress(s3_admin, s3_prefix) == []

    chunks = [chunk async for chunk in s3_store.read(key)]
    assert b"".join(chunks) == data
    assert all(len(chunk) == READ_CHUNK for chunk in chunks[:-1])

    boundary = 5 * MiB
    assert await s3_store.read_range(key, boundary - 10, 20) == data[boundary - 10 : boundary + 10]
    assert await read_all(s3_store, key, 3 * MiB + 1, 13 * MiB - 1) == data[3 * MiB + 1 : 13 * MiB - 1]
    assert await read_all(s3_store, key, len(data) - 100) == data[-100:]
    assert await s3_store.read_range(key, len(data) - 5, 50) == data[-5:]  # short at the end
    assert await read_all(s3_store, key, len(data)) == b""  # past the end: nothing, like a file
    assert await read_all(s3_store, key, 10, 10) == b""


async def test_parts_in_flight_never_exceed_max_concurrency(
    s3_bucket_config: BucketConfig, s3_prefix: str
) -> None:
    store = S3ObjectStore(s3_bucket_config, part_size=MIN_PART_SIZE, max_concurrency=2)
    in_flight = 0
    peak = 0

    def before(**_: Any) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)

    def after(**_: Any) -> None:
        nonlocal in_flight
        in_flight -= 1

    try:
        s3 = await store.client()
        s3.meta.events.register("before-call.s3.UploadPart", before)
        s3.meta.events.register("after-call.s3.UploadPart", after)
        writer = await store.open_writer(s3_prefix + "bounded")
        await write_in_chunks(writer, payload(6 * MIN_PART_SIZE + 1), 4 * MiB)
        stored = await writer.commit()
    finally:
        await store.close()
    assert stored.etag.endswith("-7")
    assert peak == 2  # parts did overlap, and never more than two at once


async def test_abort_leaves_no_object_and_no_upload(
    s3_store: S3ObjectStore, s3_prefix: str, s3_admin: Any
) -> None:
    key = s3_prefix + "aborted.dcm"
    writer = await s3_store.open_writer(key)
    await write_in_chunks(writer, payload(12 * MiB), MiB)
    assert writer.upload_id is not None
    await asyncio.sleep(0)
    assert [u["UploadId"] for u in uploads_in_progress(s3_admin, s3_prefix)] == [writer.upload_id]

    await writer.abort()
    await writer.abort()  # idempotent

    assert uploads_in_progress(s3_admin, s3_prefix) == []
    assert await s3_store.size(key) is None
    with pytest.raises(StoreError, match="already committed or aborted"):
        await writer.write(b"more")


async def test_a_cancelled_writer_leaves_no_upload(
    s3_store: S3ObjectStore, s3_prefix: str, s3_admin: Any
) -> None:
    """The client goes away mid-upload (the request task is cancelled): the upload is aborted."""
    key = s3_prefix + "cancelled.dcm"
    writer = await s3_store.open_writer(key)
    chunk = memoryview(payload(MiB))

    under_way = asyncio.Event()

    async def feed() -> None:
        for n in range(100):
            await writer.write(chunk)
            if n == 6:  # the first part is on its way
                under_way.set()

    task = asyncio.create_task(feed())
    async with asyncio.timeout(30):
        await under_way.wait()
    assert writer.upload_id is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.abort()  # what a caller does on the way out: already done, harmless

    assert uploads_in_progress(s3_admin, s3_prefix) == []
    assert await s3_store.size(key) is None


async def test_abort_of_a_small_object_writes_nothing(s3_store: S3ObjectStore, s3_prefix: str) -> None:
    writer = await s3_store.open_writer(s3_prefix + "small-aborted")
    await writer.write(b"x" * 1000)
    await writer.abort()
    assert await s3_store.size(s3_prefix + "small-aborted") is None
    assert [key async for key in s3_store.list_keys(s3_prefix)] == []


async def test_a_failing_part_aborts_the_upload(
    s3_store: S3ObjectStore, s3_prefix: str, s3_admin: Any
) -> None:
    """The upload vanishes under the writer (as on an S3 restart losing it): StoreError, nothing left."""
    key = s3_prefix + "lost-upload.dcm"
    writer = await s3_store.open_writer(key)
    await write_in_chunks(writer, payload(6 * MiB), MiB)
    assert writer.upload_id is not None
    # Wait until the first part has landed (the upload is under way), then lose the upload.
    deadline = time.monotonic() + 10
    while not s3_admin.list_parts(Bucket=BUCKET, Key=key, UploadId=writer.upload_id).get("Parts"):
        assert time.monotonic() < deadline, "the first part never landed"
        await asyncio.sleep(0.02)
    s3_admin.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=writer.upload_id)

    with pytest.raises(StoreError, match="NoSuchUpload") as failure:
        await write_in_chunks(writer, payload(10 * MiB), MiB)
        await writer.commit()
    assert "S3 UploadPart" in failure.value.reason or "CompleteMultipartUpload" in failure.value.reason
    assert await s3_store.size(key) is None
    assert uploads_in_progress(s3_admin, s3_prefix) == []


async def test_missing_objects(s3_store: S3ObjectStore, s3_prefix: str) -> None:
    key = s3_prefix + "nothing-here"
    assert await s3_store.size(key) is None
    await s3_store.delete(key)  # missing is fine
    with pytest.raises(NotFoundError):
        await read_all(s3_store, key)


async def test_delete_removes_the_object(s3_store: S3ObjectStore, s3_prefix: str) -> None:
    key = s3_prefix + "doomed"
    writer = await s3_store.open_writer(key)
    await writer.write(b"bye")
    await writer.commit()
    await s3_store.delete(key)
    assert await s3_store.size(key) is None


async def test_list_keys_follows_pages(s3_bucket_config: BucketConfig, s3_prefix: str) -> None:
    store = S3ObjectStore(s3_bucket_config, list_page_size=7)
    list_calls = 0

    def count(**_: Any) -> None:
        nonlocal list_calls
        list_calls += 1

    async def put(key: str) -> None:
        writer = await store.open_writer(key)
        await writer.write(key.encode())
        await writer.commit()

    try:
        keys = sorted(f"{s3_prefix}studies/{n:03d}.dcm" for n in range(25))
        await asyncio.gather(*(put(key) for key in keys), put(s3_prefix + "other/outside.dcm"))
        (await store.client()).meta.events.register("before-call.s3.ListObjectsV2", count)
        listed = [key async for key in store.list_keys(s3_prefix + "studies/")]
    finally:
        await store.close()
    assert listed == keys
    assert list_calls == 4  # 7 + 7 + 7 + 4


async def test_missing_bucket_fails_check_until_ensured(s3_bucket_config: BucketConfig) -> None:
    store = store_for(s3_bucket_config, name="dicomweb-missing-bucket")
    try:
        with pytest.raises(StoreError, match="'dicomweb-missing-bucket' does not exist"):
            await store.check()
        await store.ensure_bucket()
        await store.ensure_bucket()  # already there: fine
        await store.check()
    finally:
        await store.close()


async def test_wrong_credentials_are_a_store_error(s3_bucket_config: BucketConfig, s3_prefix: str) -> None:
    store = store_for(s3_bucket_config, secret_access_key="not-the-secret")
    try:
        with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
            await store.check()
        writer = await store.open_writer(s3_prefix + "denied")
        await writer.write(b"data")
        with pytest.raises(StoreError, match=r"SignatureDoesNotMatch|AccessDenied"):
            await writer.commit()
        writer = await store.open_writer(s3_prefix + "denied-large")
        with pytest.raises(StoreError, match=r"SignatureDoesNotMatch|AccessDenied"):
            await writer.write(bytes(MIN_PART_SIZE))  # a full part starts a multipart upload
        with pytest.raises(StoreError):
            await store.size(s3_prefix + "denied")
    finally:
        await store.close()


async def test_unreachable_s3_fails_fast(s3_bucket_config: BucketConfig, s3_prefix: str) -> None:
    store = store_for(s3_bucket_config, port=free_port())  # nothing listens there
    try:
        # A generous bound: a hang (retries with long timeouts) would trip it, a quick failure won't.
        async with asyncio.timeout(20):
            with pytest.raises(StoreError, match="cannot connect to S3"):
                await store.check()
            writer = await store.open_writer(s3_prefix + "unreachable")
            with pytest.raises(StoreError, match="cannot connect to S3"):
                await writer.write(bytes(MIN_PART_SIZE))  # S3 unreachable at the start of a part
            with pytest.raises(StoreError):
                await read_all(store, s3_prefix + "unreachable")
    finally:
        await store.close()


async def test_s3_dying_mid_upload_is_a_store_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = start_seaweedfs(tmp_path, "dying-access", "dying-secret")
    try:
        admin_env = server.bucket_env("dying")
        store = S3ObjectStore(load_bucket_config(admin_env), part_size=MIN_PART_SIZE, connect_timeout=1)
        await store.ensure_bucket()
        writer = await store.open_writer("studies/1/dying.dcm")
        await write_in_chunks(writer, payload(7 * MiB), MiB)
        upload_id = writer.upload_id
        assert upload_id is not None
        server.stop()  # killed while the parts are on their way

        caplog.set_level(logging.WARNING, logger="dicomweb_core.stores.s3")
        async with asyncio.timeout(60):
            with pytest.raises(StoreError) as failure:
                await write_in_chunks(writer, payload(10 * MiB), MiB)
                await writer.commit()
        assert f"aborting multipart upload {upload_id} failed too" in failure.value.reason
        assert any(upload_id in record.getMessage() for record in caplog.records)  # abort was attempted
        await store.close()
    finally:
        server.stop()


@pytest.mark.slow
async def test_one_gib_streams_with_bounded_memory(s3_bucket_config: BucketConfig, s3_prefix: str) -> None:
    store = S3ObjectStore(s3_bucket_config)  # production defaults: 8 MiB parts, 4 in flight
    key = s3_prefix + "one-gib.dcm"
    chunk = memoryview(payload(MiB, seed=3))
    total = 1 << 30
    try:
        writer = await store.open_writer(key)
        await writer.write(chunk)  # warm up the client and the connection pool before measuring
        baseline = rss()
        peak = baseline
        for _ in range(total // MiB - 1):
            await writer.write(chunk)
            peak = max(peak, rss())
        stored = await writer.commit()
        peak = max(peak, rss())

        assert stored.size == total
        assert await store.size(key) == total
        assert await store.read_range(key, total - MiB, MiB) == chunk.tobytes()
        # Bound: 8 MiB x (4 in flight + 1 filling) plus client buffers, far below the object size.
        assert peak - baseline < 128 * MiB, f"RSS grew by {(peak - baseline) / MiB:.0f} MiB"
        await store.delete(key)
    finally:
        await store.close()


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# --- the bucket configuration ----------------------------------------------------------------

BASE_ENV = {
    "BUCKET_HOST": "s3.example.org",
    "BUCKET_NAME": "img-ingest",
    "AWS_ACCESS_KEY_ID": "AKID",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t",
}


@pytest.mark.parametrize(
    ("host", "port", "endpoint"),
    [
        ("s3.example.org", "443", "https://s3.example.org:443"),
        ("s3.example.org", "80", "http://s3.example.org:80"),
        ("minio.storage", "9000", "http://minio.storage:9000"),
        ("s3.example.org", "", "https://s3.example.org:443"),
        ("https://minio.storage", "9000", "https://minio.storage:9000"),
        ("http://s3.example.org", "443", "http://s3.example.org:443"),
        ("http://s3.example.org/", "", "http://s3.example.org:80"),
        ("minio.storage:9000", "", "http://minio.storage:9000"),
        ("[::1]", "8333", "http://[::1]:8333"),
    ],
)
def test_endpoint_from_host_and_port(host: str, port: str, endpoint: str) -> None:
    env = {**BASE_ENV, "BUCKET_HOST": host}
    if port:
        env["BUCKET_PORT"] = port
    assert load_bucket_config(env).endpoint_url == endpoint


def test_config_from_environment() -> None:
    env = {**BASE_ENV, "BUCKET_PORT": "443", "BUCKET_REGION": "eu-de", "BUCKET_SUBREGION": "fra"}
    config = load_bucket_config(env)
    assert (config.name, config.region, config.subregion) == ("img-ingest", "eu-de", "fra")
    assert (config.access_key_id, config.secret_access_key) == ("AKID", "s3cr3t")
    assert "s3cr3t" not in repr(config)
    assert load_bucket_config(BASE_ENV).region == "us-east-1"


def test_config_from_mounted_configmap_and_secret(tmp_path: Path) -> None:
    config_dir, secret_dir = tmp_path / "config", tmp_path / "secret"
    config_dir.mkdir()
    secret_dir.mkdir()
    for name, value in {"BUCKET_HOST": "minio", "BUCKET_PORT": "9000", "BUCKET_NAME": "img"}.items():
        (config_dir / name).write_text(value + "\n")  # as `kubectl create --from-file` leaves them
    (secret_dir / "AWS_ACCESS_KEY_ID").write_text("from-file")
    (secret_dir / "AWS_SECRET_ACCESS_KEY").write_text("file-secret\n")
    paths = {"BUCKET_CONFIG_PATH": str(config_dir), "BUCKET_SECRET_PATH": str(secret_dir)}

    config = load_bucket_config(paths)
    assert config.endpoint_url == "http://minio:9000"
    assert (config.name, config.access_key_id, config.secret_access_key) == (
        "img",
        "from-file",
        "file-secret",
    )

    overridden = load_bucket_config({**paths, "BUCKET_PORT": "443", "AWS_ACCESS_KEY_ID": "from-env"})
    assert overridden.endpoint_url == "https://minio:443"  # the environment wins over the files
    assert overridden.access_key_id == "from-env"


@pytest.mark.parametrize("key", ["BUCKET_HOST", "BUCKET_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_a_missing_key_is_named(key: str) -> None:
    env = {name: value for name, value in BASE_ENV.items() if name != key}
    with pytest.raises(ConfigError, match=f"^{key} is not set"):
        load_bucket_config(env)
    with pytest.raises(ConfigError, match=f"^{key} is not set"):
        load_bucket_config({**env, key: "  "})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"BUCKET_PORT": "https"}, "BUCKET_PORT='https' is not a port number"),
        ({"BUCKET_PORT": "70000"}, "BUCKET_PORT='70000' is out of range"),
        ({"BUCKET_HOST": "ftp://s3.example.org"}, "scheme must be http or https"),
        ({"BUCKET_HOST": "https://s3.example.org/bucket"}, "without a path"),
        ({"BUCKET_HOST": "minio:99999"}, "BUCKET_HOST='minio:99999' is not a host name or URL"),
        ({"BUCKET_HOST": "minio:9000", "BUCKET_PORT": "9001"}, "contradicts the port in BUCKET_HOST"),
        ({"BUCKET_NAME": "Bad_Bucket"}, "BUCKET_NAME='Bad_Bucket' is not a valid S3 bucket name"),
        ({"BUCKET_CONFIG_PATH": "/nonexistent/config"}, "BUCKET_CONFIG_PATH='/nonexistent/config' is not a"),
    ],
)
def test_bad_values_are_one_clear_line(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        load_bucket_config({**BASE_ENV, **changes})
    assert message in failure.value.reason
    assert "\n" not in failure.value.reason


def test_server_fixture_uses_sigv4_credentials(s3_server: S3Server) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert load_bucket_config(s3_server.bucket_env("any")).port == s3_server.s3_port
