"""The fast DICOM JSON encoder agrees with pydicom's on every file pydicom ships."""

from __future__ import annotations

import glob
import io
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import orjson
import pydicom
import pydicom.errors
import pytest

from dicomweb_core.dicomjson import (
    BASE_PLACEHOLDER,
    _charset,
    _fast_dataset,
    _pydicom_json,
    _Unsupported,
    bulkdata_uri,
    to_dicom_json,
)
from dicomweb_core.models import PixelDataInfo
from tests.dicomfiles import make_dataset, to_bytes

#: Files without a File Meta header ("DICM"): pydicom reads them only with ``force=True``.
NEEDS_FORCE = frozenset({"ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "no_meta.dcm", "rtstruct.dcm"})
#: Files the fast encoder does not take as they are, and what happens instead (tested below).
FAST_PATH_REFUSES = {
    "J2K_pixelrep_mismatch.dcm": "whole",  # multi-valued SpecificCharacterSet: pydicom converts it all
    "badVR.dcm": "00280008",  # NumberOfFrames "1A": that element alone is left out, logged
}


def _read(path: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=os.path.basename(path) in NEEDS_FORCE)


FILES = sorted(
    glob.glob(
        os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "**", "*.dcm"),
        recursive=True,
    )
)


def test_the_files_needing_force_are_exactly_the_named_ones() -> None:
    refused = set()
    for path in FILES:
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            refused.add(os.path.basename(path))
    assert refused == NEEDS_FORCE


def _as_received(ds: pydicom.Dataset) -> pydicom.Dataset:
    """What ingest sees: the data set read back from bytes (elements still raw)."""
    del ds.PixelData
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)), stop_before_pixels=True)


def test_every_pydicom_file_is_compared() -> None:
    assert len(FILES) > 70


def _normalise(obj: Any) -> Any:
    """pydicom keeps padding inside multi-values and writes '' for empty ones; PS3.18 F.2.5
    says null. Compare modulo that."""
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    if isinstance(obj, str):
        return obj.strip() or None
    return obj


def _reference(ds: pydicom.Dataset, uri: Callable[[int], str] = lambda tag: f"bulk/{tag:08X}") -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _pydicom_json(ds, lambda e: uri(int(e.tag)))
    return _normalise(orjson.loads(orjson.dumps(ref)))


@pytest.mark.parametrize(
    "path", [p for p in FILES if os.path.basename(p) not in FAST_PATH_REFUSES], ids=os.path.basename
)
def test_fast_encoder_matches_pydicom(path: str) -> None:
    ds, ref_ds = _read(path), _read(path)
    fast = _fast_dataset(ds, lambda tag: f"bulk/{tag:08X}", _charset(ds))
    assert _normalise(orjson.loads(orjson.dumps(fast))) == _reference(ref_ds)


