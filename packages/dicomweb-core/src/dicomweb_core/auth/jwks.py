"""The issuer's signing keys (JWKS), fetched once and cached.

Keys are looked up by ``kid``. A ``kid`` we do not know triggers one refetch (key rotation at the
issuer), but at most once per ``min_refresh`` seconds, and concurrent requests share a single
fetch: a flood of tokens with made-up key ids costs the issuer one request per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from .errors import IssuerUnavailableError, TokenError

log = logging.getLogger("dicomweb.auth")

#: A JWKS document larger than this is refused (an issuer publishes a handful of keys).
MAX_JWKS_BYTES = 1024 * 1024


class JwksCache:
    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        min_refresh: float,
        max_age: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, Mapping[str, Any]] = {}
        self._prepared: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        #: JWKS fetches so far (successful or not), for the logs and the tests.
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self._max_age:
            await self._refresh(self._generation, rate_limited=self._fetched_at is not None)
        found = self._lookup(kid, alg)
        if found is None and self._may_refresh():
            await self._refresh(self._generation, rate_limited=True)
            found = self._lookup(kid, alg)
        if found is None:
            raise TokenError("the token's signing key (kid) is not one of the issuer's keys")
        return found

    def _may_refresh(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refresh

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is None:
            # No kid: acceptable only when the issuer publishes exactly one key.
            if len(self._keys) != 1:
                return None
            kid = next(iter(self._keys))
        jwk = self._keys.get(kid)
        if jwk is None:
            return None
        if jwk.get("alg") not in (None, alg):
            raise TokenError(f"the token's algorithm {alg} is not its key's ({jwk.get('alg')})")
        prepared = self._prepared.get((kid, alg))
        if prepared is None:
            try:
                prepared = jwt.PyJWK(dict(jwk), algorithm=alg)
            except jwt.PyJWTError as exc:
                raise TokenError(f"the token's key cannot verify {alg}: {exc}") from None
            self._prepared[(kid, alg)] = prepared
        return prepared

    async def _refresh(self, generation: int, *, rate_limited: bool) -> None:
        async with self._lock:
            if self._generation != generation:
                return  # another request refreshed while this one waited
            if rate_limited and not self._may_refresh():
                return
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except IssuerUnavailableError as exc:
                if not self._keys:
                    raise
                log.warning("JWKS refresh failed, keeping the %d cached keys: %s", len(self._keys), exc)
                return
            self._keys = keys
            self._prepared = {}
            self._fetched_at = self._clock()
            self._generation += 1
            log.info("JWKS: %d signing keys from the issuer (%s)", len(keys), ", ".join(keys))

    async def _fetch(self) -> dict[str, Mapping[str, Any]]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                url = self._jwks_url or await self._discover(client)
                document = await _get_json(client, url)
        except httpx.HTTPError as exc:
            raise IssuerUnavailableError(f"cannot reach the token issuer: {exc!r}") from None
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise IssuerUnavailableError("the issuer's JWKS has no 'keys' list")
        keys: dict[str, Mapping[str, Any]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            if entry.get("kty") not in ("RSA", "EC", "OKP") or "d" in entry:
                continue  # symmetric keys are never used; a private key is never trusted
            keys[str(kid) if kid is not None else ""] = entry
        if not keys:
            raise IssuerUnavailableError("the issuer's JWKS has no usable signing key")
        return keys

    async def _discover(self, client: httpx.AsyncClient) -> str:
        document = await _get_json(client, self._issuer.rstrip("/") + "/.well-known/openid-configuration")
        if document.get("issuer") != self._issuer:
            raise IssuerUnavailableError(
                f"the discovery document names issuer {document.get('issuer')!r}, not {self._issuer!r}"
            )
        url = document.get("jwks_uri")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise IssuerUnavailableError("the discovery document has no jwks_uri")
        self._jwks_url = url
        return url


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    async with client.stream("GET", url, headers={"accept": "application/json"}) as response:
        if response.status_code != 200:
            raise IssuerUnavailableError(f"GET {url} answered {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise IssuerUnavailableError(f"GET {url}: document over {MAX_JWKS_BYTES} bytes")
    try:
        import orjson

        document = orjson.loads(body)
    except ValueError:
        raise IssuerUnavailableError(f"GET {url}: not JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnavailableError(f"GET {url}: not a JSON object")
    return document
