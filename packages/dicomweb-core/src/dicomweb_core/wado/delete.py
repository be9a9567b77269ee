"""DELETE of a study, series or instance: rows, objects, and one ``ImageDeletedEvent`` each.

The rows go first, in one catalog transaction together with the events (outbox) and the
garbage records of their objects, so a crash never leaves an event without a deletion or a
catalogued instance without its object. Objects are removed after the commit (a crash in
between leaves garbage records, processed by the sweep); a missing object is not an error,
which makes the operation idempotent: deleting what is already gone answers 204 as well.
"""

from __future__ import annotations

import orjson

from ..catalog.base import CatalogWriter, OutboxEvent
from ..errors import CatalogError
from ..events import IMAGE_DELETED, new_event
from ..models import InstanceRecord
from ..stores.base import ObjectStore
from .retrieve import Level


def deletion_event(record: InstanceRecord, source: str) -> OutboxEvent:
    body = orjson.dumps(
        {
            "study": record.study_uid,
            "series": record.series_uid,
            "instance": record.sop_instance_uid,
            "objectName": record.object_key,
        }
    )
    return new_event(IMAGE_DELETED, source, body)


async def delete(
    at: Level, store: ObjectStore, catalog: CatalogWriter | None, *, emit_events: bool, event_source: str
) -> list[InstanceRecord]:
    """Delete what ``at`` names; return the deleted records (empty when nothing matched).
    ``catalog`` is ``None`` with the read-only remote catalog: refused."""
    if catalog is None:
        raise CatalogError("DELETE is not available with QUERY_ENDPOINT (the query API is read-only)")

    def events(records: list[InstanceRecord]) -> list[OutboxEvent]:
        # Built inside the deletion's transaction from the rows it removed: exactly one
        # event per deleted instance, whatever was stored a moment before.
        return [deletion_event(r, event_source) for r in records] if emit_events else []

    deleted = await catalog.delete_instances(at.study, at.series, at.instance, events)
    keys = [r.object_key for r in deleted]
    for key in keys:
        await store.delete(key)
    await catalog.forget_garbage(keys)
    return deleted
