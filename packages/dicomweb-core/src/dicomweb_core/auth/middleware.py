"""The access-control middleware: bearer token -> permissions -> allowed or refused, and one
audit line per DICOMweb transaction.

All policy is worked out in ``__init__`` (open paths, DICOMweb roots, grant table); a request
costs a dictionary lookup, a header scan and, for a token not seen in the last
``AUTH_TOKEN_CACHE_SECONDS``, one signature check. A refused request is answered before the
application is called, so a refused STOW never reads (let alone stores) a byte of its body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import SCOPE_KEY, AuditRecord, describe
from .errors import AuthError, IssuerUnavailableError
from .policy import Grants, required_permission
from .settings import AuthSettings, Permission

if TYPE_CHECKING:
    from .verifier import TokenVerifier

REALM = "dicomweb"
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _quoted(text: str) -> str:
    # RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E.
    return _UNSAFE.sub("'", text)[:300]


async def _answer(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = (text.replace("\n", " ") + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Refusal(Exception):
    def __init__(
        self, status: int, text: str, challenge: str = "", extra: Sequence[tuple[bytes, bytes]] = ()
    ):
        super().__init__(text)
        self.status = status
        self.text = text
        headers = [(b"www-authenticate", challenge.encode())] if challenge else []
        self.headers = headers + list(extra)


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: AuthSettings,
        roots: Sequence[str],
        open_paths: Sequence[str],
        audit: logging.Logger | None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.app = app
        self.enabled = settings.enabled
        self.open_paths = frozenset(open_paths)
        # Longest first, so "/dicomweb" never shadows a longer root.
        self.roots = tuple(sorted(roots, key=len, reverse=True))
        self.audit = audit
        self.grants = Grants(settings)
        self.scope_names = {p: self.grants.names_for(p) for p in Permission}
        if verifier is None and self.enabled:
            # PyJWT and cryptography load only when tokens are checked (a cold start without
            # auth does not pay for them).
            from .jwks import JwksCache
            from .verifier import TokenVerifier

            jwks = JwksCache(
                issuer=settings.issuer,
                jwks_url=settings.jwks_url,
                min_refresh=settings.jwks_min_refresh_seconds,
                max_age=settings.jwks_max_age_seconds,
                timeout=settings.http_timeout_seconds,
            )
            verifier = TokenVerifier(settings, jwks)
        self.verifier = verifier

    def _root(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(root + "/"):
                return root
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        if method == "OPTIONS" and any(n == b"access-control-request-method" for n, _ in scope["headers"]):
            await self.app(scope, receive, send)  # CORS preflight: carries no credentials
            return
        root = self._root(scope["path"])
        need = required_permission(method) if root is not None else None
        record = None
        if root is not None and self.audit is not None:
            transaction, route, uids = describe(scope["path"], root, method)
            client = scope.get("client")
            record = AuditRecord(
                transaction=transaction,
                action=need.value if need else "",
                method=method,
                route=route,
                uids=uids,
                remote=client[0] if client else "",
            )
            scope[SCOPE_KEY] = record
        try:
            if self.enabled:
                self._authorize(await self._claims(scope), need, record)
        except Refusal as refusal:
            if record is not None:
                record.status = refusal.status
                record.reason = refusal.text
                self._log(record)
            await _answer(send, refusal.status, refusal.text, refusal.headers)
            return
        if record is None:
            await self.app(scope, receive, send)
            return
        await self._audited(scope, receive, send, record)

    async def _claims(self, scope: Scope) -> dict[str, Any]:
        assert self.verifier is not None
        values = [v for n, v in scope["headers"] if n == b"authorization"]
        if not values:
            raise Refusal(401, "a bearer token is required", f'Bearer realm="{REALM}"')
        if len(values) > 1:
            raise Refusal(400, "more than one Authorization header", self._challenge("invalid_request", ""))
        scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Refusal(401, "a bearer token is required", f'Bearer realm="{REALM}"')
        token = token.strip()
        if not token or " " in token:
            raise Refusal(
                400, "malformed bearer token", self._challenge("invalid_request", "malformed token")
            )
        try:
            return await self.verifier.verify(token)
        except IssuerUnavailableError as exc:
            raise Refusal(
                503, f"cannot check the token: {exc.description}", extra=[(b"retry-after", b"5")]
            ) from None
        except AuthError as exc:
            raise Refusal(401, exc.description, self._challenge("invalid_token", exc.description)) from None

    def _authorize(self, claims: dict[str, Any], need: Permission | None, record: AuditRecord | None) -> None:
        if record is not None:
            record.subject = str(claims.get("sub", ""))[:256]
            client = claims.get("client_id", claims.get("azp", claims.get("appid", "")))
            record.client_id = str(client)[:256]
        if need is None or need in self.grants.permissions(claims):
            return
        names = self.scope_names[need]
        text = f"the token does not grant the {need.value} permission ({names})"
        challenge = self._challenge("insufficient_scope", text) + f', scope="{_quoted(names)}"'
        raise Refusal(403, text, challenge)

    @staticmethod
    def _challenge(error: str, description: str) -> str:
        challenge = f'Bearer realm="{REALM}", error="{error}"'
        if description:
            challenge += f', error_description="{_quoted(description)}"'
        return challenge

    async def _audited(self, scope: Scope, receive: Receive, send: Send, record: AuditRecord) -> None:
        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.bytes_in += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            elif message["type"] == "http.response.body":
                record.bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            if record.status == 0:
                record.status = 500
            self._log(record)

    def _log(self, record: AuditRecord) -> None:
        assert self.audit is not None
        self.audit.info(record.line().decode())
