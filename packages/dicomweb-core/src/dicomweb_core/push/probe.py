"""Is an item a DICOM Part-10 object, and which SOP Instance / Study UIDs does it carry?

Only the header is read (pydicom stops before Pixel Data and defers large values), so a
2 GiB file costs the same as a 0.5 MB one. The UIDs tie the server's answer (which names
instances by SOP Instance UID) back to the files, and go into the resume journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

_PREAMBLE = 128
_MAGIC = b"DICM"
# A Part-10 stream without the 128-byte preamble starts with the (0002,xxxx) group.
_BARE_META = b"\x02\x00"


class NotDicomError(Exception):
    """The item is not a DICOM object this tool can send (reported as skipped)."""


@dataclass(frozen=True)
class Header:
    sop_instance_uid: str
    study_instance_uid: str


def probe(f: IO[bytes]) -> Header:
    start = f.read(_PREAMBLE + len(_MAGIC))
    if start[_PREAMBLE:] != _MAGIC and not start.startswith(_BARE_META):
        raise NotDicomError("not a DICOM file (no DICM preamble)")
    f.seek(0)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(
            f,
            force=start[_PREAMBLE:] != _MAGIC,
            stop_before_pixels=True,
            defer_size=1024,
            specific_tags=["SOPInstanceUID", "StudyInstanceUID"],
        )
    except OSError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotDicomError(f"unreadable DICOM header: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPInstanceUID", "") or (meta.get("MediaStorageSOPInstanceUID", "") if meta else ""))
    if not sop:
        raise NotDicomError("no SOP Instance UID")
    return Header(sop.strip("\0 "), str(ds.get("StudyInstanceUID", "")).strip("\0 "))
