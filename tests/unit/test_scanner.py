"""The push-based DICOM header scanner against pydicom's own reader, on real files."""

from __future__ import annotations

import os
import struct
import traceback
import tracemalloc
import warnings
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments, generate_frames, parse_basic_offsets
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomweb_core.errors import DicomFormatError
from dicomweb_core.models import Fragment, PixelDataInfo
from dicomweb_core.scanner import DicomHeaderScanner, ScanResult, frame_fragments
from tests.dicomfiles import expected_pixels, make_dataset, make_instance, to_bytes

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
# Files of the pydicom wheel that are not complete, valid Part-10 objects.
BROKEN = {
    "MR_truncated.dcm": "truncated",  # pixel data shorter than declared
    "rtplan_truncated.dcm": "truncated",
    "meta_missing_tsyntax.dcm": "Transfer Syntax UID",
}


def _part10_files() -> list[Path]:
    found = []
    for path in sorted(TEST_FILES.rglob("*")):
        if path.is_file():
            with path.open("rb") as fp:
                if fp.read(132)[128:] == b"DICM":
                    found.append(path)
    return found


PART10_FILES = _part10_files()


def scan(data: bytes, chunk_size: int | None = None, **kwargs: int) -> ScanResult:
    scanner = DicomHeaderScanner(**kwargs)
    step = chunk_size or max(1, len(data))
    for start in range(0, len(data), step):
        scanner.feed(data[start : start + step])
    return scanner.finish()


def read_reference(data: bytes, **kwargs: bool) -> pydicom.FileDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(BytesIO(data), **kwargs)


def summary(result: ScanResult) -> tuple[object, ...]:
    return (result.transfer_syntax_uid, result.header_length, result.total_length, result.pixel_data)


def assert_same_dataset(ours: Dataset, ref: Dataset) -> None:
    assert ours.file_meta == ref.file_meta
    assert [elem.tag for elem in ours] == [elem.tag for elem in ref]
    assert ours == ref


def assert_pixel_data_matches(data: bytes, info: PixelDataInfo, ref: Dataset) -> None:
    """Byte ranges recorded by the scanner hold what pydicom reads from the whole file."""
    value = ref[info.tag].value
    if not info.encapsulated:
        assert info.length == len(value)
        assert data[info.value_offset : info.value_offset + info.length] == value
        for index, frame in enumerate(info.frames):
            assert frame.length == info.frame_size
            expected = value[index * frame.length : (index + 1) * frame.length]
            assert data[frame.offset : frame.offset + frame.length] == expected
        return
    fp = BytesIO(value)
    assert list(info.basic_offset_table) == parse_basic_offsets(fp)
    fragments = list(generate_fragments(fp))
    assert [data[f.offset : f.offset + f.length] for f in info.fragments] == fragments
    if info.frames:
        frames = list(generate_frames(value, number_of_frames=info.number_of_frames))
        assert len(info.frames) == info.number_of_frames == len(frames)
        for index, expected in enumerate(frames):
            parts = frame_fragments(info, index)
            assert b"".join(data[f.offset : f.offset + f.length] for f in parts) == expected


# ---------------------------------------------------------------- pydicom's test files


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_pydicom_test_file_matches_pydicom(path: Path) -> None:
    data = path.read_bytes()
    if path.name in BROKEN:
        with pytest.raises(DicomFormatError, match=BROKEN[path.name]):
            scan(data)
        return
    result = scan(data, 4096)
    ref_header = read_reference(data, stop_before_pixels=True)
    assert_same_dataset(result.dataset, ref_header)
    assert result.total_length == len(data)
    assert result.transfer_syntax_uid == ref_header.file_meta.TransferSyntaxUID
    ref = read_reference(data)
    pixel_tags = [tag for tag in (0x7FE00008, 0x7FE00009, 0x7FE00010) if tag in ref]
    if result.transfer_syntax_uid == DeflatedExplicitVRLittleEndian or not pixel_tags:
        assert result.pixel_data is None
        assert result.header_length == len(data)
    else:
        info = result.pixel_data
        assert info is not None
        assert info.tag == pixel_tags[0]
        order = ">HH" if result.transfer_syntax_uid == ExplicitVRBigEndian else "<HH"
        tag_bytes = struct.pack(order, info.tag >> 16, info.tag & 0xFFFF)
        assert data[result.header_length : result.header_length + 4] == tag_bytes
        assert_pixel_data_matches(data, info, ref)


