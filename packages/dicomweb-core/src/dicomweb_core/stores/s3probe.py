"""Is the S3 bucket usable? One SigV4-signed ``HEAD /{bucket}``.

Readiness must not wait for the AWS SDK: importing aioboto3 (botocore, aiohttp) and creating
its client take about half a second, most of a scale-from-zero start. A bucket check needs
none of it, only one signed request, so it is signed here (AWS Signature Version 4, path
style) while the SDK loads in the background for the first real S3 operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..bucket import BucketConfig
from ..errors import StoreError

if TYPE_CHECKING:
    import httpx

#: SHA-256 of the empty payload (a HEAD has no body).
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_CREDENTIAL_HINT = " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def host_header(config: BucketConfig) -> str:
    """The ``Host`` value as signed: the port only when it is not the scheme's default."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    default = 443 if config.scheme == "https" else 80
    return host if config.port == default else f"{host}:{config.port}"


def sign_head_bucket(config: BucketConfig, now: datetime) -> dict[str, str]:
    """The headers of a SigV4-signed ``HEAD /{bucket}`` at time ``now``."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host_header(config), "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "HEAD",
            f"/{config.name}",  # bucket names need no URI encoding (validated in bucket.py)
            "",  # no query
            *(f"{name}:{headers[name]}" for name in sorted(headers)),
            "",  # the canonical headers end with a newline
            signed,
            _EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{config.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + config.secret_access_key).encode(), day)
    for part in (config.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={config.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers


class BucketProbe:
    """Checks one bucket with a signed ``HEAD /{bucket}``; raises the SDK's reasons as
    :class:`StoreError` (missing bucket, credentials refused, S3 unreachable).

    The request goes over a plain asyncio connection: httpx would add ~0.1 s of imports to a
    cold start. When an HTTP(S)_PROXY/ALL_PROXY variable is set, it goes through httpx
    instead, which honours those (and NO_PROXY) as the SDK does.
    """

    def __init__(self, config: BucketConfig, *, connect_timeout: float, read_timeout: float) -> None:
        self._config = config
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._where = f"{config.endpoint_url}/{config.name}/"
        # Through a proxy, httpx finds it (and NO_PROXY) in the environment (trust_env).
        self._via_proxy = config.via_proxy
        self._ssl: ssl.SSLContext | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def via_proxy(self) -> bool:
        return self._via_proxy

    async def check(self) -> None:
        headers = sign_head_bucket(self._config, datetime.now(UTC))
        if self._via_proxy:
            status, phrase, answer = await self._head_httpx(headers)
        else:
            status, phrase, answer = await self._head(headers)
        if status == 200:
            return
        config = self._config
        if status == 404:
            raise StoreError(
                f"S3 bucket {config.name!r} does not exist at {config.endpoint_url} "
                "(create it, or fix BUCKET_NAME)"
            )
        # A HEAD answer has no body: the status and the S3 error code header (when sent) are all.
        code = answer.get("x-amz-error-code", "") or str(status)
        hint = _CREDENTIAL_HINT if status == 403 else ""
        region = answer.get("x-amz-bucket-region", "")
        if status == 301 and region:
            phrase = f"the bucket is in region {region!r}, not {config.region!r} (fix BUCKET_REGION)"
        raise StoreError(f"S3 HEAD bucket {self._where} failed: {code} (HTTP {status}): {phrase}{hint}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _head(self, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        config = self._config
        if config.scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(config.host, config.port, ssl=self._ssl)
        except (OSError, TimeoutError) as exc:
            raise StoreError(
                f"S3 HEAD bucket {self._where} failed: cannot connect to S3: {_text(exc)}"
            ) from exc
        try:
            lines = [f"HEAD /{config.name} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
            writer.write("\r\n".join([*lines, "connection: close", "", ""]).encode())
            async with asyncio.timeout(self._read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise StoreError(
                f"S3 HEAD bucket {self._where} failed: connection closed without an answer"
            ) from exc
        except (OSError, TimeoutError, asyncio.LimitOverrunError) as exc:
            raise StoreError(f"S3 HEAD bucket {self._where} failed: {_text(exc)}") from exc
        finally:
            writer.close()
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        status, _, phrase = rest.partition(" ")
        if not version.startswith("HTTP/") or not status.isdigit():
            raise StoreError(f"S3 HEAD bucket {self._where} failed: not an HTTP answer: {status_line[:80]!r}")
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        return int(status), phrase or "error", answer

    async def _head_httpx(self, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._read_timeout, connect=self._connect_timeout), trust_env=True
            )
        try:
            response = await self._client.head(
                f"{self._config.endpoint_url}/{self._config.name}", headers=headers
            )
        except httpx.TransportError as exc:
            detail = _text(exc)
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)):
                detail = f"cannot connect to S3: {detail}"
            raise StoreError(f"S3 HEAD bucket {self._where} failed: {detail}") from exc
        return response.status_code, response.reason_phrase or "error", dict(response.headers)


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
