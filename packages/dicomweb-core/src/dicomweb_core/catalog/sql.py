"""The SQL text both backends run, per dialect. Built once per catalog, then reused so the
drivers' statement caches (sqlite3's, psycopg's prepared statements) hit every time."""

from __future__ import annotations

from dataclasses import dataclass

from .rows import INSTANCE_COLUMNS, RECORD_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS
from .schema import Dialect


def _upsert(table: str, columns: tuple[str, ...], key: str, ph: str) -> str:
    cols = ", ".join(columns)
    marks = ", ".join([ph] * len(columns))
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}"


@dataclass(frozen=True, slots=True)
class Statements:
    dialect: Dialect
    ph: str
    upsert_study: str
    upsert_series: str
    upsert_instance: str
    insert_seq: str
    old_instance: str
    delete_seq_of_instance: str
    count_series: str
    drop_empty_series: str
    count_study: str
    drop_empty_study: str
    insert_event: str
    pending_events: str
    mark_sent: str
    record_attempt: str
    insert_garbage: str
    select_garbage: str
    forget_garbage: str
    key_page: str

    def select_records(self, where: str) -> str:
        return f"SELECT {RECORD_COLUMNS} FROM instances WHERE {where}"


def statements(dialect: Dialect) -> Statements:
    ph = "?" if dialect == "sqlite" else "%s"
    if dialect == "sqlite":
        # group_concat keeps the order of an ordered subquery; DISTINCT is done there.
        modalities = (
            "(SELECT coalesce(group_concat(m, '\\'), '') FROM (SELECT DISTINCT modality AS m FROM series"
            f" WHERE study_uid = {ph} AND modality <> '' ORDER BY m))"
        )
        sop_classes = (
            "(SELECT coalesce(group_concat(c, '\\'), '') FROM (SELECT DISTINCT sop_class_uid AS c"
            f" FROM instances WHERE study_uid = {ph} ORDER BY c))"
        )
    else:
        modalities = (
            "(SELECT coalesce(string_agg(DISTINCT modality, '\\' ORDER BY modality), '') FROM series"
            f" WHERE study_uid = {ph} AND modality <> '')"
        )
        sop_classes = (
            "(SELECT coalesce(string_agg(DISTINCT sop_class_uid, '\\' ORDER BY sop_class_uid), '')"
            f" FROM instances WHERE study_uid = {ph})"
        )
    return Statements(
        dialect=dialect,
        ph=ph,
        upsert_study=_upsert("studies", STUDY_COLUMNS, "study_uid", ph),
        upsert_series=_upsert("series", SERIES_COLUMNS, "series_uid", ph),
        upsert_instance=_upsert("instances", INSTANCE_COLUMNS, "sop_instance_uid", ph),
        insert_seq=f"INSERT INTO seq_attrs (sop_instance_uid, study_uid, series_uid, path, value)"
        f" VALUES ({ph}, {ph}, {ph}, {ph}, {ph})",
        old_instance=f"SELECT study_uid, series_uid, object_key, digest FROM instances"
        f" WHERE sop_instance_uid = {ph}",
        delete_seq_of_instance=f"DELETE FROM seq_attrs WHERE sop_instance_uid = {ph}",
        count_series=f"UPDATE series SET num_instances = (SELECT count(*) FROM instances"
        f" WHERE instances.series_uid = series.series_uid) WHERE series_uid = {ph}",
        drop_empty_series=f"DELETE FROM series WHERE series_uid = {ph} AND num_instances = 0",
        count_study=f"UPDATE studies SET"
        f" num_series = (SELECT count(*) FROM series WHERE study_uid = {ph}),"
        f" num_instances = (SELECT coalesce(sum(num_instances), 0) FROM series WHERE study_uid = {ph}),"
        f" modalities = {modalities}, sop_classes = {sop_classes} WHERE study_uid = {ph}",
        drop_empty_study=f"DELETE FROM studies WHERE study_uid = {ph} AND num_series = 0",
        insert_event=f"INSERT INTO outbox (id, type, source, body, attempts, created)"
        f" VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
        pending_events=f"SELECT id, type, source, body, attempts FROM outbox WHERE sent IS NULL"
        f" ORDER BY created, id LIMIT {ph}",
        mark_sent=f"UPDATE outbox SET sent = {ph} WHERE id = {ph} AND sent IS NULL",
        record_attempt=f"UPDATE outbox SET attempts = attempts + 1 WHERE id = {ph}",
        insert_garbage=f"INSERT INTO garbage (object_key, created) VALUES ({ph}, {ph})"
        " ON CONFLICT (object_key) DO NOTHING",
        select_garbage=f"SELECT object_key FROM garbage ORDER BY created, object_key LIMIT {ph}",
        forget_garbage=f"DELETE FROM garbage WHERE object_key = {ph}",
        key_page=f"SELECT object_key FROM instances WHERE object_key > {ph} ORDER BY object_key LIMIT {ph}",
    )


def instance_filter(
    ph: str, study_uid: str, series_uid: str | None, sop_instance_uid: str | None
) -> tuple[str, list[str]]:
    """``WHERE`` text and parameters selecting instances of a study / series / one instance."""
    where = [f"study_uid = {ph}"]
    params = [study_uid]
    if series_uid is not None:
        where.append(f"series_uid = {ph}")
        params.append(series_uid)
    if sop_instance_uid is not None:
        where.append(f"sop_instance_uid = {ph}")
        params.append(sop_instance_uid)
    return " AND ".join(where), params


def study_count_params(study_uid: str) -> tuple[str, str, str, str, str]:
    """Parameters of :attr:`Statements.count_study` (the study UID, once per placeholder)."""
    return (study_uid,) * 5
