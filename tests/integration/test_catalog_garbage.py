"""Catalog writes with revisioned keys, on SQLite and PostgreSQL: duplicate decisions, the
garbage records written in the same transaction, and concurrent stores of one UID."""

from __future__ import annotations

import asyncio
from typing import Any

from dicomweb_core.catalog.base import NewInstance, OutboxEvent
from dicomweb_core.catalog.factory import open_catalog
from dicomweb_core.models import InstanceRecord
from tests.integration.test_catalog import make_record, study_row, value


def rec(study: str, series: str, sop: str, key: str, digest: str) -> InstanceRecord:
    r = make_record(study, series, sop, key=key)
    r.digest = digest
    return r


def event(eid: str) -> OutboxEvent:
    return OutboxEvent(id=eid, type="ImageStoredEvent", source="test", body=b"{}")


async def test_store_instances_records_superseded_keys_as_garbage(catalog: Any) -> None:
    first = await catalog.store_instances([NewInstance(rec("1.1", "1.1.1", "9.1", "k1", "a"), [event("e1")])])
    assert first.decisions == ["stored"] and first.garbage == []
    again = await catalog.store_instances([NewInstance(rec("1.1", "1.1.1", "9.1", "k2", "a"), [event("e2")])])
    assert again.decisions == ["identical"] and again.garbage == ["k2"]
    replaced = await catalog.store_instances(
        [NewInstance(rec("1.1", "1.1.1", "9.1", "k3", "b"), [event("e3")])], "replace"
    )
    assert replaced.decisions == ["stored"] and replaced.garbage == ["k1"]
    got = await catalog.get_instance("1.1", None, "9.1")
    assert got is not None and (got.object_key, got.digest) == ("k3", "b")
    # Events only for what was stored: the identical re-send enqueued none.
    assert sorted(e.id for e in await catalog.pending_events()) == ["e1", "e3"]
    assert sorted(await catalog.garbage()) == ["k1", "k2"]
    assert await catalog.referenced_keys(["k1", "k3", "zz"]) == {"k1", "k3"}  # garbage counts
    await catalog.forget_garbage(["k1", "k2"])
    assert await catalog.garbage() == []
    assert await catalog.referenced_keys(["k1", "k3"]) == {"k3"}
    assert [k async for k in catalog.all_object_keys()] == [["k3"]]


async def test_reject_and_keep_first_keep_the_catalogued_row(catalog: Any) -> None:
    await catalog.store_instances([NewInstance(rec("1.1", "1.1.1", "9.1", "k1", "a"))])
    for policy, decision in (("reject", "rejected"), ("keep-first", "kept")):
        result = await catalog.store_instances(
            [NewInstance(rec("1.1", "1.1.1", "9.1", f"k-{policy}", "b"))], policy
        )
        assert result.decisions == [decision] and result.garbage == [f"k-{policy}"]
    got = await catalog.get_instance("1.1", None, "9.1")
    assert got is not None and got.object_key == "k1"


async def test_delete_records_the_objects_as_garbage(catalog: Any) -> None:
    await catalog.store_instances([NewInstance(rec("1.1", "1.1.1", "9.1", "k1", "a"))])
    deleted = await catalog.delete_instances("1.1")
    assert [d.object_key for d in deleted] == ["k1"]
    assert await catalog.garbage() == ["k1"]


async def test_a_move_recounts_the_old_study(catalog: Any) -> None:
    await catalog.store_instances(
        [
            NewInstance(rec("1.1", "1.1.1", "9.1", "k1", "a")),
            NewInstance(rec("1.1", "1.1.1", "9.2", "k2", "b")),
        ]
    )
    await catalog.store_instances([NewInstance(rec("2.2", "2.2.1", "9.1", "k3", "c"))])
    old = await study_row(catalog, "1.1")
    assert old is not None and value(old, "00201208") == [1]
    assert [r.sop_instance_uid for r in await catalog.list_instances("1.1")] == ["9.2"]
    assert [r.object_key for r in await catalog.list_instances("2.2")] == ["k3"]
    assert await catalog.garbage() == ["k1"]


async def test_concurrent_stores_of_one_uid_across_studies_leave_one_row_and_all_others_garbage(
    catalog: Any,
) -> None:
    # Separate catalog objects: separate connections (PostgreSQL) / writers (SQLite file).
    url = catalog.dsn if hasattr(catalog, "dsn") else f"sqlite:///{catalog.path}"
    others = [open_catalog(url) for _ in range(4)]
    for c in others:
        await c.open()
    try:
        for round_ in range(5):
            sop = f"9.9.{round_}"
            items = [
                rec(f"{n % 2 + 1}.{round_}", f"{n % 2 + 1}.{round_}.1", sop, f"k{round_}-{n}", f"d{n}")
                for n in range(8)
            ]
            results = await asyncio.gather(
                *(others[n % 4].store_instances([NewInstance(r)]) for n, r in enumerate(items))
            )
            assert all(r.decisions == ["stored"] for r in results)
            garbage = sorted(k for r in results for k in r.garbage)
            rows = [r for s in ("1", "2") for r in await catalog.list_instances(f"{s}.{round_}")]
            assert len(rows) == 1  # one home, whatever the interleaving
            keys = {i.object_key for i in items}
            assert sorted([*garbage, rows[0].object_key]) == sorted(keys)  # every other copy is garbage
            loser = "1" if rows[0].study_uid.startswith("2") else "2"
            assert await study_row(catalog, f"{loser}.{round_}") is None
    finally:
        for c in others:
            await c.close()
