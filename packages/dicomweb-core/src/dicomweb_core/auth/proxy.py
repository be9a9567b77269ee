"""``X-Forwarded-*`` headers believed only from trusted proxies (uvicorn's
``forwarded_allow_ips`` semantics).

From a trusted peer, ``X-Forwarded-For`` gives the client address (the right-most address that
is not itself a trusted proxy), ``X-Forwarded-Proto`` the scheme, and ``X-Forwarded-Host`` is
left for the URL builders. From any other peer, every ``X-Forwarded-*`` / ``Forwarded`` header
is removed before the application sees the request, so nothing downstream can trust them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

_STRIPPED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded")


class TrustedProxies:
    def __init__(self, entries: Sequence[str]) -> None:
        self.any = "*" in entries
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        if not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_of(self, forwarded_for: str) -> str | None:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else None


class ForwardedHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, trusted: Sequence[str]) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and client[0] in self.trusted:
                scope = self._apply(scope)
            else:
                headers = scope["headers"]
                if any(name in _STRIPPED for name, _ in headers):
                    scope = dict(scope)
                    scope["headers"] = [(n, v) for n, v in headers if n not in _STRIPPED]
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> Scope:
        scope = dict(scope)
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                host = self.trusted.client_of(value.decode("latin-1"))
                if host:
                    scope["client"] = (host, 0)
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[0].strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
        return scope
