"""``ImageStoredEvent`` CloudEvents (wire-compatible with Alvearie's) and their delivery.

Binary-mode CloudEvents 1.0 over HTTP: the ``ce-*`` attributes go in headers, the JSON body
is the event data. Delivery is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydicom.dataset import Dataset

from .catalog.base import OutboxEvent
from .errors import EventDeliveryError

log = logging.getLogger("dicomweb.events")

IMAGE_STORED = "ImageStoredEvent"
IMAGE_DELETED = "ImageDeletedEvent"
STUDY_QUIET = "StudyRevisionEvent"

_NO_VALUE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})


@dataclass(frozen=True, slots=True)
class StoreInfo:
    provider: str
    bucket_name: str
    wado_internal_endpoint: str
    wado_external_endpoint: str


def _element_value(elem: Any) -> str | None:
    if elem.VR in _NO_VALUE_VRS or elem.value is None or elem.value == "":
        return None
    value = elem.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return None
    return str(value)


def image_event_body(ds: Dataset, *, transfer_syntax_uid: str, object_name: str, store: StoreInfo) -> bytes:
    """The Alvearie ``ImageStoredEvent`` JSON: every top-level attribute as ``{group, element, vr, value}``."""
    elements = []
    for elem in ds:
        tag = int(elem.tag)
        elements.append(
            {
                "group": f"{tag >> 16:04X}",
                "element": f"{tag & 0xFFFF:04X}",
                "vr": str(elem.VR),
                "value": _element_value(elem),
            }
        )
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


class EventSender:
    """POSTs binary-mode CloudEvents to a sink with retries and exponential backoff."""

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
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff

    async def send_once(self, event: OutboxEvent) -> None:
        headers = {
            "ce-specversion": "1.0",
            "ce-type": event.type,
            "ce-source": event.source,
            "ce-id": event.id,
            "content-type": "application/json",
        }
        try:
            resp = await self._client.post(self.sink, content=event.body, headers=headers)
        except httpx.HTTPError as exc:
            raise EventDeliveryError(f"event sink {self.sink} unreachable: {exc}") from exc
        if resp.status_code >= 300:
            raise EventDeliveryError(f"event sink {self.sink} answered {resp.status_code}")

    async def send(self, event: OutboxEvent) -> None:
        """Deliver with retries; raise :class:`EventDeliveryError` after the last attempt."""
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                await self.send_once(event)
                return
            except EventDeliveryError as exc:
                if attempt == self._attempts:
                    raise
                log.warning("event %s delivery attempt %d failed: %s", event.id, attempt, exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def close(self) -> None:
        await self._client.aclose()
