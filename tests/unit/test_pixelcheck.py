"""The ingest check of pixel data against its header (``pixelcheck.check_scan``), on real
Part-10 files built with pydicom and scanned as STOW scans them."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from dicomweb_core.pixelcheck import (
    CANNOT_UNDERSTAND,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    PixelProblem,
    check_scan,
    known_transfer_syntax,
)
from dicomweb_core.scanner import DicomHeaderScanner
from tests.dicomfiles import make_dataset, to_bytes


def check(
    ds: Dataset, *, max_frames: int = 1000, patch: tuple[bytes, bytes] | None = None
) -> PixelProblem | None:
    """Scan the file as STOW does and check it; ``patch`` replaces bytes pydicom would refuse
    to write (same length, so the element lengths stay right)."""
    blob = to_bytes(ds)
    if patch is not None:
        old, new = patch
        assert len(old) == len(new) and blob.count(old) == 1
        blob = blob.replace(old, new)
    scanner = DicomHeaderScanner()
    scanner.feed(blob)
    return check_scan(scanner.finish(), max_frames=max_frames)


def jpeg(frames: int, fragments_per_frame: int = 1) -> Dataset:
    # Built native, then relabelled: the fragments below stand for JPEG frames of any content.
    ds = make_dataset(rows=8, cols=8, bits=8)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate(
        [b"\xff\xd8" + bytes(30) + b"\xff\xd9"] * frames, fragments_per_frame=fragments_per_frame
    )
    ds["PixelData"].VR = "OB"
    return ds


def test_a_consistent_native_instance_passes() -> None:
    assert check(make_dataset(rows=16, cols=16, frames=3)) is None


def test_native_pixel_data_longer_than_the_frames_is_accepted() -> None:
    ds = make_dataset(rows=4, cols=4, bits=8)
    ds.PixelData = bytes(16 + 100)
    assert check(ds) is None


def test_native_pixel_data_shorter_than_the_header_says_is_refused() -> None:
    ds = make_dataset(rows=4, cols=4, bits=16)
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes(32)
    problem = check(ds)
    assert problem is not None and problem.status == CANNOT_UNDERSTAND
    assert "holds 32 bytes" in problem.reason and "needs 524288" in problem.reason


@pytest.mark.parametrize("frames", ["0 ", "-3", "2147483647", "1A", "1001"])
def test_a_number_of_frames_out_of_range_or_not_a_number_is_refused(frames: str) -> None:
    ds = make_dataset(rows=2, cols=2, bits=8)
    placeholder = "9" * len(frames)
    ds.NumberOfFrames = placeholder
    ds.PixelData = bytes(4 * 9999)
    problem = check(
        ds,
        patch=(
            b"IS" + bytes([len(frames) + len(frames) % 2, 0]) + placeholder.encode(),
            b"IS" + bytes([len(frames) + len(frames) % 2, 0]) + frames.encode(),
        ),
    )
    assert problem is not None and problem.status == CANNOT_UNDERSTAND
    assert "NumberOfFrames" in problem.reason


def test_one_bit_pixel_data_is_counted_in_bits() -> None:
    ds = make_dataset(rows=3, cols=3, bits=8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.NumberOfFrames = 8
    ds.PixelData = bytes(9)  # 3 x 3 x 8 frames = 72 bits
    assert check(ds) is None
    ds.PixelData = bytes(8)
    assert check(ds) is not None


def test_ybr_full_422_native_counts_two_samples_per_pixel() -> None:
    ds = make_dataset(rows=4, cols=4, bits=8)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.PixelData = bytes(4 * 4 * 2)
    assert check(ds) is None


def test_encapsulated_frames_need_at_least_one_fragment_each() -> None:
    assert check(jpeg(3)) is None
    assert check(jpeg(2, fragments_per_frame=2)) is None
    ds = jpeg(2)
    ds.NumberOfFrames = 5
    problem = check(ds)
    assert problem is not None and "2 fragment(s)" in problem.reason


def test_pixel_data_without_image_geometry_is_stored_as_bulk_data_only() -> None:
    ds = make_dataset(rows=2, cols=2, bits=8)
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    assert check(ds) is None


def test_a_missing_part_of_the_geometry_is_refused() -> None:
    ds = make_dataset(rows=2, cols=2, bits=8)
    del ds.Columns
    problem = check(ds)
    assert problem is not None and "Columns" in problem.reason


@pytest.mark.parametrize("uid", ["1.2.3.4.5.6.7.8.9.1", "1.2.840.10008.1.2.9", "1.2.840.10008.5.1.4"])
def test_a_transfer_syntax_dicom_does_not_define_is_0xc122(uid: str) -> None:
    problem = check(make_dataset(), patch=(b"1.2.840.10008.1.2.1\x00", uid.encode() + b"\x00"))
    assert problem == PixelProblem(TRANSFER_SYNTAX_NOT_SUPPORTED, f"unknown transfer syntax {uid}")


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.51",
    ],
)
def test_the_transfer_syntaxes_of_the_standard_are_known(uid: str) -> None:
    assert known_transfer_syntax(uid)
