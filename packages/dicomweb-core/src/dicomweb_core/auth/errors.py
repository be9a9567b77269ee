"""Why a request was not let through; the middleware maps each to its RFC 6750 answer."""

from __future__ import annotations


class AuthError(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class TokenError(AuthError):
    """The bearer token is missing its parts, malformed, forged, expired or not for us (401)."""


class IssuerUnavailableError(AuthError):
    """The issuer's keys could not be fetched, so the token cannot be checked (503)."""
