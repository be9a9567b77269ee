"""DICOM JSON (PS3.18 Annex F) produced once, at ingest.

Bulk data (Pixel Data and any binary value above a threshold) becomes a ``BulkDataURI``.
The URI is stored with the placeholder :data:`BASE_PLACEHOLDER` in place of the service's
public base URL, which only the request that reads the metadata knows; WADO substitutes it
with one ``bytes.replace`` when it serves the metadata.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Callable
from typing import Any

import orjson
from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .models import PixelDataInfo

log = logging.getLogger("dicomweb.dicomjson")

BASE_PLACEHOLDER = "@@BASE@@"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
#: Binary values longer than this are served as bulk data rather than inlined.
BULK_DATA_THRESHOLD = 1024

_AMBIGUOUS_VRS = frozenset({"US or SS", "OB or OW", "US or SS or OW", "US or OW"})


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    return f"/studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}"


def bulkdata_uri(study_uid: str, series_uid: str, sop_instance_uid: str, tag: int) -> str:
    return f"{BASE_PLACEHOLDER}{instance_path(study_uid, series_uid, sop_instance_uid)}/bulkdata/{tag:08X}"


class _Unsupported(Exception):
    """A value the fast path does not handle; the caller falls back to pydicom."""


#: What pydicom raises for a value it cannot convert: number text that is not a number
#: (``ValueError``, which includes ``UnicodeDecodeError``), a binary value of the wrong length
#: (``struct.error``), a number out of range (``OverflowError``), a VR that DICOM does not
#: define (``NotImplementedError``: "Unknown Value Representation"; the header scanner, like
#: pydicom's reader, walks such an element by its 2-byte length). Such an element is left out
#: of the metadata, logged, rather than refusing an object that parsed. Anything else is a
#: bug and propagates.
_CONVERSION_ERRORS = (ValueError, struct.error, OverflowError, NotImplementedError)


_BIN_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})  # one value, backslash is not a delimiter
_STR_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
_NUM_FMT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_ENCODINGS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
#: pydicom's rule: base64 grows by 4/3, so raw values above this many bytes become bulk data.
_BULK_RAW = (BULK_DATA_THRESHOLD // 4) * 3


def _charset(ds: Dataset) -> str:
    raw = ds._dict.get(0x00080005)  # type: ignore[call-overload]
    if raw is None:
        return "latin-1"
    value = raw.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip(" \x00")
    elif not isinstance(value, str):
        raise _Unsupported("multi-valued SpecificCharacterSet")
    encoding = _ENCODINGS.get(value.strip())
    if encoding is None:
        raise _Unsupported(f"character set {value!r}")
    return encoding


def _fast_dataset(ds: Dataset, bulk: Callable[[int], str], encoding: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, elem in ds._dict.items():
        tag = int(key)
        if tag >> 16 == 0x0002:
            continue  # file meta is not part of the data set
        try:
            out[f"{tag:08X}"] = _fast_element(tag, elem, bulk, encoding)
        except _Unsupported:
            # This element only: let pydicom convert it (ambiguous VRs, odd values, ...).
            converted = _pydicom_element(ds, tag, lambda e: bulk(int(e.tag)))
            if converted is not None:
                out[f"{tag:08X}"] = converted
    return out


def _pydicom_element(
    ds: Dataset, tag: int, bulk_handler: Callable[[DataElement], str]
) -> dict[str, Any] | None:
    """pydicom's DICOM JSON for one element; ``None`` (logged) when its value is malformed."""
    try:
        return dict(ds[tag].to_json_dict(bulk_handler, BULK_DATA_THRESHOLD))
    except _CONVERSION_ERRORS as exc:
        log.warning("element %08X left out of the metadata: its value is malformed (%s)", tag, exc)
        return None


