"""Plain value objects shared by the scanner, the stores, the catalogs and the apps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Fragment:
    """A byte range inside a stored object: ``offset`` from the start of the object."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PixelDataInfo:
    """Where Pixel Data (7FE0,0010) (or Float/Double Float Pixel Data) sits in a stored object.

    ``value_offset`` is the offset of the first value byte (after the element header).
    ``length`` is the defined length, or ``None`` for encapsulated (undefined length).
    Native: ``frames`` holds one range per frame (``number_of_frames`` times ``frame_size``).
    Encapsulated: ``basic_offset_table`` holds the BOT entries (may be empty), ``fragments``
    every fragment item's value range, and ``frames`` the byte ranges per frame when they
    are known (one fragment per frame, or from the BOT); otherwise empty.
    """

    tag: int
    value_offset: int
    length: int | None
    encapsulated: bool
    frame_size: int | None = None
    number_of_frames: int = 1
    basic_offset_table: tuple[int, ...] = ()
    fragments: tuple[Fragment, ...] = ()
    frames: tuple[Fragment, ...] = ()


def shift_pixel_data(info: PixelDataInfo, delta: int) -> PixelDataInfo:
    """The same pixel data ``delta`` bytes further into the object (after a prepended prefix)."""
    if not delta:
        return info

    def moved(frags: tuple[Fragment, ...]) -> tuple[Fragment, ...]:
        return tuple(Fragment(f.offset + delta, f.length) for f in frags)

    return replace(
        info,
        value_offset=info.value_offset + delta,
        fragments=moved(info.fragments),
        frames=moved(info.frames),
    )


@dataclass(frozen=True, slots=True)
class InstanceKey:
    study_uid: str
    series_uid: str
    sop_instance_uid: str


@dataclass(slots=True)
class InstanceRecord:
    """One catalogued instance. ``metadata`` is the instance's DICOM JSON (orjson bytes)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    object_key: str
    size: int
    metadata: bytes
    pixel_data: PixelDataInfo | None = None
    # Attributes for QIDO, by keyword (the string values as stored; multi-values joined by "\\").
    attributes: dict[str, str] = field(default_factory=dict)
    instance_number: int | None = None
    etag: str = ""
    created: float = 0.0
    #: SHA-256 (hex) of the stored object's bytes; tells an identical re-send from new content.
    digest: str = ""
