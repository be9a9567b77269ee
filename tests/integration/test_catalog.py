"""The catalog contract, run against SQLite and PostgreSQL (the ``catalog`` fixture)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicomweb_core.catalog.base import OutboxEvent
from dicomweb_core.catalog.factory import open_catalog
from dicomweb_core.catalog.qido import parse_qido
from dicomweb_core.catalog.sqlite import SQLiteCatalog
from dicomweb_core.errors import CatalogError, ConfigError
from dicomweb_core.models import Fragment, InstanceRecord, PixelDataInfo

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def make_record(
    study: str,
    series: str,
    sop: str,
    *,
    key: str | None = None,
    modality: str = "CT",
    sop_class: str = CT,
    number: int = 1,
    pixel_data: PixelDataInfo | None = None,
) -> InstanceRecord:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.SOPClassUID = sop_class
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.StudyDate = "20240102"
    ds.Modality = modality
    ds.InstanceNumber = number
    ds.SeriesNumber = 1
    ds.Rows = 2
    ds.Columns = 2
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.3"
    ref.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedStudySequence = DicomSequence([ref])
    meta = ds.to_json_dict()
    meta["7FE00010"] = {"vr": "OW", "BulkDataURI": f"http://x/bulk/{sop}"}
    return InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        object_key=key or f"{study}/{series}/{sop}.dcm",
        size=1234,
        metadata=orjson.dumps(meta),
        pixel_data=pixel_data,
        instance_number=number,
        etag=f"etag-{sop}",
    )


def event(eid: str) -> OutboxEvent:
    return OutboxEvent(id=eid, type="ImageStoredEvent", source="test", body=b'{"e":"' + eid.encode() + b'"}')


async def study_row(catalog: Any, study: str) -> dict[str, Any] | None:
    res = await catalog.search(parse_qido("study", [("StudyInstanceUID", study)]))
    assert len(res) <= 1
    return res[0] if res else None


def value(obj: dict[str, Any], tag: str) -> Any:
    return obj[tag].get("Value")


async def test_upsert_then_get_returns_the_same_record(catalog: Any) -> None:
    pd = PixelDataInfo(
        tag=0x7FE00010,
        value_offset=1000,
        length=None,
        encapsulated=True,
        basic_offset_table=(0, 100),
        fragments=(Fragment(1020, 92), Fragment(1120, 80)),
        frames=(Fragment(1020, 92), Fragment(1120, 80)),
        number_of_frames=2,
    )
    rec = make_record("1.1", "1.1.1", "1.1.1.1", pixel_data=pd)
    assert await catalog.upsert_instance(rec) is None
    got = await catalog.get_instance("1.1", "1.1.1", "1.1.1.1")
    assert got is not None
    assert got.metadata == rec.metadata  # byte-exact, WADO returns it as is
    assert got.pixel_data == pd
    assert (got.object_key, got.size, got.etag, got.instance_number) == (
        rec.object_key,
        1234,
        "etag-1.1.1.1",
        1,
    )
    assert await catalog.get_instance("1.1", None, "1.1.1.1") is not None
    assert await catalog.get_instance("1.1", "9.9", "1.1.1.1") is None
    assert await catalog.get_instance("9.9", None, "1.1.1.1") is None


async def test_list_instances_orders_by_series_then_instance_number(catalog: Any) -> None:
    await catalog.upsert_instances(
        [
            make_record("1.1", "1.1.2", "1.1.2.1", number=1),
            make_record("1.1", "1.1.1", "1.1.1.3", number=3),
            make_record("1.1", "1.1.1", "1.1.1.1", number=10),
            make_record("1.1", "1.1.1", "1.1.1.2", number=2),
        ]
    )
    assert [r.sop_instance_uid for r in await catalog.list_instances("1.1")] == [
        "1.1.1.2",
        "1.1.1.3",
        "1.1.1.1",
        "1.1.2.1",
    ]
    assert [r.sop_instance_uid for r in await catalog.list_instances("1.1", "1.1.2")] == ["1.1.2.1"]
    assert await catalog.list_instances("2.2") == []


async def test_restore_is_idempotent_and_reports_a_changed_object_key(catalog: Any) -> None:
    rec = make_record("1.1", "1.1.1", "1.1.1.1", key="a")
    assert await catalog.upsert_instance(rec) is None
    assert await catalog.upsert_instance(rec) is None
    assert await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1", key="b")) == "a"
    assert len(await catalog.list_instances("1.1")) == 1
    study = await study_row(catalog, "1.1")
    assert study is not None
    assert value(study, "00201208") == [1]
    assert value(study, "00201206") == [1]


async def test_aggregates_follow_stores_and_deletes(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"))
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.2", number=2))
    await catalog.upsert_instance(make_record("1.1", "1.1.2", "1.1.2.1", modality="MR", sop_class=MR))
    study = await study_row(catalog, "1.1")
    assert study is not None
    assert value(study, "00201206") == [2]
    assert value(study, "00201208") == [3]
    assert value(study, "00080061") == ["CT", "MR"]
    assert value(study, "00080062") == [CT, MR]

    deleted = await catalog.delete_instances("1.1", "1.1.2")
    assert [r.sop_instance_uid for r in deleted] == ["1.1.2.1"]
    study = await study_row(catalog, "1.1")
    assert study is not None
    assert value(study, "00201206") == [1]
    assert value(study, "00201208") == [2]
    assert value(study, "00080061") == ["CT"]
    assert value(study, "00080062") == [CT]

    deleted = await catalog.delete_instances("1.1", None, "1.1.1.2")
    assert [r.sop_instance_uid for r in deleted] == ["1.1.1.2"]
    series = await catalog.search(parse_qido("series", [], study_uid="1.1"))
    assert [value(s, "00201209") for s in series] == [[1]]

    assert len(await catalog.delete_instances("1.1")) == 1
    assert await study_row(catalog, "1.1") is None
    assert await catalog.search(parse_qido("series", [])) == []
    # Deleting again is a no-op.
    assert await catalog.delete_instances("1.1") == []


async def test_an_instance_moving_to_another_study_updates_both(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "9.9.9.1"))
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "9.9.9.2"))
    await catalog.upsert_instance(make_record("1.2", "1.2.1", "9.9.9.2", modality="MR"))
    old = await study_row(catalog, "1.1")
    new = await study_row(catalog, "1.2")
    assert old is not None and new is not None
    assert value(old, "00201208") == [1]
    assert value(new, "00201208") == [1]
    assert value(new, "00080061") == ["MR"]
    assert await catalog.get_instance("1.1", None, "9.9.9.2") is None
    # Moving the last instance away removes the emptied study and series.
    await catalog.upsert_instance(make_record("1.2", "1.2.1", "9.9.9.1"))
    assert await study_row(catalog, "1.1") is None
    assert [value(s, "0020000E") for s in await catalog.search(parse_qido("series", []))] == [["1.2.1"]]


async def test_events_are_written_with_the_row_and_delivered_in_order(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"), [event("e1")])
    await catalog.delete_instances("1.1", events=[event("e2")])
    pending = await catalog.pending_events()
    assert [e.id for e in pending] == ["e1", "e2"]
    assert pending[0].body == b'{"e":"e1"}'
    await catalog.record_event_attempt("e1")
    await catalog.record_event_attempt("e1")
    assert [(e.id, e.attempts) for e in await catalog.pending_events(limit=1)] == [("e1", 2)]
    await catalog.mark_events_sent(["e1"])
    assert [e.id for e in await catalog.pending_events()] == ["e2"]


async def test_a_failure_inside_upsert_leaves_neither_row_nor_event(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"), [event("dup")])
    # The second event id collides: the outbox insert fails after the instance rows were written.
    with pytest.raises(CatalogError):
        await catalog.upsert_instance(make_record("1.2", "1.2.1", "1.2.1.1"), [event("new"), event("dup")])
    assert await catalog.get_instance("1.2", None, "1.2.1.1") is None
    assert await study_row(catalog, "1.2") is None
    assert [e.id for e in await catalog.pending_events()] == ["dup"]
    # A re-store that fails keeps the previous row as it was.
    with pytest.raises(CatalogError):
        await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1", key="other"), [event("dup")])
    got = await catalog.get_instance("1.1", None, "1.1.1.1")
    assert got is not None and got.object_key == "1.1/1.1.1/1.1.1.1.dcm"


async def test_delete_events_are_built_from_the_rows_it_removed(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"))
    await catalog.upsert_instance(make_record("1.1", "1.1.2", "1.1.2.1"))
    seen: list[list[str]] = []

    def events(records: list[Any]) -> list[OutboxEvent]:
        seen.append(sorted(r.sop_instance_uid for r in records))
        return [event(f"deleted-{r.sop_instance_uid}") for r in records]

    deleted = await catalog.delete_instances("1.1", events=events)
    assert sorted(r.sop_instance_uid for r in deleted) == ["1.1.1.1", "1.1.2.1"]
    assert seen == [["1.1.1.1", "1.1.2.1"]]
    assert sorted(e.id for e in await catalog.pending_events()) == ["deleted-1.1.1.1", "deleted-1.1.2.1"]
    # Nothing matched: the function sees no records and no event is written.
    assert await catalog.delete_instances("1.1", events=events) == []
    assert seen[-1] == []
    assert len(await catalog.pending_events()) == 2


async def test_a_failure_inside_delete_keeps_the_rows(catalog: Any) -> None:
    await catalog.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"), [event("dup")])
    with pytest.raises(CatalogError):
        await catalog.delete_instances("1.1", events=[event("dup")])
    assert len(await catalog.list_instances("1.1")) == 1
    study = await study_row(catalog, "1.1")
    assert study is not None and value(study, "00201208") == [1]


async def test_metadata_that_is_not_json_is_refused(catalog: Any) -> None:
    rec = make_record("1.1", "1.1.1", "1.1.1.1")
    rec.metadata = b"not json"
    with pytest.raises(CatalogError, match="metadata"):
        await catalog.upsert_instance(rec)
    assert await catalog.list_instances("1.1") == []


async def test_check_passes_on_an_open_catalog(catalog: Any) -> None:
    await catalog.check()


async def test_reopening_keeps_data_and_schema_version(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    cat = open_catalog(url)
    await cat.open()
    await cat.upsert_instance(make_record("1.1", "1.1.1", "1.1.1.1"))
    await cat.close()
    cat = open_catalog(url)
    await cat.open()
    assert len(await cat.list_instances("1.1")) == 1
    assert isinstance(cat, SQLiteCatalog)
    await cat.close()


async def test_a_closed_catalog_raises_catalog_error() -> None:
    cat = SQLiteCatalog(":memory:")
    with pytest.raises(CatalogError):
        await cat.check()


async def test_unreachable_postgres_raises_catalog_error() -> None:
    cat = open_catalog("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.open()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://relative/x.db",
        "sqlite:///",
        "mysql://h/db",
        "postgresql://h:5432",
        "postgresql://h:99999x/d",
        "",
    ],
)
def test_bad_catalog_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_catalog(url)
    assert "\n" not in info.value.reason


def test_good_catalog_urls() -> None:
    assert type(open_catalog("sqlite:///:memory:")).__name__ == "SQLiteCatalog"
    assert type(open_catalog("sqlite:///tmp/x/catalog.db")).__name__ == "SQLiteCatalog"
    pg = open_catalog("postgres://u@h:5433/db")
    assert type(pg).__name__ == "PostgresCatalog"
    assert pg.dsn == "postgresql://u@h:5433/db"  # type: ignore[attr-defined]


async def test_an_older_schema_is_migrated_on_open(tmp_path: Any) -> None:
    import sqlite3

    from dicomweb_core.catalog.schema import CREATE_VERSION_TABLE, SCHEMA_VERSION, migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(CREATE_VERSION_TABLE)
    for stmt in migrations("sqlite")[0]:
        conn.execute(stmt)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.commit()
    conn.close()
    cat = open_catalog(f"sqlite:///{path}")
    await cat.open()
    await cat.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "studies_pn_middle" in indexes
    conn.close()


async def test_a_newer_schema_is_refused(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "new.db"
    cat = open_catalog(f"sqlite:///{path}")
    await cat.open()
    await cat.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.commit()
    conn.close()
    cat = open_catalog(f"sqlite:///{path}")
    with pytest.raises(CatalogError, match="newer"):
        await cat.open()
