"""What a scanned object is: its validated UIDs and its catalog record.

Shared by STOW (:mod:`.stowpart`), ``dicomweb reindex`` and the remote catalog (through
:mod:`.objectscan`); depends only on the parsers and value objects.
"""

from __future__ import annotations

import time
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from .dicomjson import dumps, to_dicom_json
from .models import InstanceRecord, shift_pixel_data
from .rawvalues import raw_int, raw_text
from .scanner import ScanResult
from .stores.base import StoredObject
from .uids import is_valid_uid

# PS3.4 Annex GG / PS3.18 Table 10.5.3-1 status codes used in FailureReason.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


class PartFailure(Exception):
    """One part could not be stored; the request goes on with the next part."""

    def __init__(self, status: int, reason: str, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


def instance_record(
    result: ScanResult, ids: tuple[str, str, str, str], stored: StoredObject, prefix: int = 0
) -> tuple[InstanceRecord, dict[str, Any]]:
    """The catalog record of a scanned, stored object (and its DICOM JSON metadata).
    ``prefix``: bytes put in front of the received ones when storing (offsets move by it)."""
    study, series, sop, sop_class = ids
    ds = result.dataset
    metadata = to_dicom_json(
        ds, study_uid=study, series_uid=series, sop_instance_uid=sop, pixel_data=result.pixel_data
    )
    record = InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=result.transfer_syntax_uid,
        object_key=stored.key,
        size=stored.size,
        metadata=dumps(metadata),
        pixel_data=shift_pixel_data(result.pixel_data, prefix) if result.pixel_data else None,
        instance_number=raw_int(ds, 0x00200013),
        etag=stored.etag,
        created=time.time(),
        digest=stored.digest,
    )
    return record, metadata


def identify(ds: Dataset, study_uid: str | None = None) -> tuple[str, str, str, str]:
    """Validated (study, series, sop instance, sop class) UIDs of a data set; raises
    :class:`PartFailure` naming the bad one (or a study that differs from ``study_uid``)."""
    sop_class = raw_text(ds, 0x00080016)
    sop = raw_text(ds, 0x00080018)
    study = raw_text(ds, 0x0020000D)
    series = raw_text(ds, 0x0020000E)
    for name, value in (
        ("SOPClassUID", sop_class),
        ("SOPInstanceUID", sop),
        ("StudyInstanceUID", study),
        ("SeriesInstanceUID", series),
    ):
        if not value:
            raise PartFailure(CANNOT_UNDERSTAND, f"missing {name}", sop_class, sop)
        if not is_valid_uid(value):
            raise PartFailure(CANNOT_UNDERSTAND, f"invalid {name} {value[:80]!r}", sop_class, sop)
    if study_uid is not None and study != study_uid:
        raise PartFailure(
            DATA_SET_MISMATCH,
            f"StudyInstanceUID {study} does not match the study in the request URL ({study_uid})",
            sop_class,
            sop,
        )
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not ts or not is_valid_uid(ts):
        raise PartFailure(TRANSFER_SYNTAX_NOT_SUPPORTED, f"invalid transfer syntax {ts!r}", sop_class, sop)
    uid = UID(ts)
    if not uid.is_transfer_syntax and not uid.is_private:
        raise PartFailure(TRANSFER_SYNTAX_NOT_SUPPORTED, f"unknown transfer syntax {ts}", sop_class, sop)
    return study, series, sop, sop_class
