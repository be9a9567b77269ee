"""Real DICOM Part-10 files for every test (unit, integration, end-to-end), built with pydicom.

``make_instance(...)`` returns the bytes of a CT-like instance in any transfer syntax pydicom
can write here: Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated, and
the encapsulated ones pydicom can compress to (RLE Lossless, JPEG 2000 Lossless), with or
without a Basic Offset Table and with one or more fragments per frame. Pixel values are
seeded random (``pixel_seed``); ``expected_pixels(...)`` gives the same values, to check
what a decoder or a retrieve returns.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

#: A root for generated UIDs (pydicom's own prefix; keeps UIDs valid and unique).
UID_ROOT = "1.2.826.0.1.3680043.8.498."
#: Transfer syntaxes whose pixel data is written as is (not encapsulated).
NATIVE_SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)


def uid() -> str:
    return generate_uid(prefix=UID_ROOT)


def expected_pixels(
    *, rows: int = 16, cols: int = 16, frames: int = 1, bits: int = 16, pixel_seed: int = 0
) -> np.ndarray[Any, Any]:
    """The pixel values ``make_dataset`` stores for the same arguments: (frames, rows, cols)."""
    rng = np.random.default_rng(pixel_seed)
    dtype = np.uint16 if bits == 16 else np.uint8
    return rng.integers(0, 2**bits - 1, size=(frames, rows, cols), dtype=dtype)


def make_dataset(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    rows: int = 16,
    cols: int = 16,
    frames: int = 1,
    bits: int = 16,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_seed: int = 0,
    basic_offset_table: bool = True,
    fragments_per_frame: int = 1,
    **attrs: Any,
) -> Dataset:
    """The instance as a pydicom Dataset: file meta set, pixel data encoded for the syntax
    (``basic_offset_table`` and ``fragments_per_frame`` shape encapsulated pixel data);
    ``attrs`` set or override attributes by keyword."""
    ts = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = attrs.get("SOPClassUID", CTImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or uid()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or uid()
    ds.SeriesInstanceUID = series_uid or uid()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.StudyDescription = "Test study"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Test series"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in attrs.items():
        setattr(ds, key, value)

    pixels = expected_pixels(rows=rows, cols=cols, frames=frames, bits=bits, pixel_seed=pixel_seed)
    vr = "OW" if bits == 16 else "OB"
    if ts in NATIVE_SYNTAXES:
        order = ">" if ts == ExplicitVRBigEndian else "<"
        data = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
        ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
        ds["PixelData"].VR = vr
        return ds
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() starts from native data
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = vr
    ds.compress(ts, generate_instance_uid=False)
    if basic_offset_table and fragments_per_frame == 1:
        return ds
    encoded = list(generate_frames(ds.PixelData, number_of_frames=frames))
    ds.PixelData = encapsulate(encoded, fragments_per_frame=fragments_per_frame, has_bot=basic_offset_table)
    return ds


def with_fragments(ds: Dataset, transfer_syntax: str, fragments: list[bytes]) -> Dataset:
    """``ds`` relabelled as ``transfer_syntax`` carrying ``fragments`` as its encapsulated pixel
    data, whatever they hold (for instances whose compressed data is deliberately wrong)."""
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The data set as a Part-10 file (preamble, DICM, file meta), encoded as its transfer
    syntax says."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_instance(**kwargs: Any) -> bytes:
    """A Part-10 file; see :func:`make_dataset` for the arguments."""
    return to_bytes(make_dataset(**kwargs))


def pydicom_testfile(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path)).read_bytes()


def multipart_related(parts: Iterable[bytes], boundary: str = "dicomweb-test-boundary") -> tuple[bytes, str]:
    body = (
        b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
            for p in parts
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )
    return body, f'multipart/related; type="application/dicom"; boundary="{boundary}"'


def chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def big_instance_stream(
    pixel_bytes: int, *, study_uid: str | None = None, chunk: int = 1 << 20
) -> tuple[bytes, Iterator[bytes], int]:
    """A native 16-bit instance whose Pixel Data is ``pixel_bytes`` long, generated on the fly.

    Returns (header bytes, iterator over the pixel data chunks, total object size). Nothing of
    the pixel data is held in memory beyond one chunk.
    """
    import struct

    rows = cols = 512
    frame = rows * cols * 2
    assert pixel_bytes % frame == 0, "pixel_bytes must be a whole number of 512x512x16-bit frames"
    ds = make_dataset(study_uid=study_uid, rows=rows, cols=cols, frames=1)
    ds.NumberOfFrames = pixel_bytes // frame
    del ds.PixelData
    header = to_bytes(ds) + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", pixel_bytes)
    pattern = bytes(range(256)) * (chunk // 256)

    def pixels() -> Iterator[bytes]:
        left = pixel_bytes
        while left:
            n = min(left, len(pattern))
            yield pattern[:n]
            left -= n

    return header, pixels(), len(header) + pixel_bytes


def streamed_multipart(
    header: bytes, body: Iterator[bytes], boundary: str = "big-boundary"
) -> Iterator[bytes]:
    yield b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + header
    yield from body
    yield b"\r\n--" + boundary.encode() + b"--\r\n"
