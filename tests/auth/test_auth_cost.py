"""What a token check costs per request with the issuer's JWKS cached: the signature check with
PyJWT (RS256, 2048-bit key, a token from the real provider), a hit in the verified-token cache,
and the whole middleware in front of an empty ASGI app. The numbers are printed (run with -s)
and held to loose bounds, so a regression by an order of magnitude fails."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from dicomweb_core.auth.jwks import JwksCache
from dicomweb_core.auth.middleware import AuthMiddleware
from dicomweb_core.auth.settings import AuthSettings, load_auth_settings
from dicomweb_core.auth.verifier import TokenVerifier
from tests.auth.conftest import OidcProvider, auth_env

ROUNDS = 400


def settings_for(oidc: OidcProvider, cache: str) -> AuthSettings:
    return load_auth_settings(auth_env(oidc, AUTH_TOKEN_CACHE_SECONDS=cache))


def verifier_for(settings: AuthSettings) -> TokenVerifier:
    jwks = JwksCache(
        issuer=settings.issuer,
        jwks_url="",
        min_refresh=settings.jwks_min_refresh_seconds,
        max_age=settings.jwks_max_age_seconds,
        timeout=5,
    )
    return TokenVerifier(settings, jwks)


async def per_call_us(call: Callable[[], Awaitable[object]]) -> float:
    await call()  # JWKS fetched, key prepared: what every later request finds
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await call()
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def request_through(app: AuthMiddleware, token: str) -> Callable[[], Awaitable[object]]:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/dicomweb/studies",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 5000),
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def call() -> object:
        await app(dict(scope), receive, send)
        assert statuses[-1] == 200
        return None

    return call


def test_token_verification_cost_per_request(oidc: OidcProvider) -> None:
    token = oidc.token("dicom.read")

    async def measure() -> dict[str, float]:
        full = settings_for(oidc, "0")
        cached = settings_for(oidc, "30")
        uncached_verifier = verifier_for(full)
        cached_verifier = verifier_for(cached)
        return {
            "signature check (RS256, JWKS cached)": await per_call_us(
                lambda: uncached_verifier.verify(token)
            ),
            "verified-token cache hit": await per_call_us(lambda: cached_verifier.verify(token)),
            "middleware, every token verified": await per_call_us(
                request_through(
                    AuthMiddleware(
                        empty_app,
                        settings=full,
                        roots=["/dicomweb"],
                        open_paths=[],
                        audit=None,
                        verifier=verifier_for(full),
                    ),
                    token,
                )
            ),
            "middleware, verified-token cache": await per_call_us(
                request_through(
                    AuthMiddleware(
                        empty_app,
                        settings=cached,
                        roots=["/dicomweb"],
                        open_paths=[],
                        audit=None,
                        verifier=verifier_for(cached),
                    ),
                    token,
                )
            ),
        }

    costs = asyncio.run(measure())
    for name, us in costs.items():
        sys.stdout.write(f"auth cost: {name}: {us:.1f} µs per request\n")
    assert costs["signature check (RS256, JWKS cached)"] < 5000
    assert costs["verified-token cache hit"] < costs["signature check (RS256, JWKS cached)"]
    assert costs["middleware, verified-token cache"] < 1000
