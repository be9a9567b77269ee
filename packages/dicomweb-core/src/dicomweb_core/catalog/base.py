"""The catalog protocol: one row per instance, upserted by SOP Instance UID."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..models import InstanceRecord

if TYPE_CHECKING:
    from .qido import QidoQuery


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event waiting for delivery. Written in the same transaction as the catalog row."""

    id: str
    type: str
    source: str
    body: bytes
    attempts: int = 0


class Catalog(Protocol):
    #: True when events can be written to a durable outbox in the catalog's transaction.
    has_outbox: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise :class:`CatalogError` if the catalog is not usable (for ``/readyz``)."""
        ...

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        """Insert or replace the row for ``record.sop_instance_uid`` and enqueue ``events``,
        in one transaction. Returns the previous object key if it differs from the new one
        (the caller removes that object), else ``None``."""
        ...

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        """Bulk :meth:`upsert_instance`: all ``records`` and ``events`` in one transaction.
        Returns, per record, the previous object key when it differed, else ``None``."""
        ...

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None: ...

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        """Instances of a study or series, ordered by series, instance number, SOP UID."""
        ...

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> list[InstanceRecord]:
        """Delete matching rows (and enqueue ``events``) in one transaction; return them."""
        ...

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        """QIDO-RS: the DICOM JSON result objects for ``query`` (see :mod:`.qido`), in a stable
        order, with ``RetrieveURL`` built from ``base_url`` (``http://host:port/dicomweb``)."""
        ...

    async def pending_events(self, limit: int = 100) -> list[OutboxEvent]: ...

    async def mark_events_sent(self, ids: Sequence[str]) -> None: ...

    async def record_event_attempt(self, event_id: str) -> None: ...