@pytest.mark.parametrize("name", sorted(FAST_PATH_REFUSES))
def test_files_the_fast_encoder_refuses_still_encode_like_pydicom(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = next(p for p in FILES if os.path.basename(p) == name)
    ds = _read(path)
    if FAST_PATH_REFUSES[name] == "whole":
        with pytest.raises(_Unsupported, match="multi-valued SpecificCharacterSet"):
            _charset(ds)
    with caplog.at_level(logging.WARNING, logger="dicomweb.dicomjson"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = to_dicom_json(ds, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    ref = _reference(_read(path), lambda tag: bulkdata_uri("1", "2", "3", tag))
    assert _normalise(orjson.loads(orjson.dumps(out))) == ref
    dropped = FAST_PATH_REFUSES[name]
    if dropped != "whole":
        assert dropped not in out and len(out) == len(ds) - 1
        assert [r.getMessage() for r in caplog.records if dropped in r.getMessage()]
    else:
        assert len(out) == len(ds)


def test_a_malformed_value_drops_only_that_element_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    ds = make_dataset(NumberOfFrames=77)
    del ds.PixelData
    element = b"\x28\x00\x08\x00IS\x02\x00"
    raw = to_bytes(ds).replace(element + b"77", element + b"1A")  # NumberOfFrames "1A"
    received = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    with caplog.at_level(logging.WARNING, logger="dicomweb.dicomjson"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = to_dicom_json(received, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    assert "00280008" not in out
    assert out["00100020"] == {"vr": "LO", "Value": ["PID-1"]}
    assert any("00280008" in r.getMessage() for r in caplog.records)


def test_an_element_with_a_vr_dicom_does_not_define_drops_only_that_element(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An explicit VR that DICOM does not define ("LW", found by the HTTP fuzz test) is walked
    by its 2-byte length like pydicom does; pydicom cannot convert it, so it is left out."""
    ds = make_dataset(Modality="CT")
    del ds.PixelData
    raw = to_bytes(ds).replace(b"\x08\x00\x60\x00CS\x02\x00CT", b"\x08\x00\x60\x00LW\x02\x00CT")
    received = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    with caplog.at_level(logging.WARNING, logger="dicomweb.dicomjson"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = to_dicom_json(received, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    assert "00080060" not in out
    assert out["00100020"] == {"vr": "LO", "Value": ["PID-1"]}
    assert any("00080060" in r.getMessage() for r in caplog.records)


def test_text_undecodable_in_the_declared_charset_goes_to_pydicom_alone() -> None:
    ds = make_dataset(SpecificCharacterSet="ISO_IR 192")
    del ds.PixelData
    raw = to_bytes(ds).replace(b"Test study", b"caf\xe9 \xff\xfe\xfd!!")  # not UTF-8
    received = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    with pytest.raises(UnicodeDecodeError):
        received.get_item(0x00081030).value.decode("utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = to_dicom_json(received, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    assert out["00081030"]["vr"] == "LO" and out["00081030"]["Value"][0].startswith("caf")
    assert out["00100020"] == {"vr": "LO", "Value": ["PID-1"]}  # the rest still on the fast path


def test_an_unsupported_character_set_goes_to_pydicom_whole() -> None:
    ds = make_dataset(SpecificCharacterSet="ISO_IR 144", PatientName="\u0418\u0432\u0430\u043d\u043e\u0432")
    received = _as_received(ds)
    with pytest.raises(_Unsupported):
        _charset(received)
    out = to_dicom_json(received, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    assert out["00100010"]["Value"] == [{"Alphabetic": "\u0418\u0432\u0430\u043d\u043e\u0432"}]


def test_errors_that_are_not_bad_values_are_not_swallowed() -> None:
    """The fallbacks catch conversion errors only: a failing bulk handler (a bug) surfaces."""
    ds = _as_received(make_dataset())
    ds.add_new(0x00091011, "OB", bytes(4000))

    def broken(elem: Any) -> str:
        raise RuntimeError("bulk handler bug")

    with pytest.raises(RuntimeError, match="bulk handler bug"):
        _pydicom_json(ds, broken)


def test_pixel_data_becomes_a_placeholder_bulkdata_uri() -> None:
    ds = _as_received(make_dataset(PatientName="Müller^Jörg", SpecificCharacterSet="ISO_IR 192"))
    info = PixelDataInfo(tag=0x7FE00010, value_offset=1000, length=512, encapsulated=False)
    out = to_dicom_json(ds, study_uid="1.2", series_uid="1.3", sop_instance_uid="1.4", pixel_data=info)
    assert out["7FE00010"] == {
        "vr": "OW",
        "BulkDataURI": f"{BASE_PLACEHOLDER}/studies/1.2/series/1.3/instances/1.4/bulkdata/7FE00010",
    }
    assert out["00100010"]["Value"] == [{"Alphabetic": "Müller^Jörg"}]
    assert out["00280010"] == {"vr": "US", "Value": [16]}


def test_empty_values_in_multi_valued_strings_are_null() -> None:
    ds = _as_received(make_dataset(ImageType=["ORIGINAL", "", "AXIAL"], PatientWeight=""))
    out = to_dicom_json(ds, study_uid="1", series_uid="2", sop_instance_uid="3", pixel_data=None)
    assert out["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]
    assert out["00101030"] == {"vr": "DS"}
