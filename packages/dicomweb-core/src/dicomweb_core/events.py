"""``ImageStoredEvent`` CloudEvents (wire-compatible with Alvearie's) and their delivery.

Binary-mode CloudEvents 1.0 over HTTP: the ``ce-*`` attributes go in headers, the JSON body
is the event data. Delivery is retried with exponential backoff.

The message is built here rather than with the cloudevents SDK: the SDK's event always
carries a ``time`` attribute (``ce-time``, set when it is serialised, which for an outbox
event is the delivery attempt, not the store) that Alvearie's events do not have, and it
costs more per event and at first use (``benchmarks/bench_cloudevents.py``, RESULTS.md).
The tests check the messages against the SDK's parser.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from .backoff import Backoff
from .catalog.base import OutboxEvent
from .errors import EventDeliveryError
from .observability.tracing import inject_trace_context

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("dicomweb.events")

IMAGE_STORED = "ImageStoredEvent"
IMAGE_DELETED = "ImageDeletedEvent"
STUDY_QUIET = "StudyRevisionEvent"

_NO_VALUE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_PIXEL_TAGS = frozenset({"7FE00010", "7FE00008", "7FE00009"})
# CloudEvents HTTP binding 3.1.3.2: header values are printable ASCII except space, '"' and
# '%', which are percent-encoded (UTF-8) with everything else outside that range.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


@dataclass(frozen=True, slots=True)
class StoreInfo:
    provider: str
    bucket_name: str
    wado_internal_endpoint: str
    wado_external_endpoint: str


def _json_value(elem: dict[str, Any]) -> str | None:
    """A DICOM JSON element's value as one string, as dcm4che's ``getString`` gives it:
    multi-values joined by backslash; none for sequences and binary values."""
    if elem.get("vr") in _NO_VALUE_VRS:
        return None
    values = elem.get("Value")
    if not values:
        return None
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, dict):  # person name
            out.append("=".join(v.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")).rstrip("="))
        else:
            out.append(str(v))
    return "\\".join(out)


def image_event_body(
    metadata: dict[str, Any], *, transfer_syntax_uid: str, object_name: str, store: StoreInfo
) -> bytes:
    """The Alvearie ``ImageStoredEvent`` JSON: every top-level attribute of the instance's
    DICOM JSON (pixel data excluded) as ``{group, element, vr, value}``."""
    elements = [
        {"group": tag[:4], "element": tag[4:], "vr": elem.get("vr"), "value": _json_value(elem)}
        for tag, elem in sorted(metadata.items())
        if tag not in _PIXEL_TAGS
    ]
    body = {
        "image": {"transferSyntaxUID": transfer_syntax_uid, "elements": elements},
        "store": {
            "provider": store.provider,
            "bucketName": store.bucket_name,
            "objectName": object_name,
            "wadoInternalEndpoint": store.wado_internal_endpoint,
            "wadoExternalEndpoint": store.wado_external_endpoint,
        },
    }
    return orjson.dumps(body)


def new_event(event_type: str, source: str, body: bytes) -> OutboxEvent:
    return OutboxEvent(id=str(uuid.uuid4()), type=event_type, source=source, body=body)


def binary_message(event: OutboxEvent) -> tuple[dict[str, str], bytes]:
    """The event as a binary-mode CloudEvents 1.0 HTTP message: (headers, body)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": quote(event.type, safe=_HEADER_SAFE),
        "ce-source": quote(event.source, safe=_HEADER_SAFE),
        "ce-id": quote(event.id, safe=_HEADER_SAFE),
        "content-type": "application/json",
    }
    return headers, event.body


class EventSender:
    """POSTs binary-mode CloudEvents to a sink with retries and exponential backoff.

    The HTTP client (and httpx itself) is created at the first send: a service that starts
    from zero answers ``/readyz`` without paying for them (~0.1 s with the CA bundle).
    """

    def __init__(
        self,
        sink: str,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        self.sink = sink
        self._client = client
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        Backoff(backoff, max_backoff)  # refuse a bad schedule here, not at the first retry

    async def send_once(self, event: OutboxEvent) -> None:
        headers, body = binary_message(event)
        inject_trace_context(headers)
        import httpx  # cheap after the first time

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            resp = await self._client.post(self.sink, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EventDeliveryError(f"event sink {self.sink} unreachable: {exc}") from exc
        if resp.status_code >= 300:
            raise EventDeliveryError(f"event sink {self.sink} answered {resp.status_code}")

    async def send(self, event: OutboxEvent) -> None:
        """Deliver with retries; raise :class:`EventDeliveryError` after the last attempt."""
        backoff = Backoff(self._backoff, self._max_backoff)
        for attempt in range(1, self._attempts + 1):
            try:
                await self.send_once(event)
                return
            except EventDeliveryError as exc:
                if attempt == self._attempts:
                    raise
                log.warning("event %s delivery attempt %d failed: %s", event.id, attempt, exc.reason)
                await asyncio.sleep(backoff.next())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def study_event_body(study_uid: str, attributes: bytes, *, store: StoreInfo) -> bytes:
    """The study-level event sent once a study has been quiet: the study's UID and its
    study-level DICOM JSON attributes (as QIDO returns them), and where to retrieve it."""
    body = {
        "study": {
            "studyInstanceUID": study_uid,
            "attributes": orjson.loads(attributes) if attributes else {},
        },
        "store": {
            "provider": store.provider,
            "bucketName": store.bucket_name,
            "wadoInternalEndpoint": store.wado_internal_endpoint,
            "wadoExternalEndpoint": store.wado_external_endpoint,
        },
    }
    return orjson.dumps(body)
