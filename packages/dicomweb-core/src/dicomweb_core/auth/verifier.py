"""Bearer token verification with PyJWT: signature against the issuer's JWKS, ``iss``, ``aud``,
``exp``/``nbf`` with leeway, and an allow-list of asymmetric algorithms.

A verified token is remembered for a short while (never past its ``exp``), so a client that
sends the same token on every request pays for the signature check once per interval.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt

from .errors import TokenError
from .jwks import JwksCache
from .settings import AuthSettings

#: Longer tokens are refused before any parsing (real access tokens are a few KiB).
MAX_TOKEN_LENGTH = 16 * 1024
#: Verified tokens remembered at once (oldest forgotten first).
TOKEN_CACHE_ENTRIES = 4096

Claims = dict[str, Any]


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is not for this service (aud)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token is from another issuer (iss)"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim!r} claim"
    return "the token is malformed"


class TokenVerifier:
    def __init__(
        self, settings: AuthSettings, jwks: JwksCache, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._jwks = jwks
        self._algorithms = frozenset(settings.algorithms)
        self._issuer = settings.issuer
        self._audiences = list(settings.audiences)
        self._leeway = settings.leeway_seconds
        self._cache_seconds = settings.token_cache_seconds
        self._clock = clock
        self._require = ["exp", "iss", "aud"]
        self._cache: OrderedDict[str, tuple[float, Claims]] = OrderedDict()

    async def verify(self, token: str) -> Claims:
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            del self._cache[token]
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the token is not a JWS compact serialization") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError(f"the token's algorithm {str(alg)[:20]!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("the token's kid is not a string")
        key = await self._jwks.key(kid, alg)
        try:
            claims: Claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": self._require},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(_reason(exc)) from None
        if self._cache_seconds > 0:
            exp = float(claims["exp"])
            self._cache[token] = (min(now + self._cache_seconds, exp), claims)
            if len(self._cache) > TOKEN_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return claims
