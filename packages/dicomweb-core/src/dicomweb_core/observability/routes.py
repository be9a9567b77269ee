"""Route templates as labels: each route records its template in the ASGI scope when it
matches, so metrics and logs say ``/dicomweb/studies/{study}/series/{series}``, never the UIDs
(bounded cardinality, no identifiers in metric labels)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

#: Scope key holding the matched route's template (with its mount prefix).
ROUTE_KEY = "dicomweb.route"
#: Label of a request no route matched (404s, 405s of unknown paths).
UNMATCHED = "unmatched"


class _Tagged:
    __slots__ = ("app", "template")

    def __init__(self, app: ASGIApp, template: str) -> None:
        self.app = app
        self.template = template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_KEY] = self.template
        await self.app(scope, receive, send)


def tag_routes(routes: Sequence[BaseRoute], prefix: str = "") -> list[BaseRoute]:
    """Copies of ``routes`` that record ``prefix + template`` when they handle a request. The
    originals are left alone: a service's routes are mounted under several prefixes."""
    tagged: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route):
            clone = copy.copy(route)
            clone.app = _Tagged(route.app, prefix + route.path)
            tagged.append(clone)
        else:
            tagged.append(route)
    return tagged


_SEARCH = {"studies": "search-studies", "series": "search-series", "instances": "search-instances"}
_RETRIEVE = {"{study}": "retrieve-study", "{series}": "retrieve-series", "{instance}": "retrieve-instance"}
_LAST = {
    "metadata": "metadata",
    "rendered": "rendered",
    "thumbnail": "thumbnail",
    "{frames}": "frames",
    "{tag}": "bulkdata",
}


def operation_kind(route: str, method: str, roots: Sequence[str]) -> str | None:
    """The DICOMweb transaction a route template serves (``search-studies``, ``frames``,
    ``stow``, ...), or ``None`` for the other routes (health, metrics, UI)."""
    if not any(route.startswith(root + "/") for root in roots):
        return None
    if method == "POST":
        return "stow"
    if method == "DELETE":
        return "delete"
    last = route.rsplit("/", 1)[-1]
    return _SEARCH.get(last) or _RETRIEVE.get(last) or _LAST.get(last)
