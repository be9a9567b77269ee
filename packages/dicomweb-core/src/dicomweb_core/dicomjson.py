"""DICOM JSON (PS3.18 Annex F) produced once, at ingest.

Bulk data (Pixel Data and any binary value above a threshold) becomes a ``BulkDataURI``.
The URI is stored with the placeholder :data:`BASE_PLACEHOLDER` in place of the service's
public base URL, which only the request that reads the metadata knows; WADO substitutes it
with one ``bytes.replace`` when it serves the metadata.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .models import PixelDataInfo

BASE_PLACEHOLDER = "@@BASE@@"
#: Binary values longer than this are served as bulk data rather than inlined.
BULK_DATA_THRESHOLD = 1024

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    return f"/studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}"


def bulkdata_uri(study_uid: str, series_uid: str, sop_instance_uid: str, tag: int) -> str:
    return f"{BASE_PLACEHOLDER}{instance_path(study_uid, series_uid, sop_instance_uid)}/bulkdata/{tag:08X}"


def to_dicom_json(
    ds: Dataset,
    *,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    pixel_data: PixelDataInfo | None,
) -> dict[str, Any]:
    """The instance's DICOM JSON object, with bulk data as placeholder ``BulkDataURI``s."""

    def bulk_handler(elem: DataElement) -> str:
        return bulkdata_uri(study_uid, series_uid, sop_instance_uid, int(elem.tag))

    try:
        out: dict[str, Any] = ds.to_json_dict(BULK_DATA_THRESHOLD, bulk_handler)
    except Exception:
        # A malformed value in one element must not sink the instance: drop the bad
        # elements (pydicom logs them) rather than refuse an object that parsed.
        out = ds.to_json_dict(BULK_DATA_THRESHOLD, bulk_handler, suppress_invalid_tags=True)
    if pixel_data is not None:
        vr = "OB" if pixel_data.encapsulated or ds.get("BitsAllocated", 16) <= 8 else "OW"
        if pixel_data.tag != 0x7FE00010:
            vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(pixel_data.tag, vr)
        out[f"{pixel_data.tag:08X}"] = {
            "vr": vr,
            "BulkDataURI": bulkdata_uri(study_uid, series_uid, sop_instance_uid, pixel_data.tag),
        }
    return out


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def element_string(ds: Dataset, keyword: str) -> str:
    """A top-level element as one string (multi-values joined by ``\\``), ``""`` if absent."""
    elem = ds.get(keyword)
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def tag_hex(keyword_or_tag: str | int) -> str:
    return f"{int(Tag(keyword_or_tag)):08X}"
