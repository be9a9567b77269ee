"""The AWS SDK as the S3 store uses it: imported on first use (see :mod:`.s3`), and its
errors turned into one line a person can act on."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"})


class Sdk(NamedTuple):
    """The parts of the AWS SDK this module uses (imported on first use, see the module doc)."""

    session: Any
    config: Any
    ClientError: type[Exception]
    #: Everything an S3 call can raise that means "the store failed".
    errors: tuple[type[BaseException], ...]


def load_sdk() -> Sdk:
    """The SDK's names; the imports are cheap once :meth:`S3ObjectStore.client` has loaded them."""
    import aioboto3
    import aiohttp
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    errors = (ClientError, BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
    return Sdk(aioboto3.Session, Config, ClientError, errors)


def error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {})  # a botocore ClientError's
    return str(response.get("Error", {}).get("Code", ""))


def describe(exc: BaseException) -> str:
    """One line a person can act on."""
    from botocore.exceptions import ClientError, EndpointConnectionError  # loaded with the client

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        hint = " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" if code in _CREDENTIAL_CODES else ""
        return f"{code or 'error'} (HTTP {status}): {message}{hint}"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to S3: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
