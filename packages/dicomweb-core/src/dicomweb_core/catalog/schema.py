"""Catalog schema and its versioned migrations, for SQLite and PostgreSQL.

Three entity tables mirror the DICOM information model:

* ``studies`` and ``series`` hold the attributes QIDO matches on, one indexed column each,
  plus the computed attributes (number of related series/instances, modalities and SOP
  classes in the study). They are recomputed from ``instances`` inside the transaction
  that stores or deletes an instance, so a search never aggregates at query time.
* ``instances`` holds one row per SOP Instance UID with the DICOM JSON metadata blob as
  produced at ingest (returned by WADO metadata without re-encoding).
* ``seq_attrs`` indexes the string values found one level inside sequences (``path`` is
  ``"SSSSSSSS.TTTTTTTT"``), which is what sequence matching needs.

``attrs`` columns hold the small DICOM JSON object of the level's return attributes, so a
search result is assembled without parsing whole instance metadata.

Migrations are ordered lists of statements; version ``n`` is ``MIGRATIONS[n - 1]``. The
same template serves both dialects; only a few type names differ.
"""

from __future__ import annotations

from typing import Literal

from ..errors import CatalogError

Dialect = Literal["sqlite", "postgres"]

_TYPES: dict[Dialect, dict[str, str]] = {
    # Text columns we match on use the C collation in PostgreSQL so that a plain b-tree
    # index serves equality, ranges and LIKE 'prefix%' alike (and so that ordering is
    # byte-wise, the same as SQLite's BINARY collation).
    "sqlite": {"t": "TEXT", "blob": "BLOB", "real": "REAL", "int": "INTEGER"},
    "postgres": {"t": 'TEXT COLLATE "C"', "blob": "BYTEA", "real": "DOUBLE PRECISION", "int": "BIGINT"},
}

