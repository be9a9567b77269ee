"""The catalog protocol: one row per instance, upserted by SOP Instance UID."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

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


#: Builds the study-level event from the study UID and the study's DICOM JSON attributes.
QuietEventFactory = Callable[[str, bytes], OutboxEvent]


#: Events computed from the records a deletion removed (inside its transaction).
EventsFor = Callable[[list[InstanceRecord]], Sequence[OutboxEvent]]


def events_for(
    events: Sequence[OutboxEvent] | EventsFor, records: list[InstanceRecord]
) -> Sequence[OutboxEvent]:
    return events(records) if callable(events) else events


class Lifecycle(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise :class:`CatalogError` if the catalog is not usable (for ``/readyz``)."""
        ...


class CatalogReader(Lifecycle, Protocol):
    """What WADO and QIDO need: find instances, search. Every catalog implements this."""

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None: ...

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        """Instances of a study or series, ordered by series, instance number, SOP UID."""
        ...

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        """QIDO-RS: the DICOM JSON result objects for ``query`` (see :mod:`.qido`), in a stable
        order, with ``RetrieveURL`` built from ``base_url`` (``http://host:port/dicomweb``)."""
        ...


DuplicatePolicy = Literal["replace", "keep-first", "reject"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = ("replace", "keep-first", "reject")

#: What a store did with one instance (see :meth:`CatalogWriter.store_instances`).
#: ``stored``: the row now points at the new object (a superseded one became garbage);
#: ``identical``: the same bytes were already catalogued, the new copy became garbage;
#: ``kept``: policy ``keep-first`` kept the catalogued instance, the new copy became garbage;
#: ``rejected``: policy ``reject`` refused a different instance under a catalogued UID.
Decision = Literal["stored", "identical", "kept", "rejected"]


@dataclass(frozen=True, slots=True)
class NewInstance:
    """One instance to catalogue, with the events to enqueue if (and only if) it is stored."""

    record: InstanceRecord
    events: Sequence[OutboxEvent] = ()


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Per item, what was done; and the object keys recorded as garbage by the transaction
    (the caller removes those objects, then :meth:`CatalogWriter.forget_garbage`)."""

    decisions: list[Decision]
    garbage: list[str]


class CatalogWriter(Lifecycle, Protocol):
    """What STOW, DELETE and ``reindex`` need. Object keys are never reused: a key that a
    row stops referencing is recorded as *garbage* in the same transaction, and its object
    is removed only after the commit (:meth:`garbage` / :meth:`forget_garbage`)."""

    async def store_instances(
        self, items: Sequence[NewInstance], policy: DuplicatePolicy = "replace"
    ) -> StoreResult:
        """Catalogue ``items`` in one transaction, following ``policy`` for a SOP Instance
        UID that is already catalogued with other content (``record.digest`` differs); an
        identical re-send keeps the existing row. Every object key that ends up unreferenced
        (superseded, or the new copy of a duplicate) is recorded as garbage."""
        ...

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        """Insert or replace the row for ``record.sop_instance_uid`` and enqueue ``events``,
        in one transaction. Returns the previous object key if it differs from the new one
        (recorded as garbage), else ``None``."""
        ...

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        """Bulk :meth:`upsert_instance`: all ``records`` and ``events`` in one transaction."""
        ...

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] | EventsFor = (),
    ) -> list[InstanceRecord]:
        """Delete matching rows (and enqueue ``events``) in one transaction; return them.
        Their object keys are recorded as garbage in the same transaction. ``events`` may
        be a function of the deleted records, called inside the transaction, so the events
        name exactly what was deleted (nothing stored meanwhile is missed)."""
        ...

    async def garbage(self, limit: int = 500) -> list[str]:
        """Object keys no row references any more, oldest first (to be removed)."""
        ...

    async def forget_garbage(self, keys: Sequence[str]) -> None:
        """Drop garbage records whose objects are gone."""
        ...

    async def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` that a row references (or that are recorded as garbage)."""
        ...

    def all_object_keys(self) -> AsyncIterator[list[str]]:
        """Every referenced object key, in batches (for ``fsck``)."""
        ...


class Outbox(Protocol):
    """The durable event outbox, written in the catalog's transactions."""

    async def pending_events(self, limit: int = 100) -> list[OutboxEvent]: ...

    async def outbox_backlog(self) -> tuple[int, float | None]:
        """How many events wait for delivery, and when the oldest was written (epoch seconds;
        ``None`` when none waits). For the metrics."""
        ...

    async def mark_events_sent(self, ids: Sequence[str]) -> None: ...

    async def record_event_attempt(self, event_id: str) -> None: ...

    async def claim_events(self, limit: int = 100, lease_seconds: float = 60.0) -> list[OutboxEvent]:
        """Pending events that no other dispatcher holds, leased to the caller for
        ``lease_seconds`` (replicas skip leased rows; a crashed holder's lease runs out)."""
        ...

    async def release_events(self, ids: Sequence[str]) -> None:
        """Give up the lease of claimed events that were not sent (retried later, by anyone)."""
        ...

    async def enqueue_quiet_studies(
        self, quiet_before: float, make_event: QuietEventFactory, limit: int = 100
    ) -> int:
        """For each study last updated before ``quiet_before`` whose current revision has no
        study-level event yet, enqueue ``make_event(study_uid, study_attrs_json)`` and mark
        the revision covered, in one transaction. Returns how many were enqueued."""
        ...


class DatabaseCatalog(CatalogReader, CatalogWriter, Outbox, Protocol):
    """A catalog of our own (SQLite, PostgreSQL): reads, writes and the outbox."""


#: The former name of :class:`DatabaseCatalog`.
Catalog = DatabaseCatalog
