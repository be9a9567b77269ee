"""From an :class:`InstanceRecord` to catalog rows, and back. Pure: no I/O.

Everything indexed is derived from ``record.metadata`` (DICOM JSON, PS3.18 Annex F) and
the record's explicit fields; ``record.attributes`` is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .. import dicomtags as T
from ..errors import CatalogError
from ..models import Fragment, InstanceRecord, PixelDataInfo

#: Column order of the matching columns of ``studies`` (computed columns excluded).
STUDY_COLUMNS: tuple[str, ...] = (
    "study_uid", "study_date", "study_time", "accession_number", "patient_name", "pn_family",
    "pn_given", "pn_middle", "patient_id", "patient_birth_date", "patient_sex",
    "referring_physician_name", "rp_family", "rp_given", "rp_middle", "study_id",
    "study_description", "attrs", "updated",
)  # fmt: skip

SERIES_COLUMNS: tuple[str, ...] = (
    "series_uid", "study_uid", "modality", "series_number", "series_description", "series_date",
    "body_part_examined", "pps_start_date", "pps_start_time", "attrs",
)  # fmt: skip

INSTANCE_COLUMNS: tuple[str, ...] = (
    "sop_instance_uid", "study_uid", "series_uid", "sop_class_uid", "transfer_syntax_uid",
    "object_key", "size", "instance_number", "etag", "created", "metadata", "pixel_data", "digest", "attrs",
)  # fmt: skip

# String VRs whose values one level inside a sequence are indexed for sequence matching.
_SEQ_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "PN", "SH", "TM", "UI", "IS", "DS", "ST", "UC"})
_SEQ_VALUE_MAX = 256
_SEQ_ROWS_MAX = 512


@dataclass(slots=True)
class InstanceRows:
    """The rows one stored instance contributes to each table."""

    study: tuple[Any, ...]
    series: tuple[Any, ...]
    instance: tuple[Any, ...]
    seq: list[tuple[str, str, str, str, str]]


def element_text(elem: Any) -> str:
    """The string form of a DICOM JSON element's value: values joined by ``\\``, PN by
    their Alphabetic group, numbers in their shortest form; ``""`` when absent."""
    if not isinstance(elem, dict):
        return ""
    values = elem.get("Value")
    if not values:
        return ""
    parts: list[str] = []
    for v in values:
        if isinstance(v, dict):
            parts.append(str(v.get("Alphabetic", "")))
        elif isinstance(v, float) and v.is_integer():
            parts.append(str(int(v)))
        elif v is None:
            parts.append("")
        else:
            parts.append(str(v))
    return "\\".join(parts)


def normalize_date(value: str) -> str:
    """``YYYY.MM.DD`` (ACR-NEMA) -> ``YYYYMMDD``; other values unchanged."""
    return value.replace(".", "") if len(value) == 10 else value


def normalize_time(value: str) -> str:
    """``HH[MM[SS[.F]]]`` (or ``HH:MM:SS``) -> ``HHMMSS[.F]`` so times compare as strings."""
    if not value:
        return ""
    value = value.replace(":", "")
    whole, dot, frac = value.partition(".")
    return whole.ljust(6, "0") + (dot + frac if frac else "")


def pn_components(name: str) -> tuple[str, str, str]:
    """Upper-cased family, given and middle components of a PN's first value, alphabetic group."""
    first = name.split("\\", 1)[0].split("=", 1)[0]
    parts = [p.strip().upper() for p in first.split("^")] + ["", "", ""]
    return parts[0], parts[1], parts[2]


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text.split("\\", 1)[0])) if text else None
    except ValueError:
        return None


_STUDY_HEX = frozenset(T.tag_hex(t) for t in T.STUDY_LEVEL)
_SERIES_HEX = frozenset(T.tag_hex(t) for t in T.SERIES_LEVEL)
_INSTANCE_HEX = frozenset(T.tag_hex(t) for t in T.INSTANCE_LEVEL)


def _subset(meta: dict[str, Any], keys: frozenset[str]) -> bytes:
    # DICOM JSON keys are upper-case hex (PS3.18 F.2.1.1), as are ours.
    return orjson.dumps({k: v for k, v in meta.items() if k in keys})


