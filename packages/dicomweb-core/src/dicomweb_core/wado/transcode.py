"""Transfer syntax conversion for retrieve: to Explicit VR Little Endian, only when asked.

Objects are served as stored whenever the client accepts it (``transfer-syntax=*`` or the
stored syntax): that path never parses anything. Conversion copies the stored object into an
unlinked temporary file, reads it with pydicom deferring large values, and writes the result
into another unlinked temporary file (held in memory up to 1 MiB), all in a worker thread and
before the response starts, so every failure is a 406 up front and a client that stops
reading pins a file descriptor, not memory. Native Implicit VR and Big Endian objects do not
even load their pixel data: :func:`convert_header` re-encodes the header and the value is
copied (words swapped for Big Endian) chunk by chunk. Objects over ``MAX_TRANSCODE_SIZE`` (or whose
decoded pixels would exceed ``MAX_DECODED_SIZE``) are not converted: 406 with the reason.

* Implicit VR Little Endian, Deflated → Explicit VR Little Endian: a re-encode by pydicom.
* Explicit VR Big Endian → Explicit VR Little Endian: pydicom refuses to change byte order
  on write, so byte-valued words (OW/OF/OL/OD/OV) are swapped here first; numeric VRs are
  decoded values and are written little endian by pydicom.
* Compressed → Explicit VR Little Endian: decompressed by pydicom's pixel decoders
  (pylibjpeg, openjpeg, ...); when no decoder exists for the syntax, the request gets 406
  with the reason.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..errors import NotAcceptableError
from ..limits import Limits
from .accept import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, is_encapsulated

#: What decoding pixel data may raise on corrupt or unsupported data (pydicom, its plugins,
#: Pillow, numpy): answered 406 with the reason. Anything else is a bug and surfaces as one.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    OSError,
    struct.error,
    zlib.error,
    InvalidDicomError,
)
_DEFER = 1 << 20  # values larger than this are read from the file when written, one at a time
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

#: The attributes a pixel decoder needs (PS3.3 C.7.6.3), as DICOM JSON keys.
PIXEL_MODULE_KEYS = (
    "00280002",  # SamplesPerPixel
    "00280004",  # PhotometricInterpretation
    "00280006",  # PlanarConfiguration
    "00280008",  # NumberOfFrames
    "00280010",  # Rows
    "00280011",  # Columns
    "00280100",  # BitsAllocated
    "00280101",  # BitsStored
    "00280102",  # HighBit
    "00280103",  # PixelRepresentation
)


def decoder_missing(transfer_syntax: str) -> str | None:
    """Why pixel data in ``transfer_syntax`` cannot be decoded here, or ``None`` if it can."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(UID(transfer_syntax))
    except (NotImplementedError, ValueError):
        return f"no pixel data decoder exists for transfer syntax {transfer_syntax}"
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin available"
        return f"no decoder plugin installed for transfer syntax {transfer_syntax} ({missing})"
    return None


def conversion_refusal(stored: str, wanted: str) -> str | None:
    """``None`` if an object stored in ``stored`` can be served in ``wanted``, else why not."""
    if wanted in ("*", stored):
        return None
    if wanted != EXPLICIT_LE:
        return (
            f"the object is stored as {stored}; it can be served as stored or as "
            f"Explicit VR Little Endian ({EXPLICIT_LE}), not as {wanted}"
        )
    if stored in (IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE):
        return None
    if is_encapsulated(stored):
        return decoder_missing(stored)
    return f"the object's transfer syntax {stored} cannot be converted"