CHUNKING_FILES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "MR_small_RLE.dcm",
    "nested_priv_SQ.dcm",
    "UN_sequence.dcm",
    "rtplan.dcm",
    *(p.name for p in sorted(TEST_FILES.glob("emri_small*.dcm"))),
]


@pytest.mark.parametrize("name", CHUNKING_FILES)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096, None])
def test_any_chunk_size_gives_the_same_result(name: str, chunk_size: int | None) -> None:
    data = (TEST_FILES / name).read_bytes()
    whole = scan(data)
    chunked = scan(data, chunk_size)
    assert summary(chunked) == summary(whole)
    assert_same_dataset(chunked.dataset, whole.dataset)


def test_known_files_have_the_expected_layout() -> None:
    ct = scan((TEST_FILES / "CT_small.dcm").read_bytes())
    assert ct.pixel_data is not None and not ct.pixel_data.encapsulated
    assert ct.pixel_data.frame_size == 128 * 128 * 2
    assert ct.pixel_data.number_of_frames == 1
    assert ct.dataset.PatientName == "CompressedSamples^CT1"
    rle = scan((TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes())
    assert rle.pixel_data is not None and rle.pixel_data.encapsulated
    assert rle.pixel_data.number_of_frames == 2
    assert len(rle.pixel_data.frames) == 2
    assert rle.transfer_syntax_uid == RLELossless
    plan = scan((TEST_FILES / "rtplan.dcm").read_bytes())
    assert plan.pixel_data is None


# ---------------------------------------------------------------- instances built with pydicom

ALL_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
]


@pytest.mark.parametrize("transfer_syntax", ALL_SYNTAXES, ids=lambda uid: uid.name)
def test_multi_frame_instance_in_every_syntax(transfer_syntax: str) -> None:
    data = make_instance(rows=64, cols=64, frames=10, transfer_syntax=transfer_syntax)
    result = scan(data, 1000)
    ref = read_reference(data)
    assert_same_dataset(result.dataset, read_reference(data, stop_before_pixels=True))
    assert result.transfer_syntax_uid == transfer_syntax
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        assert result.pixel_data is None
        return
    info = result.pixel_data
    assert info is not None
    assert info.number_of_frames == 10
    assert len(info.frames) == 10
    assert_pixel_data_matches(data, info, ref)
    if not info.encapsulated:
        assert info.frame_size == 64 * 64 * 2
        dtype = ">u2" if transfer_syntax == ExplicitVRBigEndian else "<u2"
        for index, frame in enumerate(info.frames):
            pixels = np.frombuffer(data[frame.offset : frame.offset + frame.length], dtype=dtype)
            assert np.array_equal(pixels.reshape(64, 64), expected_pixels(rows=64, cols=64, frames=10)[index])


@pytest.mark.parametrize("bot", [True, False], ids=["with-bot", "without-bot"])
@pytest.mark.parametrize("fragments_per_frame", [1, 3])
def test_encapsulated_multi_frame_frames(bot: bool, fragments_per_frame: int) -> None:
    data = make_instance(
        rows=32,
        cols=32,
        frames=4,
        transfer_syntax=RLELossless,
        basic_offset_table=bot,
        fragments_per_frame=fragments_per_frame,
    )
    info = scan(data, 333).pixel_data
    assert info is not None and info.encapsulated and info.length is None
    assert len(info.fragments) == 4 * fragments_per_frame
    assert (len(info.basic_offset_table) == 4) is bot
    ref = read_reference(data)
    if bot or fragments_per_frame == 1:
        assert len(info.frames) == 4
        assert_pixel_data_matches(data, info, ref)
        for index in range(4):
            parts = frame_fragments(info, index)
            assert len(parts) == fragments_per_frame
            assert parts[0].offset == info.frames[index].offset
        assert np.array_equal(ref.pixel_array, expected_pixels(rows=32, cols=32, frames=4))
    else:
        # No BOT and several fragments per frame: frame bounds are not known from the structure.
        assert info.frames == ()
        with pytest.raises(IndexError):
            frame_fragments(info, 0)