def _seq_rows(meta: dict[str, Any], rec: InstanceRecord) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    for key, elem in meta.items():
        if not isinstance(elem, dict) or elem.get("vr") != "SQ":
            continue
        for item in elem.get("Value") or ():
            if not isinstance(item, dict):
                continue
            for sub_key, sub in item.items():
                if not isinstance(sub, dict) or sub.get("vr") not in _SEQ_VRS:
                    continue
                text = element_text(sub)
                if text and len(text) <= _SEQ_VALUE_MAX:
                    path = f"{key.upper()}.{sub_key.upper()}"
                    rows.append((rec.sop_instance_uid, rec.study_uid, rec.series_uid, path, text))
                    if len(rows) >= _SEQ_ROWS_MAX:
                        return rows
    return rows


def encode_pixel_data(info: PixelDataInfo | None) -> bytes | None:
    if info is None:
        return None
    return orjson.dumps(
        {
            "tag": info.tag,
            "value_offset": info.value_offset,
            "length": info.length,
            "encapsulated": info.encapsulated,
            "frame_size": info.frame_size,
            "number_of_frames": info.number_of_frames,
            "basic_offset_table": list(info.basic_offset_table),
            "fragments": [[f.offset, f.length] for f in info.fragments],
            "frames": [[f.offset, f.length] for f in info.frames],
        }
    )


def decode_pixel_data(blob: bytes | memoryview | None) -> PixelDataInfo | None:
    if blob is None:
        return None
    d = orjson.loads(bytes(blob))
    return PixelDataInfo(
        tag=d["tag"],
        value_offset=d["value_offset"],
        length=d["length"],
        encapsulated=d["encapsulated"],
        frame_size=d["frame_size"],
        number_of_frames=d["number_of_frames"],
        basic_offset_table=tuple(d["basic_offset_table"]),
        fragments=tuple(Fragment(o, n) for o, n in d["fragments"]),
        frames=tuple(Fragment(o, n) for o, n in d["frames"]),
    )


def instance_rows(rec: InstanceRecord, now: float) -> InstanceRows:
    """Derive every row an instance contributes. Raises :class:`CatalogError` when
    ``rec.metadata`` is not a DICOM JSON object."""
    try:
        meta = orjson.loads(rec.metadata)
    except orjson.JSONDecodeError as exc:
        raise CatalogError(f"instance {rec.sop_instance_uid}: metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CatalogError(f"instance {rec.sop_instance_uid}: metadata is not a DICOM JSON object")

    def text(tag: int) -> str:
        return element_text(meta.get(f"{tag:08X}"))

    patient_name = text(0x00100010)
    referring = text(0x00080090)
    study = (
        rec.study_uid,
        normalize_date(text(0x00080020)),
        normalize_time(text(0x00080030)),
        text(0x00080050),
        patient_name,
        *pn_components(patient_name),
        text(0x00100020),
        normalize_date(text(0x00100030)),
        text(0x00100040),
        referring,
        *pn_components(referring),
        text(0x00200010),
        text(0x00081030),
        _subset(meta, _STUDY_HEX),
        now,
    )
    series = (
        rec.series_uid,
        rec.study_uid,
        text(0x00080060),
        _int_or_none(text(0x00200011)),
        text(0x0008103E),
        normalize_date(text(0x00080021)),
        text(0x00180015),
        normalize_date(text(0x00400244)),
        normalize_time(text(0x00400245)),
        _subset(meta, _SERIES_HEX),
    )
    instance_number = rec.instance_number
    if instance_number is None:
        instance_number = _int_or_none(text(0x00200013))
    instance = (
        rec.sop_instance_uid,
        rec.study_uid,
        rec.series_uid,
        rec.sop_class_uid,
        rec.transfer_syntax_uid,
        rec.object_key,
        rec.size,
        instance_number,
        rec.etag,
        rec.created or now,
        rec.metadata,
        encode_pixel_data(rec.pixel_data),
        rec.digest,
        _subset(meta, _INSTANCE_HEX),
    )
    return InstanceRows(study, series, instance, _seq_rows(meta, rec))


def last_per_key(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per key (first column), the last one given: a batch stores each study and
    series row once, with the attributes of its last instance."""
    return list({r[0]: r for r in rows}.values())


def record_from_row(row: tuple[Any, ...]) -> InstanceRecord:
    """Rebuild a record from a ``SELECT`` of :data:`RECORD_COLUMNS`."""
    (sop, study, series, sop_class, ts, key, size, number, etag, created, metadata, pixel, digest) = row
    return InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=ts,
        object_key=key,
        size=size,
        metadata=bytes(metadata),
        pixel_data=decode_pixel_data(pixel),
        instance_number=number,
        etag=etag,
        created=created,
        digest=digest,
    )


#: The columns :func:`record_from_row` expects, in order.
RECORD_COLUMNS = ", ".join(INSTANCE_COLUMNS[:-1])