def _swap_words(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
        elif elem.VR in _SWAP_WIDTH and isinstance(elem.value, (bytes, bytearray)) and elem.value:
            width = _SWAP_WIDTH[elem.VR]
            usable = len(elem.value) // width * width
            words = np.frombuffer(elem.value, dtype=f">u{width}", count=usable // width)
            elem.value = words.astype(f"<u{width}").tobytes() + bytes(elem.value[usable:])


def decoded_size(metadata: dict[str, Any]) -> int:
    """Bytes of native pixel data the image geometry describes (all frames); 0 if unknown."""

    def value(key: str, default: int) -> int:
        try:
            return int(metadata[key]["Value"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return default

    rows, cols = value("00280010", 0), value("00280011", 0)
    samples, bits, frames = value("00280002", 1), value("00280100", 0), value("00280008", 1)
    return max(0, rows * cols * samples * max(frames, 1) * ((bits + 7) // 8))


def size_refusal(size: int, metadata: dict[str, Any], stored: str, limits: Limits) -> str | None:
    """Why converting this object would exceed a limit, or ``None``."""
    if size > limits.max_transcode_size:
        return (
            f"the object is {size} bytes, over the MAX_TRANSCODE_SIZE limit of {limits.max_transcode_size}"
            f" for conversion; ask for transfer-syntax=* (or {stored}) to get it as stored"
        )
    if is_encapsulated(stored) and decoded_size(metadata) > limits.max_decoded_size:
        return (
            f"decompressed, the pixel data would be {decoded_size(metadata)} bytes, over the"
            f" MAX_DECODED_SIZE limit of {limits.max_decoded_size}; ask for transfer-syntax=*"
        )
    return None


def convert_file(source: BinaryIO, out: BinaryIO) -> None:
    """The Part-10 object in ``source`` re-encoded into ``out`` as Explicit VR Little Endian
    (decompressed if needed). Raises :class:`NotAcceptableError` when it cannot be."""
    try:
        ds = pydicom.dcmread(source, force=True, defer_size=_DEFER)
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"stored object cannot be parsed for conversion: {exc}") from exc
    stored = str(ds.file_meta.get("TransferSyntaxUID", ""))
    try:
        _to_explicit_le(ds, stored)
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    except NotAcceptableError:
        raise
    except DECODE_ERRORS as exc:  # a header that lies about its syntax fails here, before any byte
        raise NotAcceptableError(f"the object stored as {stored} cannot be converted: {exc}") from exc


#: Native syntaxes whose pixel data is copied (and word-swapped) chunk by chunk, never loaded.
STREAMABLE = frozenset({IMPLICIT_LE, EXPLICIT_BE})
_PIXEL_VR = {0x7FE00008: b"OF", 0x7FE00009: b"OD"}
_STREAM_SWAP = {b"OW": 2, b"OF": 4, b"OL": 4, b"OD": 8, b"OV": 8}


def convert_header(header: bytes, stored: str, tag: int) -> tuple[bytes, int]:
    """For a native object in a :data:`STREAMABLE` syntax: everything before its pixel data,
    converted to Explicit VR Little Endian, ending with the pixel data element's own header
    (its value follows unchanged, or with words of the returned width swapped).

    ``header`` is the stored object up to the first byte of the pixel data value. Elements
    after the pixel data (trailing padding, say) are not carried over.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(header), force=True, stop_before_pixels=True)
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"stored object cannot be parsed for conversion: {exc}") from exc
    if stored == EXPLICIT_BE:
        vr = bytes(header[-8:-6])  # tag (4), VR (2), reserved (2), length (4)
        if vr not in (b"OB", b"UN", *_STREAM_SWAP):
            raise NotAcceptableError(
                f"the pixel data element of the object stored as {stored} is not understood"
            )
        width = _STREAM_SWAP.get(vr, 1)
        _swap_words(ds)
    else:
        bits = int(ds.get("BitsAllocated", 8) or 8)
        vr = _PIXEL_VR.get(tag, b"OW" if bits > 8 else b"OB")
        width = 1
    length = struct.unpack("<L" if stored != EXPLICIT_BE else ">L", header[-4:])[0]
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    out = io.BytesIO()
    try:
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"the object stored as {stored} cannot be converted: {exc}") from exc
    element = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + b"\x00\x00" + struct.pack("<L", length)
    return out.getvalue() + element, width


def swap_words(chunk: bytes, width: int) -> bytes:
    """Big-endian words to little-endian; ``chunk`` holds whole words."""
    if width == 1:
        return chunk
    return np.frombuffer(chunk, dtype=f">u{width}").astype(f"<u{width}").tobytes()


def _to_explicit_le(ds: Dataset, stored: str) -> None:
    if stored == EXPLICIT_LE:
        return
    if is_encapsulated(stored):
        reason = decoder_missing(stored)
        if reason:
            raise NotAcceptableError(reason)
        try:
            ds.decompress(generate_instance_uid=False)
        except DECODE_ERRORS as exc:
            raise NotAcceptableError(f"pixel data in {stored} could not be decompressed: {exc}") from exc
    elif stored == EXPLICIT_BE:
        _swap_words(ds)


def pixel_dataset(metadata: dict[str, Any], transfer_syntax: str) -> Dataset:
    """A minimal data set holding only the Image Pixel module, to decode one frame with."""
    ds = Dataset.from_json({k: metadata[k] for k in PIXEL_MODULE_KEYS if k in metadata})
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.set_original_encoding(transfer_syntax == IMPLICIT_LE, transfer_syntax != EXPLICIT_BE)
    return ds


def attach_frame(ds: Dataset, frame: bytes, transfer_syntax: str) -> Dataset:
    """``ds`` with ``frame`` as its only frame of Pixel Data (encapsulated when compressed)."""
    ds.NumberOfFrames = 1
    if is_encapsulated(transfer_syntax):
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = frame
        ds["PixelData"].VR = "OB" if int(ds.get("BitsAllocated", 8)) <= 8 else "OW"
    return ds


def frame_to_explicit_le(metadata: dict[str, Any], frame: bytes, transfer_syntax: str) -> bytes:
    """One frame's bytes (as stored) to native little-endian pixel bytes."""
    if not is_encapsulated(transfer_syntax):
        if transfer_syntax != EXPLICIT_BE:
            return frame
        bits = int(metadata.get("00280100", {}).get("Value", [8])[0])
        width = 1 if bits <= 8 else (bits + 7) // 8
        if width == 1:
            return frame
        words = np.frombuffer(frame, dtype=f">u{width}", count=len(frame) // width)
        return words.astype(f"<u{width}").tobytes()
    reason = decoder_missing(transfer_syntax)
    if reason:
        raise NotAcceptableError(reason)
    ds = attach_frame(pixel_dataset(metadata, transfer_syntax), frame, transfer_syntax)
    try:
        ds.decompress(generate_instance_uid=False)
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"frame in {transfer_syntax} could not be decompressed: {exc}") from exc
    return bytes(ds.PixelData)
