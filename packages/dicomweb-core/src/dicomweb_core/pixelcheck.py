"""What a stored header claims about its pixel data, checked against the bytes at ingest.

Retrieval sizes its work from the catalog (frame count, frame size, fragment offsets), so an
object is accepted only when those numbers agree with what was actually received:

* the transfer syntax is one DICOM defines (else failure 0xC122);
* ``NumberOfFrames`` is an integer within ``1..max_frames``;
* native pixel data holds at least Rows x Columns x Samples x BitsAllocated x Frames bits.
  Longer values (padding after the last frame, seen in real files) are accepted: frames
  are served from the offsets those numbers give, so the extra bytes are never part of one;
* encapsulated pixel data has at least one fragment per frame (PS3.5 A.4: a frame is one
  or more fragments; a fragment never holds parts of two frames).

Pixel data with no image geometry at all (no Rows, Columns, BitsAllocated) is stored and
served as bulk data only: it has no frames. Anything else is failure 0xC000 with the reason.
Deflated data sets have no byte offsets to check (they are served through a bounded slow
path); only the frame count is checked there.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom._uid_dict import UID_dictionary

from .rawvalues import raw_int, raw_text
from .scanner import ScanResult

CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122

_ROWS, _COLUMNS, _SAMPLES, _FRAMES, _BITS = 0x00280010, 0x00280011, 0x00280002, 0x00280008, 0x00280100
_PHOTOMETRIC = 0x00280004


@dataclass(frozen=True, slots=True)
class PixelProblem:
    """Why an object is refused: a PS3.18 failure reason and a sentence."""

    status: int
    reason: str


def known_transfer_syntax(uid: str) -> bool:
    entry = UID_dictionary.get(uid)
    return entry is not None and entry[1] == "Transfer Syntax"


def check_scan(result: ScanResult, *, max_frames: int) -> PixelProblem | None:
    """``None`` when the header's pixel description agrees with the received bytes."""
    dataset, transfer_syntax, pixel_data = result.dataset, result.transfer_syntax_uid, result.pixel_data
    if not known_transfer_syntax(transfer_syntax):
        return PixelProblem(TRANSFER_SYNTAX_NOT_SUPPORTED, f"unknown transfer syntax {transfer_syntax}")
    frames = raw_int(dataset, _FRAMES)
    if _FRAMES in dataset and (frames is None or not 1 <= frames <= max_frames):
        shown = raw_text(dataset, _FRAMES)[:40]
        return _bad(f"NumberOfFrames {shown!r} is not an integer within 1..{max_frames}")
    if pixel_data is None:
        return None
    frames = frames or 1
    rows, cols, bits = raw_int(dataset, _ROWS), raw_int(dataset, _COLUMNS), raw_int(dataset, _BITS)
    samples = raw_int(dataset, _SAMPLES) if _SAMPLES in dataset else 1
    if _ROWS not in dataset and _COLUMNS not in dataset and _BITS not in dataset:
        return None  # no image geometry at all: served as bulk data only, never as frames
    for name, value in (
        ("Rows", rows),
        ("Columns", cols),
        ("BitsAllocated", bits),
        ("SamplesPerPixel", samples),
    ):
        if value is None or value < 1:
            return _bad(f"pixel data present but {name} is missing or not positive")
    assert rows and cols and bits and samples
    if bits != 1 and (bits % 8 or bits > 64):
        return _bad(f"BitsAllocated {bits} is not 1 or a multiple of 8 up to 64")
    if pixel_data.encapsulated:
        fragments = len(pixel_data.fragments)
        if frames > fragments:
            return _bad(
                f"NumberOfFrames {frames} but the encapsulated pixel data has {fragments} fragment(s)"
                " (every frame needs at least one)"
            )
        return None
    if raw_text(dataset, _PHOTOMETRIC).upper() == "YBR_FULL_422" and samples == 3:
        samples = 2  # two samples' worth of bytes per pixel on average (PS3.5 8.2.3)
    expected_bits = rows * cols * samples * bits * frames
    expected = (expected_bits + 7) // 8
    length = pixel_data.length or 0
    if length < expected:
        return _bad(
            f"pixel data holds {length} bytes but Rows {rows} x Columns {cols} x Samples {samples}"
            f" x BitsAllocated {bits} x Frames {frames} needs {expected}"
        )
    return None


def _bad(reason: str) -> PixelProblem:
    return PixelProblem(CANNOT_UNDERSTAND, reason)