def test_single_frame_with_several_fragments_is_one_frame() -> None:
    ds = make_dataset(rows=16, cols=16, transfer_syntax=RLELossless)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame], fragments_per_frame=3, has_bot=False)
    data = to_bytes(ds)
    info = scan(data).pixel_data
    assert info is not None and len(info.fragments) == 3 and len(info.frames) == 1
    parts = frame_fragments(info, 0)
    assert parts == list(info.fragments)
    assert b"".join(data[f.offset : f.offset + f.length] for f in parts) == frame


def test_extended_offset_table_gives_frames_without_bot() -> None:
    ds = make_dataset(rows=16, cols=16, frames=3, transfer_syntax=RLELossless)
    frames = list(generate_frames(ds.PixelData, number_of_frames=3))
    from pydicom.encaps import encapsulate_extended

    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(frames)
    # Append one empty trailing fragment so fragments != frames and the EOT must be used.
    ds.PixelData = ds.PixelData + b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    data = to_bytes(ds)
    info = scan(data).pixel_data
    assert info is not None and info.basic_offset_table == () and len(info.fragments) == 4
    assert len(info.frames) == 3
    for index in range(2):
        parts = frame_fragments(info, index)
        assert b"".join(data[f.offset : f.offset + f.length] for f in parts) == frames[index]


def test_float_pixel_data_is_the_pixel_data() -> None:
    ds = make_dataset(rows=8, cols=8)
    del ds.PixelData
    ds.BitsAllocated = 32
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = np.linspace(0, 1, 64, dtype="<f4").tobytes()
    data = to_bytes(ds)
    info = scan(data, 64).pixel_data
    assert info is not None and info.tag == 0x7FE00008 and info.frame_size == 8 * 8 * 4
    assert data[info.frames[0].offset : info.frames[0].offset + 256] == ds.FloatPixelData


@pytest.mark.parametrize("transfer_syntax", ALL_SYNTAXES[:3], ids=lambda uid: uid.name)
def test_pixel_data_inside_sequences_does_not_end_the_header(transfer_syntax: str) -> None:
    icon = Dataset()
    icon.Rows = icon.Columns = 4
    icon.BitsAllocated = 8
    icon.PixelData = b"\x01\x02" * 8
    icon["PixelData"].VR = "OB"
    deep = Dataset()
    deep.CodeMeaning = "leaf"
    for depth in range(40):  # deep nesting of undefined-length sequences and items
        outer = Dataset()
        outer.CodeValue = str(depth)
        outer.ContentSequence = Sequence([deep])
        deep = outer
    ds = make_dataset(rows=8, cols=8, transfer_syntax=transfer_syntax, IconImageSequence=Sequence([icon]))
    ds.ContentSequence = Sequence([deep])
    data = to_bytes(ds)
    result = scan(data, 5)
    assert_same_dataset(result.dataset, read_reference(data, stop_before_pixels=True))
    assert result.pixel_data is not None
    assert result.dataset.IconImageSequence[0].PixelData == b"\x01\x02" * 8
    assert_pixel_data_matches(data, result.pixel_data, read_reference(data))


