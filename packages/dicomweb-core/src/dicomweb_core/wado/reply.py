"""What a WADO-RS handler gets from the request, and what it gives back, free of Starlette.

:class:`Ask` carries the few request headers the transactions use; :class:`Reply` is the
status, media type, headers and a body that is either bytes or an async iterator of chunks
(streamed). The service app turns a :class:`Reply` into a response in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime

from ..models import InstanceRecord
from .accept import MediaRange, parse_accept


@dataclass(slots=True)
class Ask:
    accept: str = ""
    #: The base that replaces ``@@BASE@@`` in BulkDataURIs: ``http://host:port/dicomweb``.
    base_url: str = ""
    if_none_match: str = ""
    if_modified_since: str = ""
    range: str = ""
    params: dict[str, str] = field(default_factory=dict)
    _ranges: list[MediaRange] | None = None

    @property
    def ranges(self) -> list[MediaRange]:
        if self._ranges is None:
            self._ranges = parse_accept(self.accept)
        return self._ranges


@dataclass(slots=True)
class Reply:
    status: int = 200
    media_type: str | None = None
    body: bytes | AsyncIterator[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Validators:
    """ETag and Last-Modified of one representation of a set of instances."""

    etag: str
    last_modified: float

    def headers(self) -> dict[str, str]:
        out = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if self.last_modified > 0:
            out["Last-Modified"] = http_date(self.last_modified)
        return out

    def not_modified(self, ask: Ask) -> Reply | None:
        """A 304 when the client's copy is current (If-None-Match wins over If-Modified-Since)."""
        if ask.if_none_match:
            tags = [t.strip().removeprefix("W/") for t in ask.if_none_match.split(",")]
            if "*" in tags or self.etag in tags:
                return Reply(status=304, headers=self.headers())
            return None
        if ask.if_modified_since and self.last_modified > 0:
            try:
                since = parsedate_to_datetime(ask.if_modified_since).timestamp()
            except (TypeError, ValueError):
                return None
            if int(self.last_modified) <= since:
                return Reply(status=304, headers=self.headers())
        return None


def http_date(timestamp: float) -> str:
    from datetime import UTC, datetime

    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)


def validators(records: Iterable[InstanceRecord], representation: str) -> Validators:
    """A strong ETag over the instances' own ETags and the representation's description
    (media type, transfer syntax, base URL): any stored change or other form changes it."""
    h = hashlib.blake2b(representation.encode(), digest_size=12)
    newest = 0.0
    for r in records:
        h.update(f"\n{r.sop_instance_uid}:{r.etag}:{r.size}".encode())
        newest = max(newest, r.created)
    return Validators(etag=f'"{h.hexdigest()}"', last_modified=newest)