def _fast_element(tag: int, elem: Any, bulk: Callable[[int], str], encoding: str) -> dict[str, Any]:
    vr = elem.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)  # implicit VR: the dictionary's, when it is unambiguous
        except KeyError:
            raise _Unsupported("implicit VR of an unknown tag") from None
    if vr in _AMBIGUOUS_VRS or (vr == "UN" and tag in DicomDictionary):
        # Ambiguous VRs, and UN for a known tag (pydicom recovers the real VR): pydicom's job.
        raise _Unsupported("ambiguous VR")
    value = elem.value
    if vr == "SQ":
        if isinstance(value, bytes):
            raise _Unsupported("raw sequence")
        return {"vr": vr, "Value": [_fast_dataset(item, bulk, encoding) for item in value]}
    if not isinstance(value, (bytes, bytearray)):
        raise _Unsupported("converted element")
    if not value:
        return {"vr": vr}
    if vr in _BIN_VRS:
        if len(value) > _BULK_RAW:
            return {"vr": vr, "BulkDataURI": bulk(tag)}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
    little = elem.is_little_endian
    if vr in _NUM_FMT:
        fmt = _NUM_FMT[vr]
        size = struct.calcsize(fmt)
        if len(value) % size:
            raise _Unsupported("odd binary number length")
        return {
            "vr": vr,
            "Value": list(struct.unpack(f"{'<' if little else '>'}{len(value) // size}{fmt}", value)),
        }
    if vr == "AT":
        words = struct.unpack(f"{'<' if little else '>'}{len(value) // 2}H", value[: len(value) // 4 * 4])
        return {"vr": vr, "Value": [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]}
    try:
        text = value.decode(encoding)
    except UnicodeDecodeError:
        raise _Unsupported("text not in the declared character set") from None
    if vr in _TEXT_VRS:
        text = text.rstrip(" \x00")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    parts = text.split("\\")
    if vr == "PN":
        values: list[Any] = []
        for part in parts:
            part = part.rstrip(" \x00")
            if not part:
                values.append(None)
                continue
            groups = part.split("=")
            pn = {"Alphabetic": groups[0]}
            if len(groups) > 1:
                pn["Ideographic"] = groups[1]
            if len(groups) > 2:
                pn["Phonetic"] = groups[2]
            values.append(pn)
        return {"vr": vr, "Value": values} if any(v is not None for v in values) else {"vr": vr}
    if vr in ("IS", "DS"):
        nums: list[Any] = []
        for part in parts:
            part = part.strip(" \x00")
            if not part:
                nums.append(None)
                continue
            try:
                nums.append(int(part) if vr == "IS" else _ds_number(part))
            except ValueError:
                raise _Unsupported("bad number") from None
        return {"vr": vr, "Value": nums} if any(v is not None for v in nums) else {"vr": vr}
    if vr in _STR_VRS:
        strs: list[Any] = [p.strip(" \x00") if vr != "UI" else p.rstrip(" \x00") for p in parts]
        strs = [p if p else None for p in strs]
        return {"vr": vr, "Value": strs} if any(v is not None for v in strs) else {"vr": vr}
    raise _Unsupported(f"VR {vr}")


def _ds_number(text: str) -> float | int:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


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
        encoding = _charset(ds)
    except _Unsupported:
        # Character sets the fast path does not decode (ISO 2022 escapes, several values):
        # pydicom's converter, element by element.
        out = _pydicom_json(ds, bulk_handler)
    else:
        # The fast path reads pydicom's raw (not yet converted) elements directly: several
        # times faster than converting every element; an unusual element falls back alone.
        out = _fast_dataset(
            ds, lambda tag: bulkdata_uri(study_uid, series_uid, sop_instance_uid, tag), encoding
        )
    if pixel_data is not None:
        vr = "OB" if pixel_data.encapsulated or ds.get("BitsAllocated", 16) <= 8 else "OW"
        if pixel_data.tag != 0x7FE00010:
            vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(pixel_data.tag, vr)
        out[f"{pixel_data.tag:08X}"] = {
            "vr": vr,
            "BulkDataURI": bulkdata_uri(study_uid, series_uid, sop_instance_uid, pixel_data.tag),
        }
    elif _deflated_image(ds):
        # A deflated data set has no byte offsets to record, but its Pixel Data is bulk data
        # all the same: WADO serves it from the inflated object.
        out["7FE00010"] = {
            "vr": "OB" if ds.get("BitsAllocated", 16) <= 8 else "OW",
            "BulkDataURI": bulkdata_uri(study_uid, series_uid, sop_instance_uid, 0x7FE00010),
        }
    return out


def _deflated_image(ds: Dataset) -> bool:
    """A Deflated Explicit VR Little Endian data set with the Image Pixel attributes."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return syntax == DEFLATED_EXPLICIT_VR_LE and all(t in ds for t in (0x00280010, 0x00280011, 0x00280100))


def _pydicom_json(ds: Dataset, bulk_handler: Callable[[DataElement], str]) -> dict[str, Any]:
    """pydicom's DICOM JSON of the data set; a malformed element is left out, not fatal."""
    out: dict[str, Any] = {}
    for key in list(ds._dict):
        tag = int(key)
        if tag >> 16 == 0x0002:
            continue
        converted = _pydicom_element(ds, tag, bulk_handler)
        if converted is not None:
            out[f"{tag:08X}"] = converted
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