def test_encapsulated_icon_before_the_pixel_data_is_skipped() -> None:
    ds = make_dataset(rows=16, cols=16, transfer_syntax=RLELossless)
    icon = Dataset()
    icon.Rows = icon.Columns = 16
    # The icon's fragment holds a sequence delimiter pattern: only item walking gets this right.
    icon.PixelData = encapsulate([b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" + b"\x00" * 8], has_bot=False)
    icon["PixelData"].VR = "OB"
    icon["PixelData"].is_undefined_length = True
    ds.IconImageSequence = Sequence([icon])
    data = to_bytes(ds)
    result = scan(data, 3)
    assert result.pixel_data is not None and len(result.pixel_data.fragments) == 1
    assert_pixel_data_matches(data, result.pixel_data, read_reference(data))


def test_elements_after_the_pixel_data_are_skipped() -> None:
    ds = make_dataset(rows=8, cols=8)
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 1000)  # Data Set Trailing Padding
    data = to_bytes(ds)
    result = scan(data, 100)
    assert result.total_length == len(data)
    assert result.pixel_data is not None and result.pixel_data.length == 128
    assert "DataSetTrailingPadding" not in result.dataset


def test_unknown_valid_transfer_syntax_is_explicit_encapsulated() -> None:
    ds = make_dataset(rows=16, cols=16, frames=2, transfer_syntax=RLELossless)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.10.511.99"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    result = scan(out.getvalue(), 17)
    assert result.transfer_syntax_uid == "1.2.826.0.1.3680043.10.511.99"
    assert result.pixel_data is not None and result.pixel_data.encapsulated
    assert len(result.pixel_data.frames) == 2


# ---------------------------------------------------------------- malformed input


def test_file_meta_without_preamble_is_accepted() -> None:
    # dicomweb-client and others send the file meta group without the 128-byte preamble.
    data = make_instance(frames=3)
    full = scan(data)
    for prefix_cut, chunk in ((128, 7), (132, 4096), (132, 1)):
        short = scan(data[prefix_cut:], chunk)
        assert short.dataset == full.dataset
        assert short.transfer_syntax_uid == full.transfer_syntax_uid
        assert short.pixel_data is not None and full.pixel_data is not None
        assert short.pixel_data.value_offset == full.pixel_data.value_offset - prefix_cut


def test_not_part10_is_rejected() -> None:
    data = make_instance()
    for bad in (b"", b"\x00" * 200, data[:100], b"GARBAGE" * 40):
        with pytest.raises(DicomFormatError, match="not a DICOM Part-10 file"):
            scan(bad)


def test_missing_transfer_syntax_is_rejected() -> None:
    data = (TEST_FILES / "meta_missing_tsyntax.dcm").read_bytes()
    with pytest.raises(DicomFormatError, match=r"no Transfer Syntax UID \(0002,0010\)"):
        scan(data, 7)


def test_invalid_transfer_syntax_is_rejected() -> None:
    data = make_instance(transfer_syntax=ExplicitVRLittleEndian)
    bad = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.x.1\x00", 1)
    with pytest.raises(DicomFormatError, match="invalid Transfer Syntax UID"):
        scan(bad)


def test_header_cap() -> None:
    data = make_instance(rows=8, cols=8)
    header_length = scan(data).header_length
    assert scan(data, 10, max_header_size=header_length).header_length == header_length
    for chunk in (1, 10, None):
        with pytest.raises(DicomFormatError, match="header larger than"):
            scan(data, chunk, max_header_size=header_length - 1)
    big = make_instance(rows=8, cols=8, ImageComments="x" * 9000)
    with pytest.raises(DicomFormatError, match="header larger than 4096"):
        scan(big, 1024, max_header_size=4096)


@pytest.mark.parametrize("transfer_syntax", ALL_SYNTAXES, ids=lambda uid: uid.name)
def test_every_truncation_fails_or_ends_on_an_element_boundary(transfer_syntax: str) -> None:
    size = 64 if transfer_syntax == JPEG2000Lossless else 8  # OpenJPEG needs some room
    data = make_instance(rows=size, cols=size, frames=2, transfer_syntax=transfer_syntax)
    result = scan(data)
    for cut in range(len(data)):
        try:
            partial = scan(data[:cut])
        except DicomFormatError:
            continue
        # Only a cut exactly between two elements of the header leaves a valid object.
        assert partial.pixel_data is None
        assert cut <= result.header_length
        assert partial.header_length == cut


def test_header_cap_applies_without_pixel_data() -> None:
    data = (TEST_FILES / "rtplan.dcm").read_bytes()
    assert scan(data, 100, max_header_size=len(data)).pixel_data is None
    with pytest.raises(DicomFormatError, match="header larger than"):
        scan(data, 100, max_header_size=len(data) - 5)


def _meta_prefix(data: bytes) -> bytes:
    """Preamble, DICM and the file meta group of ``data`` (group length counts what follows it)."""
    return data[: 144 + struct.unpack_from("<L", data, 140)[0]]


def test_nesting_depth_is_capped() -> None:
    prefix = _meta_prefix(make_instance(transfer_syntax=ExplicitVRLittleEndian))
    level = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    with pytest.raises(DicomFormatError, match="nested deeper than 128 levels"):
        scan(prefix + level * 200, 64)


def test_deflated_header_is_available_before_the_end() -> None:
    data = make_instance(rows=64, cols=64, frames=4, transfer_syntax=DeflatedExplicitVRLittleEndian)
    scanner = DicomHeaderScanner()
    scanner.feed(data)
    assert scanner.header_done
    assert scanner.dataset().Rows == 64
    result = scanner.finish()
    assert result.pixel_data is None and result.header_length == result.total_length == len(data)
    with pytest.raises(DicomFormatError, match="deflate"):
        scan(data[:-10])


def test_truncated_pixel_data_is_reported() -> None:
    data = make_instance(rows=8, cols=8)
    with pytest.raises(DicomFormatError, match="truncated: pixel data declares 128 bytes, 127 present"):
        scan(data[:-1])
    encapsulated = make_instance(rows=8, cols=8, transfer_syntax=RLELossless)
    with pytest.raises(DicomFormatError, match="without sequence delimiter"):
        scan(encapsulated[:-8])
    with pytest.raises(DicomFormatError, match="truncated"):
        scan(encapsulated[:-9])


def test_bad_item_in_encapsulated_pixel_data() -> None:
    data = make_instance(rows=8, cols=8, transfer_syntax=RLELossless)
    bad = data[:-8] + b"\x08\x00\x10\x00\x00\x00\x00\x00"
    with pytest.raises(DicomFormatError, match=r"unexpected tag \(0008,0010\) in encapsulated pixel data"):
        scan(bad)


def test_too_many_fragments_is_rejected() -> None:
    data = make_instance(rows=8, cols=8, transfer_syntax=RLELossless)
    empty_items = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" * 1100
    with pytest.raises(DicomFormatError, match="more than 1024 pixel data fragments"):
        scan(data[:-8] + empty_items + data[-8:], 4096, max_header_size=4096)


def test_error_is_sticky_and_typed() -> None:
    scanner = DicomHeaderScanner()
    with pytest.raises(DicomFormatError):
        scanner.feed(b"\x00" * 128 + b"NOPE")
    with pytest.raises(DicomFormatError):
        scanner.feed(b"more")
    with pytest.raises(DicomFormatError):
        scanner.finish()


def test_header_done_as_soon_as_pixel_data_header_is_seen() -> None:
    data = make_instance(rows=64, cols=64, frames=4)
    header_length = scan(data).header_length
    scanner = DicomHeaderScanner()
    scanner.feed(data[: header_length + 11])
    assert not scanner.header_done
    with pytest.raises(DicomFormatError, match="not complete"):
        scanner.dataset()
    scanner.feed(bytearray(data[header_length + 11 : header_length + 12]))
    assert scanner.header_done
    assert scanner.dataset().SOPInstanceUID == read_reference(data).SOPInstanceUID
    scanner.feed(memoryview(data)[header_length + 12 :])
    assert scanner.finish().pixel_data is not None


def test_native_scan_memory_is_bounded() -> None:
    pixel_bytes = 48 * 1024 * 1024
    ds = make_dataset(rows=8, cols=8)
    ds.Rows, ds.Columns = 4096, 6144  # one 48 MiB frame
    ds.PixelData = b""
    header = to_bytes(ds)[:-12]  # up to the empty Pixel Data element
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    chunk = bytes(1 << 20)
    scanner = DicomHeaderScanner()
    tracemalloc.start()
    try:
        scanner.feed(header + element)
        for _ in range(pixel_bytes >> 20):
            scanner.feed(chunk)
        result = scanner.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.total_length == len(header) + 12 + pixel_bytes
    assert result.pixel_data is not None and result.pixel_data.frames[0].length == pixel_bytes
    assert peak < 4 * 1024 * 1024


# ---------------------------------------------------------------- properties (hypothesis)

SAMPLES = {
    name: (TEST_FILES / name).read_bytes()
    for name in (
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle_2frame.dcm",
        "UN_sequence.dcm",
        "nested_priv_SQ.dcm",
    )
}
SAMPLE_RESULTS = {name: scan(data) for name, data in SAMPLES.items()}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed_chunks(scanner: DicomHeaderScanner, data: bytes, cuts: list[int]) -> None:
    previous = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        scanner.feed(data[previous:cut])
        previous = cut


@FUZZ
@given(name=st.sampled_from(sorted(SAMPLES)), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_gives_the_same_scan_result(name: str, cuts: list[int]) -> None:
    scanner = DicomHeaderScanner()
    _feed_chunks(scanner, SAMPLES[name], cuts)
    result = scanner.finish()
    assert summary(result) == summary(SAMPLE_RESULTS[name])
    assert result.dataset == SAMPLE_RESULTS[name].dataset


def _raised_on_purpose(error: DicomFormatError) -> bool:
    """A format error the scanner raised itself, or wrapped from a parser below it (pydicom,
    zlib), not a bug of its own (an IndexError, struct.error, ... in the scanner's code turned
    into a format error by its catch-all)."""
    cause = error.__cause__
    if cause is None or isinstance(cause, zlib.error):
        return True
    frames = traceback.extract_tb(cause.__traceback__)
    return bool(frames) and "dicomweb_core" not in frames[-1].filename


def _inside(fragment: Fragment, start: int, end: int) -> bool:
    return fragment.length >= 0 and start <= fragment.offset <= fragment.offset + fragment.length <= end


def _check_accepted(data: bytes, result: ScanResult) -> None:
    """What an accepted object must satisfy: every recorded range lies inside the object, after
    the header, and the header reads the same with pydicom."""
    assert result.total_length == len(data)
    assert 0 < result.header_length <= len(data)
    info = result.pixel_data
    if info is not None:
        end = len(data) if info.length is None else info.value_offset + info.length
        assert result.header_length < info.value_offset <= end <= len(data)
        assert all(_inside(f, info.value_offset, end) for f in (*info.fragments, *info.frames))
        assert len(info.frames) in (0, info.number_of_frames)
    if result.transfer_syntax_uid != DeflatedExplicitVRLittleEndian:
        ref = read_reference(data[: result.header_length], stop_before_pixels=True, force=True)
        for ours, theirs in [(result.dataset.file_meta, ref.file_meta), (result.dataset, ref)]:
            # keys(): iterating a Dataset would convert every element.
            tags = list(theirs.keys())
            assert list(ours.keys()) == tags
            for tag in tags:
                assert _element(ours, tag) == _element(theirs, tag), tag
        if info is not None and info.length is not None:
            # Native pixel data: the recorded range holds what pydicom reads as the value.
            whole = read_reference(data, force=True)
            if info.tag in whole:  # get_item: the raw value, as read (no VR resolution)
                assert data[info.value_offset : end] == whole.get_item(info.tag).value


def _element(ds: Dataset, tag: BaseTag) -> tuple[object, ...]:
    """(VR, value) as pydicom converts it, or what pydicom says when it cannot (a flipped bit
    makes an unknown VR or an unreadable value: both readers must agree on that too)."""
    try:
        element = ds[tag]
        return (element.VR, element.value)
    except Exception as exc:
        return ("unreadable", type(exc).__name__)


def _must_only_raise_format_errors(data: bytes, cuts: list[int], cap: int = 1 << 16) -> ScanResult | None:
    """Scan in chunks: either a format error raised on purpose, or a result that checks out."""
    scanner = DicomHeaderScanner(max_header_size=cap, max_inflated_size=1 << 20)
    try:
        _feed_chunks(scanner, data, cuts)
        result = scanner.finish()
    except DicomFormatError as error:
        assert error.reason, "a format error says why"
        assert _raised_on_purpose(error), f"scanner bug behind {error!r}: {error.__cause__!r}"
        return None
    _check_accepted(data, result)
    return result


@FUZZ
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_raise_only_format_errors(data: bytes, cuts: list[int]) -> None:
    _must_only_raise_format_errors(data, cuts)
    _must_only_raise_format_errors(bytes(128) + b"DICM" + data, cuts)


@FUZZ
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    flips=st.lists(st.tuples(st.integers(min_value=128), st.integers(min_value=0, max_value=7)), max_size=6),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_corrupted_files_raise_only_format_errors(
    name: str, flips: list[tuple[int, int]], cut: int | None, cuts: list[int]
) -> None:
    data = bytearray(SAMPLES[name])
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _must_only_raise_format_errors(bytes(data), cuts, cap=len(data) // 2 + 200)


def test_pydicom_test_files_are_present() -> None:
    # Guards the parametrised test above against an empty list on a stripped wheel.
    assert len(PART10_FILES) > 100
    assert os.path.basename(str(TEST_FILES)) == "test_files"
