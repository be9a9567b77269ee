"""Reading a few well-known values straight from pydicom's raw (unconverted) elements.

``Dataset.get("Rows")`` looks the keyword up, converts the element and caches it: tens of
microseconds each. The ingest hot path needs a handful of values per instance; decoding the
raw bytes directly is an order of magnitude cheaper. Anything unusual falls back to pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

_US = {True: struct.Struct("<H"), False: struct.Struct(">H")}


def _raw(ds: Dataset, tag: int) -> Any:
    return ds._dict.get(tag)  # type: ignore[call-overload]


def raw_text(ds: Dataset, tag: int) -> str:
    """A single-valued string element (UI, CS, LO, ...), padding stripped; ``""`` if absent."""
    elem = _raw(ds, tag)
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    if value is None:
        return ""
    return str(value).strip(" \x00")


def raw_int(ds: Dataset, tag: int) -> int | None:
    """An integer element (US, or an IS string); ``None`` if absent, empty or malformed."""
    elem = _raw(ds, tag)
    if elem is None:
        return None
    value = elem.value
    try:
        if isinstance(value, bytes):
            if not value:
                return None
            vr = elem.VR or dictionary_VR(tag)  # implicit VR: the dictionary's
            if vr == "US":
                return int(_US[elem.is_little_endian].unpack_from(value)[0])
            text = value.decode("latin-1").strip(" \x00")
            return int(text.split("\\")[0]) if text else None
        if value is None or value == "":
            return None
        return int(value)
    except (ValueError, KeyError, struct.error, TypeError):
        return None