_V1 = [
    """CREATE TABLE studies (
        study_uid {t} PRIMARY KEY,
        study_date {t} NOT NULL DEFAULT '',
        study_time {t} NOT NULL DEFAULT '',
        accession_number {t} NOT NULL DEFAULT '',
        patient_name {t} NOT NULL DEFAULT '',
        pn_family {t} NOT NULL DEFAULT '',
        pn_given {t} NOT NULL DEFAULT '',
        pn_middle {t} NOT NULL DEFAULT '',
        patient_id {t} NOT NULL DEFAULT '',
        patient_birth_date {t} NOT NULL DEFAULT '',
        patient_sex {t} NOT NULL DEFAULT '',
        referring_physician_name {t} NOT NULL DEFAULT '',
        rp_family {t} NOT NULL DEFAULT '',
        rp_given {t} NOT NULL DEFAULT '',
        rp_middle {t} NOT NULL DEFAULT '',
        study_id {t} NOT NULL DEFAULT '',
        study_description {t} NOT NULL DEFAULT '',
        num_series {int} NOT NULL DEFAULT 0,
        num_instances {int} NOT NULL DEFAULT 0,
        modalities {t} NOT NULL DEFAULT '',
        sop_classes {t} NOT NULL DEFAULT '',
        attrs {blob} NOT NULL,
        updated {real} NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX studies_order ON studies (study_date DESC, study_time DESC, study_uid)",
    "CREATE INDEX studies_patient_id ON studies (patient_id)",
    "CREATE INDEX studies_patient_name ON studies (patient_name)",
    "CREATE INDEX studies_pn_family ON studies (pn_family)",
    "CREATE INDEX studies_pn_given ON studies (pn_given)",
    "CREATE INDEX studies_accession ON studies (accession_number)",
    "CREATE INDEX studies_rp_name ON studies (referring_physician_name)",
    "CREATE INDEX studies_study_id ON studies (study_id)",
    """CREATE TABLE series (
        series_uid {t} PRIMARY KEY,
        study_uid {t} NOT NULL,
        modality {t} NOT NULL DEFAULT '',
        series_number {int},
        series_description {t} NOT NULL DEFAULT '',
        series_date {t} NOT NULL DEFAULT '',
        body_part_examined {t} NOT NULL DEFAULT '',
        pps_start_date {t} NOT NULL DEFAULT '',
        pps_start_time {t} NOT NULL DEFAULT '',
        num_instances {int} NOT NULL DEFAULT 0,
        attrs {blob} NOT NULL
    )""",
    "CREATE INDEX series_order ON series (study_uid, series_number, series_uid)",
    "CREATE INDEX series_modality ON series (modality, study_uid)",
    """CREATE TABLE instances (
        sop_instance_uid {t} PRIMARY KEY,
        study_uid {t} NOT NULL,
        series_uid {t} NOT NULL,
        sop_class_uid {t} NOT NULL,
        transfer_syntax_uid {t} NOT NULL,
        object_key {t} NOT NULL,
        size {int} NOT NULL,
        instance_number {int},
        etag {t} NOT NULL DEFAULT '',
        created {real} NOT NULL DEFAULT 0,
        metadata {blob} NOT NULL,
        pixel_data {blob},
        attrs {blob} NOT NULL
    )""",
    "CREATE INDEX instances_order ON instances (study_uid, series_uid, instance_number, sop_instance_uid)",
    "CREATE INDEX instances_series ON instances (series_uid, instance_number, sop_instance_uid)",
    "CREATE INDEX instances_sop_class ON instances (study_uid, sop_class_uid)",
    """CREATE TABLE seq_attrs (
        sop_instance_uid {t} NOT NULL,
        study_uid {t} NOT NULL,
        series_uid {t} NOT NULL,
        path {t} NOT NULL,
        value {t} NOT NULL
    )""",
    "CREATE INDEX seq_attrs_match ON seq_attrs (path, value)",
    "CREATE INDEX seq_attrs_instance ON seq_attrs (sop_instance_uid)",
    """CREATE TABLE outbox (
        id {t} PRIMARY KEY,
        type {t} NOT NULL,
        source {t} NOT NULL,
        body {blob} NOT NULL,
        attempts {int} NOT NULL DEFAULT 0,
        created {real} NOT NULL,
        sent {real}
    )""",
    "CREATE INDEX outbox_pending ON outbox (created) WHERE sent IS NULL",
]

# Fuzzy person-name matching ORs prefix conditions over the three components; without an
# index on the middle name that OR falls back to a full scan of ``studies``.
_V2 = [
    "CREATE INDEX studies_pn_middle ON studies (pn_middle)",
    "CREATE INDEX studies_rp_family ON studies (rp_family)",
    "CREATE INDEX studies_rp_given ON studies (rp_given)",
    "CREATE INDEX studies_rp_middle ON studies (rp_middle)",
]

# Outbox leases (replicas claim events without sending the same one twice at once) and
# quiet-study tracking (``quiet_sent`` is the ``updated`` value the last study-level event
# covered; a newer ``updated`` means the study changed since).
_V3 = [
    "ALTER TABLE outbox ADD COLUMN lease_until {real}",
    "ALTER TABLE studies ADD COLUMN quiet_sent {real}",
    "CREATE INDEX studies_quiet ON studies (updated) WHERE quiet_sent IS NULL OR quiet_sent < updated",
]

# Revisioned object keys: a store never overwrites an object. ``digest`` tells an identical
# re-send from new content; ``garbage`` holds object keys that no row references any more,
# written in the transaction that stopped referencing them and removed once the object is
# gone (after the commit, or by the start-up sweep / ``dicomweb fsck`` after a crash).
_V4 = [
    "ALTER TABLE instances ADD COLUMN digest {t} NOT NULL DEFAULT ''",
    "CREATE INDEX instances_object_key ON instances (object_key)",
    """CREATE TABLE garbage (
        object_key {t} PRIMARY KEY,
        created {real} NOT NULL
    )""",
    "CREATE INDEX garbage_created ON garbage (created)",
]

#: Ordered migrations; the schema version after applying ``MIGRATIONS[:n]`` is ``n``.
_TEMPLATES: tuple[tuple[str, ...], ...] = (tuple(_V1), tuple(_V2), tuple(_V3), tuple(_V4))


def migrations(dialect: Dialect) -> tuple[tuple[str, ...], ...]:
    """The migrations for ``dialect``, each a tuple of statements to run in one transaction."""
    types = _TYPES[dialect]
    return tuple(tuple(stmt.format(**types) for stmt in version) for version in _TEMPLATES)


def pending_migrations(dialect: Dialect, current: int, what: str) -> list[tuple[int, tuple[str, ...]]]:
    """(version, statements) still to run on a catalog at schema version ``current``;
    refuses a catalog written by newer software (``what`` names it in the error)."""
    everything = migrations(dialect)
    if current > len(everything):
        raise CatalogError(
            f"{what}: schema version {current} is newer than this software ({len(everything)})"
        )
    return list(enumerate(everything[current:], start=current + 1))


SCHEMA_VERSION = len(_TEMPLATES)

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
