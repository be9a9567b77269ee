"""The bucket check behind ``/readyz`` (a hand-signed HEAD, no SDK) against a real SeaweedFS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from dicomweb_core.bucket import BucketConfig, load_bucket_config
from dicomweb_core.errors import StoreError
from dicomweb_core.stores.s3 import MIN_PART_SIZE, S3ObjectStore
from dicomweb_core.stores.s3probe import BucketProbe, host_header
from tests.servers import free_port

pytest_plugins = ["tests.s3fixtures"]


def changed(config: BucketConfig, **changes: Any) -> BucketConfig:
    fields = {name: getattr(config, name) for name in BucketConfig.__dataclass_fields__}
    return BucketConfig(**{**fields, **changes})


async def check(config: BucketConfig, read_timeout: float = 5.0) -> None:
    probe = BucketProbe(config, connect_timeout=1.0, read_timeout=read_timeout)
    try:
        await probe.check()
    finally:
        await probe.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_s3(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 answering every connection with ``handler``; yields its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_good_credentials_pass(s3_bucket_config: BucketConfig) -> None:
    await check(s3_bucket_config)


async def test_a_wrong_secret_is_refused_and_names_the_credentials(s3_bucket_config: BucketConfig) -> None:
    with pytest.raises(StoreError, match=r"HTTP 403.*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        await check(changed(s3_bucket_config, secret_access_key="not-the-secret"))


async def test_an_unknown_access_key_is_refused(s3_bucket_config: BucketConfig) -> None:
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
        await check(changed(s3_bucket_config, access_key_id="nobody"))


async def test_a_missing_bucket_is_named(s3_bucket_config: BucketConfig) -> None:
    with pytest.raises(StoreError, match=r"'dicomweb-no-such-bucket' does not exist.*fix BUCKET_NAME"):
        await check(changed(s3_bucket_config, name="dicomweb-no-such-bucket"))


async def test_a_closed_port_cannot_connect(s3_bucket_config: BucketConfig) -> None:
    with pytest.raises(StoreError, match="cannot connect to S3"):
        await check(changed(s3_bucket_config, port=free_port()))


async def test_a_server_that_is_not_http_is_a_store_error(s3_bucket_config: BucketConfig) -> None:
    async def gibberish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    async with fake_s3(gibberish) as port:
        with pytest.raises(StoreError, match="not an HTTP answer"):
            await check(changed(s3_bucket_config, port=port))


async def test_a_server_that_hangs_up_is_a_store_error(s3_bucket_config: BucketConfig) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # read first: closing on unread data is a reset
        writer.close()

    async with fake_s3(hang_up) as port:
        with pytest.raises(StoreError, match="connection closed without an answer"):
            await check(changed(s3_bucket_config, port=port))


async def test_a_server_that_never_answers_times_out(s3_bucket_config: BucketConfig) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe gives up and closes

    async with fake_s3(silent) as port:
        with pytest.raises(StoreError, match="TimeoutError"):
            await check(changed(s3_bucket_config, port=port), read_timeout=0.2)


async def test_a_redirect_names_the_region(s3_bucket_config: BucketConfig) -> None:
    async def elsewhere(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-3\r\n\r\n")
        await writer.drain()
        writer.close()

    async with fake_s3(elsewhere) as port:
        with pytest.raises(StoreError, match=r"region 'eu-west-3'.*fix BUCKET_REGION"):
            await check(changed(s3_bucket_config, port=port))


async def test_with_a_proxy_configured_the_probe_honours_it(
    s3_bucket_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not load_bucket_config(s3_bucket_env).via_proxy
    assert not BucketProbe(load_bucket_config(s3_bucket_env), connect_timeout=1, read_timeout=1).via_proxy
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    # The configuration is parsed from the environment the process starts with (here, a copy
    # of it), and httpx finds the proxy there too.
    monkeypatch.setenv("http_proxy", dead_proxy)
    config = load_bucket_config({**s3_bucket_env, "http_proxy": dead_proxy})
    assert config.via_proxy
    assert load_bucket_config({**s3_bucket_env, "HTTPS_PROXY": dead_proxy}).via_proxy
    assert BucketProbe(config, connect_timeout=1, read_timeout=1).via_proxy
    with pytest.raises(StoreError, match="cannot connect to S3"):
        await check(config)  # through the dead proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    await check(config)  # straight to S3
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
        await check(changed(config, secret_access_key="not-the-secret"))


async def test_store_check_does_not_create_the_sdk_client(s3_bucket_config: BucketConfig) -> None:
    store = S3ObjectStore(s3_bucket_config, part_size=MIN_PART_SIZE)
    try:
        await store.check()
        assert store._client is None
        await store.warm()
        client = store._client
        assert client is not None
        assert await store.client() is client
    finally:
        await store.close()


async def test_warm_never_raises(s3_bucket_config: BucketConfig) -> None:
    # An endpoint the SDK rejects outright: creating the client fails; warm() only logs it.
    store = S3ObjectStore(changed(s3_bucket_config, region="not a region"), part_size=MIN_PART_SIZE)
    try:
        await store.warm()
        assert store._client is None
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("scheme", "host", "port", "header"),
    [
        ("http", "s3.local", 80, "s3.local"),
        ("http", "s3.local", 8333, "s3.local:8333"),
        ("https", "s3.example.org", 443, "s3.example.org"),
        ("https", "s3.example.org", 80, "s3.example.org:80"),
        ("http", "::1", 9000, "[::1]:9000"),
    ],
)
def test_host_header_as_signed(scheme: str, host: str, port: int, header: str) -> None:
    config = BucketConfig(scheme, host, port, "bucket", "us-east-1", "key", "secret")
    assert host_header(config) == header
