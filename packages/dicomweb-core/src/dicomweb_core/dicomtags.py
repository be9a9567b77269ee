"""Tag tables for QIDO-RS: which attributes belong to which level, and which are returned.

Tags are ``int`` (``0x0020000D``); DICOM JSON keys are their 8-digit upper-case hex form.
Keyword/tag/VR lookups go through pydicom's data dictionary, imported on first use (pydicom
pulls in numpy: not something a service's start-up should wait for).
"""

from __future__ import annotations

STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
SOP_CLASS_UID = 0x00080016
RETRIEVE_URL = 0x00081190
INSTANCE_AVAILABILITY = 0x00080056
MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062
NUMBER_OF_STUDY_RELATED_SERIES = 0x00201206
NUMBER_OF_STUDY_RELATED_INSTANCES = 0x00201208
NUMBER_OF_SERIES_RELATED_INSTANCES = 0x00201209

#: PS3.18 Table 10.6.3-3: returned for every study match (computed ones are added apart).
STUDY_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080090, 0x00080201,
    0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x0020000D, 0x00200010,
)  # fmt: skip

#: PS3.18 Table 10.6.3-4: returned for every series match.
SERIES_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080060, 0x00080201, 0x0008103E, 0x0020000E, 0x00200011,
    0x00400244, 0x00400245, 0x00400275,
)  # fmt: skip

#: PS3.18 Table 10.6.3-5: returned for every instance match.
INSTANCE_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080016, 0x00080018, 0x00080201, 0x00200013, 0x00280010,
    0x00280011, 0x00280100, 0x00280008,
)  # fmt: skip

#: Patient and study module attributes: what ``includefield=all`` adds at study level.
STUDY_LEVEL: frozenset[int] = frozenset(STUDY_RETURN) | {
    0x00080051, 0x00081030, 0x00081032, 0x00081048, 0x00081060, 0x00081080, 0x00081110,
    0x00100021, 0x00100024, 0x00100032, 0x00101000, 0x00101001, 0x00101002, 0x00101010,
    0x00101020, 0x00101030, 0x00102160, 0x00104000, 0x00102201, 0x00102203, 0x00321032,
    0x00321060, 0x00401001,
}  # fmt: skip

#: General series / equipment / frame of reference attributes: ``includefield=all`` at series level.
SERIES_LEVEL: frozenset[int] = frozenset(SERIES_RETURN) | {
    0x00080021, 0x00080031, 0x00080070, 0x00080080, 0x00081010, 0x00081040, 0x00081050,
    0x00081070, 0x00081090, 0x00081111, 0x00180015, 0x00181030, 0x00185100, 0x00200052,
    0x00200060, 0x00400253, 0x00400254,
}  # fmt: skip

INSTANCE_LEVEL: frozenset[int] = frozenset(INSTANCE_RETURN)


def tag_hex(tag: int) -> str:
    """``0x0020000D`` -> ``"0020000D"`` (the DICOM JSON key)."""
    return f"{tag:08X}"


def lookup_tag(key: str) -> int | None:
    """A keyword (``PatientID``) or 8-digit hex tag (``00100020``) -> the tag, else ``None``."""
    if len(key) == 8:
        try:
            return int(key, 16)
        except ValueError:
            pass
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(key)
    return int(tag) if tag is not None else None


def vr_of(tag: int) -> str | None:
    """The dictionary VR of ``tag`` (first of a multi-VR entry), or ``None`` if unknown."""
    try:
        from pydicom.datadict import dictionary_VR

        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return None


def keyword_of(tag: int) -> str:
    """The keyword of ``tag``, or its hex form for private/unknown tags."""
    from pydicom.datadict import keyword_for_tag

    return str(keyword_for_tag(tag)) or tag_hex(tag)
