"""The S3 object store (aioboto3): multipart uploads while the bytes arrive, ranged GETs.

A writer buffers incoming chunks into one part (the only copy of the bytes); small
objects end as a single PutObject, larger ones become a multipart upload whose parts
are sent while the next part fills, at most ``max_concurrency`` in flight. Memory per
writer is bounded by ``part_size * (max_concurrency + 1)`` whatever the object size.
Any S3 failure aborts the multipart upload, so nothing is left under the key and no
incomplete upload lingers (unless S3 is unreachable for the abort too: a bucket
lifecycle rule ``AbortIncompleteMultipartUpload`` is the backstop for that case).

The SDK (aioboto3: botocore, aiohttp) is imported on first use, in a worker thread, not with
this module: its import and client creation cost about half a second, and readiness only
needs the bucket check of :mod:`.s3probe`. :meth:`S3ObjectStore.warm` starts that work at
start-up so the first STOW or WADO request finds the client ready.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

from ..bucket import BucketConfig
from ..errors import NotFoundError, StoreError
from .base import READ_CHUNK, Leftover, ObjectInfo, ObjectWriter, StoredObject
from .s3probe import BucketProbe
from .s3sdk import describe, error_code, load_sdk

logger = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_PART_SIZE = 8 * MiB
#: S3 refuses parts smaller than this (except the last one).
MIN_PART_SIZE = 5 * MiB
#: S3's limit on the number of parts of one upload.
MAX_PARTS = 10_000


class S3ObjectStore:
    """An :class:`~dicomweb_core.stores.base.ObjectStore` on one S3 bucket.

    One aioboto3 client is created on first use and shared by every request (creating
    a client costs milliseconds of endpoint resolution and a new connection pool).
    ``connect_timeout`` and ``max_attempts`` keep an unreachable S3 from holding a
    request for long; botocore retries transient errors with backoff in between.
    :meth:`check` does not use the client (see :mod:`.s3probe`).
    """

    def __init__(
        self,
        config: BucketConfig,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        max_connections: int = 64,
        list_page_size: int = 1000,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (the S3 minimum)")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.bucket_name = config.name
        self.endpoint_url = config.endpoint_url
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self._config = config
        self._list_page_size = list_page_size
        self._client_options: dict[str, Any] = dict(
            region_name=config.region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_connections,
            # Path-style works with every S3-compatible server and with dotted bucket names.
            s3={"addressing_style": "path"},
            # Checksums only where S3 demands them: SigV4 already hashes each payload.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._client_lock = asyncio.Lock()
        self._probe = BucketProbe(config, connect_timeout=connect_timeout, read_timeout=read_timeout)

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.endpoint_url!r}, bucket={self.bucket_name!r})"

    async def client(self) -> Any:
        """The shared aioboto3 S3 client (created on first use)."""
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    # The import would block the event loop for ~0.4 s: a thread does it.
                    sdk = await asyncio.to_thread(load_sdk)
                    stack = AsyncExitStack()
                    self._client = await stack.enter_async_context(
                        sdk.session().client(
                            "s3",
                            endpoint_url=self._config.endpoint_url,
                            region_name=self._config.region,
                            aws_access_key_id=self._config.access_key_id,
                            aws_secret_access_key=self._config.secret_access_key,
                            config=sdk.config(**self._client_options),
                        )
                    )
                    self._stack = stack
        return self._client

    async def warm(self) -> None:
        """Load the SDK and create the client now (in the background at start-up); never raises."""
        try:
            await self.client()
        except Exception as exc:  # the first request will raise it again, with its context
            logger.warning("could not create the S3 client yet: %s", exc)

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        await self._probe.close()
        if stack is not None:
            await stack.aclose()

    async def open_writer(self, key: str) -> S3ObjectWriter:
        return S3ObjectWriter(self, key, await self.client())

    async def commit_all(self, writers: Sequence[ObjectWriter]) -> list[StoredObject | StoreError]:
        """Commit several writers concurrently; per writer, its object or why it failed."""
        results = await asyncio.gather(*(w.commit() for w in writers), return_exceptions=True)
        out: list[StoredObject | StoreError] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, StoreError):
                raise r
            out.append(r)
        return out

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` in ``READ_CHUNK`` chunks with one (ranged) GET."""
        if start < 0 or (end is not None and end <= start):
            return
        request: dict[str, str] = {"Bucket": self.bucket_name, "Key": key}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        s3 = await self.client()
        sdk = load_sdk()
        try:
            response = await s3.get_object(**request)
        except sdk.ClientError as exc:
            code = error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise NotFoundError(f"no object {key!r} in bucket {self.bucket_name!r}") from exc
            if code == "InvalidRange":  # start at or past the end: nothing to read, as with a file
                return
            raise self._error("GET", key, exc) from exc
        except sdk.errors as exc:
            raise self._error("GET", key, exc) from exc
        remaining = int(response["ContentLength"])
        body = response["Body"]
        async with body:
            while remaining > 0:
                want = min(READ_CHUNK, remaining)
                try:
                    # readexactly: large even chunks, whatever sizes the socket delivers.
                    chunk: bytes = await body.content.readexactly(want)
                except asyncio.IncompleteReadError as exc:
                    raise StoreError(
                        f"S3 GET {self._where(key)}: connection closed {remaining - len(exc.partial)} "
                        "bytes before the end of the object"
                    ) from exc
                except sdk.errors as exc:
                    raise self._error("GET", key, exc) from exc
                remaining -= want
                yield chunk

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer if the object ends first)."""
        if length <= 0:
            return b""
        chunks = [chunk async for chunk in self.read(key, start, start + length)]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def size(self, key: str) -> int | None:
        s3 = await self.client()
        sdk = load_sdk()
        try:
            response = await s3.head_object(Bucket=self.bucket_name, Key=key)
        except sdk.ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error("HEAD", key, exc) from exc
        except sdk.errors as exc:
            raise self._error("HEAD", key, exc) from exc
        return int(response["ContentLength"])

    async def delete(self, key: str) -> None:
        s3 = await self.client()
        sdk = load_sdk()
        try:
            await s3.delete_object(Bucket=self.bucket_name, Key=key)
        except sdk.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchKey"):
                raise self._error("DELETE", key, exc) from exc
        except sdk.errors as exc:
            raise self._error("DELETE", key, exc) from exc

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key under ``prefix`` (ListObjectsV2, one page at a time)."""
        s3 = await self.client()
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket_name, Prefix=prefix, PaginationConfig={"PageSize": self._list_page_size}
        )
        try:
            async for page in pages:
                for item in page.get("Contents", ()):
                    yield str(item["Key"])
        except load_sdk().errors as exc:
            raise self._error("LIST", prefix + "*", exc) from exc

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        s3 = await self.client()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket_name, Prefix=prefix, PaginationConfig={"PageSize": self._list_page_size}
        )
        try:
            async for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=str(item["Key"]),
                        size=int(item.get("Size", 0)),
                        modified=item["LastModified"].timestamp(),
                    )
        except load_sdk().errors as exc:
            raise self._error("LIST", prefix + "*", exc) from exc

    async def list_leftovers(self) -> AsyncIterator[Leftover]:
        """Incomplete multipart uploads (``name`` is ``key`` NUL ``upload id``)."""
        s3 = await self.client()
        pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket_name)
        try:
            async for page in pages:
                for up in page.get("Uploads", ()):
                    yield Leftover(
                        kind="incomplete multipart upload",
                        name=f"{up['Key']}\0{up['UploadId']}",
                        modified=up["Initiated"].timestamp(),
                    )
        except load_sdk().errors as exc:
            raise self._error("LIST uploads", "", exc) from exc

    async def remove_leftover(self, leftover: Leftover) -> None:
        key, _, upload_id = leftover.name.partition("\0")
        s3 = await self.client()
        sdk = load_sdk()
        try:
            await s3.abort_multipart_upload(Bucket=self.bucket_name, Key=key, UploadId=upload_id)
        except sdk.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchUpload"):
                raise self._error("ABORT upload", key, exc) from exc
        except sdk.errors as exc:
            raise self._error("ABORT upload", key, exc) from exc

    async def check(self) -> None:
        """HeadBucket: raise :class:`StoreError` saying why the bucket is not usable.

        One signed request of its own (:mod:`.s3probe`), so readiness never waits for the SDK.
        """
        await self._probe.check()

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, embedded use; not done at start-up)."""
        s3 = await self.client()
        sdk = load_sdk()
        try:
            await s3.head_bucket(Bucket=self.bucket_name)
            return
        except sdk.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._error("HEAD bucket", "", exc) from exc
        except sdk.errors as exc:
            raise self._error("HEAD bucket", "", exc) from exc
        request: dict[str, Any] = {"Bucket": self.bucket_name}
        if self._config.region != "us-east-1":  # AWS wants the region spelled out elsewhere
            request["CreateBucketConfiguration"] = {"LocationConstraint": self._config.region}
        try:
            await s3.create_bucket(**request)
        except sdk.ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error("CREATE bucket", "", exc) from exc
        except sdk.errors as exc:
            raise self._error("CREATE bucket", "", exc) from exc

    def _where(self, key: str) -> str:
        return f"{self.endpoint_url}/{self.bucket_name}/{key}"

    def _error(self, action: str, key: str, exc: BaseException) -> StoreError:
        return StoreError(f"S3 {action} {self._where(key)} failed: {describe(exc)}")


class S3ObjectWriter:
    """One object being written: a single PUT if small, a multipart upload otherwise."""

    def __init__(self, store: S3ObjectStore, key: str, s3: Any) -> None:
        self.key = key
        self._store = store
        self._s3 = s3
        self._bucket = store.bucket_name
        self._part_size = store.part_size
        # The part being filled. A BytesIO rather than a bytearray: botocore hashes it and
        # aiohttp sends it in slices, where a large bytes-like body would be written to the
        # socket in one call (aiohttp warns about that). It grows as bytes arrive, so a small
        # object never costs a whole part of memory.
        self._buffer = io.BytesIO()
        self._size = 0
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(store.max_concurrency)
        self._closed = False
        self._hash = hashlib.sha256()

    @property
    def upload_id(self) -> str | None:
        """The multipart upload's id, once one has been started."""
        return self._upload_id

    async def write(self, data: bytes | memoryview) -> None:
        if self._closed:
            raise StoreError(f"S3 writer for {self.key!r} is already committed or aborted")
        view = memoryview(data).cast("B")
        self._size += len(view)
        offset = 0
        while offset < len(view):
            take = min(self._part_size - self._buffer.tell(), len(view) - offset)
            self._buffer.write(view[offset : offset + take])
            offset += take
            if self._buffer.tell() == self._part_size:
                await self._guard("UploadPart", self._send_part(self._take_buffer()))

    async def commit(self) -> StoredObject:
        if self._closed:
            raise StoreError(f"S3 writer for {self.key!r} is already committed or aborted")
        if self._upload_id is None:
            body = self._take_buffer()
            await self._digest(body)
            response = await self._guard(
                "PutObject", self._s3.put_object(Bucket=self._bucket, Key=self.key, Body=body)
            )
        else:
            if self._buffer.tell():
                await self._guard("UploadPart", self._send_part(self._take_buffer()))
            response = await self._guard("CompleteMultipartUpload", self._complete())
        self._closed = True
        etag = str(response.get("ETag", "")).strip('"')
        return StoredObject(key=self.key, size=self._size, etag=etag, digest=self._hash.hexdigest())

    async def _digest(self, part: io.BytesIO) -> None:
        """Hash a part in order (small ones right here, large ones in a worker thread:
        hashlib releases the GIL, the event loop goes on)."""
        view = part.getbuffer()
        try:
            if len(view) < 256 * 1024:
                self._hash.update(view)
            else:
                await asyncio.to_thread(self._hash.update, view)
        finally:
            view.release()

    async def abort(self) -> None:
        """Stop the uploads in flight and abort the multipart upload; never raises.

        If S3 cannot be reached, the incomplete upload stays (logged with its id) until a
        bucket lifecycle rule removes it.
        """
        await self._abort()

    async def _abort(self) -> str:
        """Abort; return how it went, for the reason of the :class:`StoreError` being raised."""
        if self._closed:
            return ""
        self._closed = True
        self._buffer = io.BytesIO()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._upload_id is None:
            return ""
        try:
            await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self.key, UploadId=self._upload_id)
        except load_sdk().errors as exc:
            logger.warning(
                "could not abort S3 multipart upload %s of %s: %s",
                self._upload_id,
                self._store._where(self.key),
                describe(exc),
            )
            return f"; aborting multipart upload {self._upload_id} failed too: {describe(exc)}"
        return f"; multipart upload {self._upload_id} aborted"

    async def _guard(self, action: str, operation: Any) -> Any:
        """Await an S3 operation; on failure abort everything and raise one :class:`StoreError`."""
        try:
            return await operation
        except StoreError as exc:
            aborted = await self._abort()
            raise StoreError(exc.reason + aborted) from exc
        except load_sdk().errors as exc:
            aborted = await self._abort()
            raise StoreError(
                f"S3 {action} {self._store._where(self.key)} failed: {describe(exc)}{aborted}"
            ) from exc
        except BaseException:  # cancelled (client gone): leave no upload behind either
            await asyncio.shield(self._abort())
            raise

    def _take_buffer(self) -> io.BytesIO:
        """The filled buffer, rewound for reading; a fresh one takes its place."""
        part, self._buffer = self._buffer, io.BytesIO()
        part.seek(0)
        return part

    async def _send_part(self, part: io.BytesIO) -> None:
        """Start uploading one part, once fewer than ``max_concurrency`` are in flight."""
        await self._digest(part)
        if self._upload_id is None:
            response = await self._s3.create_multipart_upload(Bucket=self._bucket, Key=self.key)
            self._upload_id = str(response["UploadId"])
        if self._next_part > MAX_PARTS:
            raise StoreError(
                f"S3 object {self.key!r} needs more than {MAX_PARTS} parts of {self._part_size} bytes"
            )
        await self._slots.acquire()
        self._raise_failed()
        number, self._next_part = self._next_part, self._next_part + 1
        self._tasks.append(asyncio.create_task(self._upload_part(number, part)))

    async def _upload_part(self, number: int, part: io.BytesIO) -> None:
        try:
            response = await self._s3.upload_part(
                Bucket=self._bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=part
            )
            self._etags[number] = str(response["ETag"])
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        """Re-raise the error of the first part upload that failed (and forget finished ones)."""
        still_running = []
        for task in self._tasks:
            if not task.done():
                still_running.append(task)
            elif not task.cancelled() and (error := task.exception()) is not None:
                raise error
        self._tasks = still_running

    async def _complete(self) -> Any:
        running, self._tasks = self._tasks, []
        try:
            await asyncio.gather(*running)
        finally:
            self._tasks = [task for task in running if not task.done()]
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in sorted(self._etags.items())]
        return await self._s3.complete_multipart_upload(
            Bucket=self._bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
        )
