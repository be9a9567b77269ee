"""DELETE of a study, series or instance: rows, objects, and one ``ImageDeletedEvent`` each.

The rows go first, in one catalog transaction together with the events (outbox), so a
crash never leaves an event without a deletion or a catalogued instance without its
object. Objects are removed after the commit; a missing object is not an error, which
makes the operation idempotent: deleting what is already gone answers 204 as well.
"""

from __future__ import annotations

import orjson

from ..catalog.base import Catalog, OutboxEvent
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
    at: Level, store: ObjectStore, catalog: Catalog, *, emit_events: bool, event_source: str
) -> list[InstanceRecord]:
    """Delete what ``at`` names; return the deleted records (empty when nothing matched)."""

    def events(records: list[InstanceRecord]) -> list[OutboxEvent]:
        # Built inside the deletion's transaction from the rows it removed: exactly one
        # event per deleted instance, whatever was stored a moment before.
        return [deletion_event(r, event_source) for r in records] if emit_events else []

    deleted = await catalog.delete_instances(at.study, at.series, at.instance, events)
    for record in deleted:
        await store.delete(record.object_key)
    return deleted
