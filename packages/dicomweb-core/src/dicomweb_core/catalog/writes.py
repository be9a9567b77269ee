"""How one catalog transaction applies a batch of new instances. Pure: no I/O.

Both database backends read the current rows of the batch's SOP Instance UIDs (locked), ask
:func:`plan_writes` what to do, and then write exactly that. Object keys are never reused,
so every decision names the keys that stop being referenced (*garbage*): the superseded
object of a replaced row, or the new copy of a duplicate that was not taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..models import InstanceRecord
from .base import Decision, DuplicatePolicy


class CurrentRow(NamedTuple):
    """What the decision needs of a catalogued instance."""

    study_uid: str
    series_uid: str
    object_key: str
    digest: str


@dataclass(slots=True)
class WritePlan:
    decisions: list[Decision] = field(default_factory=list)
    #: Indices of the records whose rows are written (the last one per SOP Instance UID).
    apply: list[int] = field(default_factory=list)
    #: Object keys no row references once the transaction commits.
    garbage: list[str] = field(default_factory=list)
    #: Per record, the key its row replaced when it differed (``upsert_instances``' answer).
    previous: list[str | None] = field(default_factory=list)
    #: Series and studies whose aggregates change (old and new homes of moved instances).
    series: dict[str, None] = field(default_factory=dict)
    studies: dict[str, None] = field(default_factory=dict)
    #: SOP Instance UIDs whose existing row is replaced (their sequence index goes).
    replaced: list[str] = field(default_factory=list)


def decide(current: CurrentRow | None, record: InstanceRecord, policy: DuplicatePolicy) -> Decision:
    if current is None or current.object_key == record.object_key:
        return "stored"
    if record.digest and current.digest == record.digest:
        return "identical"
    if policy == "keep-first":
        return "kept"
    if policy == "reject":
        return "rejected"
    return "stored"


def plan_writes(
    records: Sequence[InstanceRecord], current: dict[str, CurrentRow], policy: DuplicatePolicy
) -> WritePlan:
    """Decide, record by record and in order (a batch may name one UID twice), what a
    transaction writes. ``current`` holds the catalogued rows of the batch's UIDs."""
    plan = WritePlan()
    rows = dict(current)
    winner: dict[str, int] = {}
    for i, rec in enumerate(records):
        sop = rec.sop_instance_uid
        cur = rows.get(sop)
        decision = decide(cur, rec, policy)
        plan.decisions.append(decision)
        if decision != "stored":
            plan.previous.append(None)
            plan.garbage.append(rec.object_key)
            continue
        replaced = cur is not None and cur.object_key != rec.object_key
        plan.previous.append(cur.object_key if cur is not None and replaced else None)
        if cur is not None and replaced:
            plan.garbage.append(cur.object_key)
        rows[sop] = CurrentRow(rec.study_uid, rec.series_uid, rec.object_key, rec.digest)
        winner[sop] = i
    plan.apply = sorted(winner.values())
    for sop in winner:
        old = current.get(sop)
        if old is not None:
            plan.replaced.append(sop)
            plan.series[old.series_uid] = None
            plan.studies[old.study_uid] = None
    for i in plan.apply:
        plan.series[records[i].series_uid] = None
        plan.studies[records[i].study_uid] = None
    return plan
