"""Build real Part-10 DICOM instances with pydicom for tests.

``make_instance(...)`` returns the bytes of a CT-like instance in any transfer syntax
pydicom can write here: Implicit/Explicit VR Little Endian, Explicit VR Big Endian,
Deflated, RLE Lossless and JPEG 2000 Lossless (encapsulated, with or without a Basic
Offset Table, one or more fragments per frame). ``expected_pixels(...)`` gives the
pixel values the instance holds, to check decoding.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
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

NATIVE_SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)


def expected_pixels(
    *, rows: int = 16, cols: int = 16, frames: int = 1, samples_per_pixel: int = 1, bits_allocated: int = 16
) -> np.ndarray[Any, Any]:
    """The deterministic pixel values ``make_instance`` stores: (frames, rows, cols[, samples])."""
    dtype = np.uint8 if bits_allocated == 8 else np.uint16
    modulus = 256 if bits_allocated == 8 else 4096
    shape: tuple[int, ...] = (frames, rows, cols) + ((samples_per_pixel,) if samples_per_pixel > 1 else ())
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    frame_index = np.arange(frames).reshape((frames,) + (1,) * (len(shape) - 1))
    return ((values * 7 + frame_index * 37) % modulus).astype(dtype)


def make_dataset(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    rows: int = 16,
    cols: int = 16,
    frames: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    samples_per_pixel: int = 1,
    bits_allocated: int = 16,
    basic_offset_table: bool = True,
    fragments_per_frame: int = 1,
    **attrs: Any,
) -> Dataset:
    """The instance as a pydicom Dataset (file meta set, pixel data encoded for the syntax)."""
    ts = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = attrs.get("SOPClassUID", CTImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC0001"
    ds.Modality = "CT"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Test study"
    ds.SeriesDescription = "Test series"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "PID0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.0"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = generate_uid()
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = "RGB" if samples_per_pixel == 3 else "MONOCHROME2"
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = 12 if bits_allocated == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if bits_allocated == 16:
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)

    pixels = expected_pixels(
        rows=rows,
        cols=cols,
        frames=frames,
        samples_per_pixel=samples_per_pixel,
        bits_allocated=bits_allocated,
    )
    if ts in NATIVE_SYNTAXES:
        byte_order = ">" if ts == ExplicitVRBigEndian else "<"
        data = pixels.astype(pixels.dtype.newbyteorder(byte_order)).tobytes()
        ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
        ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
        return ds
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() starts from native data
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
    ds.compress(ts, generate_instance_uid=False)
    if basic_offset_table and fragments_per_frame == 1:
        return ds
    encoded = list(generate_frames(ds.PixelData, number_of_frames=frames))
    ds.PixelData = encapsulate(encoded, fragments_per_frame=fragments_per_frame, has_bot=basic_offset_table)
    return ds


def make_instance(**kwargs: Any) -> bytes:
    """A Part-10 file (128-byte preamble, DICM, file meta); see :func:`make_dataset` for arguments."""
    return to_part10(make_dataset(**kwargs))


def to_part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
