"""A deterministic benchmark dataset made with pydicom, cached by a content hash.

Full size: 2000 CT/MR-like 512x512 16-bit slices (~0.5 MB each) over 100 studies
and 300 series, one of them a 600-slice thin-slice CT series; one 200-frame
multi-frame instance (~105 MB); and the pydicom wheel's well-formed test files
(one per study, so study-level attributes are unambiguous). A seeded RNG chooses
patients, names, dates, accession numbers, modalities and series sizes; the same
parameters and the same generator code give the same bytes, so the directory
name (a hash of both) is a cache key.

The manifest records, for every instance, what the checks need: the UIDs, the
study-level attributes QIDO filters on, the size, the offset where the data set
starts (after the file meta group, which servers may rewrite) and its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

OUT = Path(__file__).resolve().parent / "out"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture

FAMILY = [
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PEREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SANCHEZ",
    "CLARK",
    "RAMIREZ",
    "LEWIS",
    "ROBINSON",
    "WALKER",
    "YOUNG",
    "ALLEN",
    "KING",
    "WRIGHT",
    "SCOTT",
    "TORRES",
    "NGUYEN",
    "HILL",
    "FLORES",
    "GREEN",
    "ADAMS",
    "NELSON",
    "BAKER",
    "HALL",
    "RIVERA",
    "CAMPBELL",
    "MITCHELL",
    "CARTER",
    "ROBERTS",
]
GIVEN = [
    "JAMES",
    "MARY",
    "ROBERT",
    "PATRICIA",
    "JOHN",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "DAVID",
    "ELIZABETH",
    "WILLIAM",
    "BARBARA",
    "RICHARD",
    "SUSAN",
    "JOSEPH",
    "JESSICA",
    "THOMAS",
    "SARAH",
    "CHARLES",
    "KAREN",
]
CT_STUDIES = (
    ("CT CHEST W/O CONTRAST", "CHEST"),
    ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
    ("CT HEAD W/O CONTRAST", "HEAD"),
    ("CTA PULMONARY", "CHEST"),
)
MR_STUDIES = (
    ("MR BRAIN W/WO CONTRAST", "BRAIN"),
    ("MR LUMBAR SPINE W/O", "LSPINE"),
    ("MR KNEE LEFT W/O", "KNEE"),
)


@dataclass(frozen=True)
class Params:
    """What the dataset looks like; part of the cache key."""

    seed: int = 20240611
    slices: int = 2000
    studies: int = 100
    series: int = 300
    big_series: int = 600  # the first study's thin-slice CT series
    patients: int = 70
    rows: int = 512
    frames: int = 200  # multi-frame instance, frame size rows*rows*2
    testfiles: bool = True

    @classmethod
    def small(cls) -> Params:
        return cls(slices=40, studies=6, series=12, big_series=10, patients=5, rows=128, frames=200)


@dataclass(frozen=True)
class Instance:
    """One instance of the dataset, as the checks need it."""

    path: str  # relative to the dataset directory
    kind: str  # slice | multiframe | testfile
    study: str
    series: str
    sop: str
    size: int
    body_offset: int  # first byte after the file meta group
    body_sha256: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    modality: str
    frames: int
    frame_size: int  # bytes per uncompressed frame (0 when not applicable)
    pixel_offset: int  # offset of the Pixel Data value in the file (0 when not applicable)


@dataclass
class DatasetIndex:
    root: Path
    params: Params
    instances: list[Instance]

    @property
    def slices(self) -> list[Instance]:
        return [i for i in self.instances if i.kind == "slice"]

    @property
    def multiframe(self) -> Instance:
        return next(i for i in self.instances if i.kind == "multiframe")

    @property
    def testfiles(self) -> list[Instance]:
        return [i for i in self.instances if i.kind == "testfile"]

    def read(self, inst: Instance) -> bytes:
        return (self.root / inst.path).read_bytes()

    def frame(self, inst: Instance, number: int) -> bytes:
        """Frame ``number`` (1-based) of an uncompressed instance, read from the file."""
        with (self.root / inst.path).open("rb") as f:
            f.seek(inst.pixel_offset + (number - 1) * inst.frame_size)
            return f.read(inst.frame_size)


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(prefix=None, entropy_srcs=[str(seed), *map(str, parts)])


def _cache_key(params: Params) -> str:
    h = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    h.update(Path(__file__).read_bytes())
    h.update(pydicom.__version__.encode())
    return h.hexdigest()[:16]


def load_or_generate(params: Params, out: Path = OUT / "dataset") -> DatasetIndex:
    """The dataset for ``params``, generated on first use into ``out/<hash>``."""
    root = out / _cache_key(params)
    manifest = root / "manifest.json"
    if manifest.exists():
        rows = json.loads(manifest.read_text())
        return DatasetIndex(root, params, [Instance(**r) for r in rows])
    # A private temp name: two runs generating at once each finish, the first rename wins.
    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    instances = list(_generate(params, tmp))
    settings = json.dumps(asdict(params), sort_keys=True)
    (tmp / "params.json").write_text(settings)
    (tmp / "manifest.json").write_text(json.dumps([asdict(i) for i in instances]))
    # A finished dataset for the same parameters from an older generator is stale (~1 GB).
    for old in out.iterdir():
        stale = old / "params.json"
        if old not in (tmp, root) and stale.exists() and stale.read_text() == settings:
            shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return DatasetIndex(root, params, instances)


def _split(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` groups, each group at least 1, sizes varied."""
    weights = rng.gamma(2.0, 1.0, parts)
    extra = rng.multinomial(total - parts, weights / weights.sum())
    return [int(x) + 1 for x in extra]


def _phantom(rows: int, rng: np.random.Generator) -> np.ndarray:
    """An ellipse of 'tissue' in 'air' plus a noise pool, int16."""
    y, x = np.mgrid[0:rows, 0:rows].astype(np.float32) / rows - 0.5
    body = ((x / 0.42) ** 2 + (y / 0.32) ** 2 < 1).astype(np.float32)
    img = -1000 + body * (1040 + 200 * np.cos(9 * x) * np.sin(7 * y))
    noisy: np.ndarray = (img + rng.normal(0, 12, img.shape)).astype(np.int16)
    return noisy


def _generate(params: Params, root: Path) -> Iterator[Instance]:
    rng = np.random.default_rng(params.seed)
    phantom = _phantom(params.rows, rng)
    patients = []
    for p in range(params.patients):
        patients.append(
            {
                "PatientID": f"BM{p:06d}",
                "PatientName": f"{FAMILY[rng.integers(len(FAMILY))]}^{GIVEN[rng.integers(len(GIVEN))]}",
                "PatientBirthDate": f"{rng.integers(1935, 2010)}{rng.integers(1, 13):02d}"
                f"{rng.integers(1, 29):02d}",
                "PatientSex": "MF"[int(rng.integers(2))],
            }
        )
    # Study 0 holds the big series alone; the other series spread over the other studies.
    rest = params.slices - params.big_series
    series_sizes = [params.big_series, *_split(rng, rest, params.series - 1)]
    per_study = [1, *_split(rng, params.series - 1, params.studies - 1)]
    series_index = 0
    for s, n_series in enumerate(per_study):
        patient = patients[0] if s == 0 else patients[int(rng.integers(params.patients))]
        # About one study in eight mixes CT and MR series (ModalitiesInStudy is then two values).
        base_mr = bool(rng.random() < 0.4) and s != 0
        mixed = bool(rng.random() < 0.125)
        desc, body_part = (MR_STUDIES if base_mr else CT_STUDIES)[int(rng.integers(3))]
        study = {
            **patient,
            "StudyInstanceUID": _uid(params.seed, "study", s),
            "StudyDate": f"{rng.integers(2012, 2025)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}",
            "StudyTime": f"{rng.integers(7, 20):02d}{rng.integers(60):02d}{rng.integers(60):02d}",
            "AccessionNumber": f"A{rng.integers(10**7, 10**8)}",
            "StudyID": str(s + 1),
            "StudyDescription": desc,
            "ReferringPhysicianName": f"{FAMILY[int(rng.integers(len(FAMILY)))]}^{GIVEN[0]}",
            "InstitutionName": "BENCHMARK GENERAL HOSPITAL",
        }
        for k in range(n_series):
            size = series_sizes[series_index]
            mr = base_mr != (mixed and k % 2 == 1)
            series = {
                "SeriesInstanceUID": _uid(params.seed, "series", series_index),
                "SeriesNumber": k + 1,
                "Modality": "MR" if mr else "CT",
                "SeriesDescription": f"{'AX T2' if mr else 'AXIAL 1.25MM'} {k + 1}",
                "BodyPartExamined": body_part,
            }
            for n in range(size):
                yield _write_slice(params, root, phantom, study, series, series_index, n)
            series_index += 1
    yield _write_multiframe(params, root, phantom, patients[-1])
    if params.testfiles:
        yield from _copy_testfiles(root)


def _base_dataset(sop_class: str, sop: str, attrs: Mapping[str, object]) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _write_slice(
    params: Params,
    root: Path,
    phantom: np.ndarray,
    study: Mapping[str, object],
    series: Mapping[str, object],
    series_index: int,
    n: int,
) -> Instance:
    mr = series["Modality"] == "MR"
    sop = _uid(params.seed, "sop", series_index, n)
    ds = _base_dataset(MR_IMAGE if mr else CT_IMAGE, sop, {**study, **series})
    ds.InstanceNumber = n + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-250.0, -250.0, -1.25 * n]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = [0.976562, 0.976562]
    ds.FrameOfReferenceUID = _uid(params.seed, "for", series_index)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = params.rows
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if mr else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0 if mr else 1
    if mr:
        pixels = (np.roll(phantom, n, axis=0).astype(np.int32) + 1024).clip(0).astype(np.uint16)
    else:
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        pixels = np.roll(phantom, n, axis=0) + 1024
    ds.PixelData = pixels.tobytes()
    return _save(ds, root / "slices" / f"{series_index:03d}" / f"{n:04d}.dcm", root, "slice", 1)


def _write_multiframe(params: Params, root: Path, phantom: np.ndarray, patient: dict[str, str]) -> Instance:
    sop = _uid(params.seed, "mf", "sop")
    attrs = {
        **patient,
        "StudyInstanceUID": _uid(params.seed, "mf", "study"),
        "SeriesInstanceUID": _uid(params.seed, "mf", "series"),
        "StudyDate": "20230704",
        "StudyTime": "101500",
        "AccessionNumber": "A00000001",
        "StudyID": "MF1",
        "StudyDescription": "XA CINE RUN",
        "Modality": "OT",
        "SeriesNumber": 1,
        "InstanceNumber": 1,
    }
    ds = _base_dataset(MF_WORD_SC, sop, attrs)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = params.rows
    ds.NumberOfFrames = params.frames
    ds.FrameTime = "33.3"
    ds.FrameIncrementPointer = (0x0018, 0x1063)  # Frame Time
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    base = (phantom.astype(np.int32) + 1024).clip(0).astype(np.uint16)
    # Every frame differs (its number is added), so a wrong frame cannot pass the check.
    frames = np.stack([base + np.uint16(f) for f in range(params.frames)])
    ds.PixelData = frames.tobytes()
    return _save(ds, root / "multiframe.dcm", root, "multiframe", params.frames)


def _save(ds: Dataset, path: Path, root: Path, kind: str, frames: int) -> Instance:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    frame_size = int(ds.Rows) * int(ds.Columns) * 2
    pixel_len = frame_size * frames
    return _describe(
        ds, data, path.relative_to(root).as_posix(), kind, frames, frame_size, len(data) - pixel_len
    )


def _body_offset(data: bytes) -> int:
    """First byte after the file meta group (preamble, DICM, (0002,xxxx) elements)."""
    # (0002,0000) UL group length: tag 4 + VR 2 + length 2 + value 4, right after DICM.
    group_len = int.from_bytes(data[140:144], "little")
    return 144 + group_len


def _describe(
    ds: Dataset, data: bytes, rel: str, kind: str, frames: int, frame_size: int, pixel_offset: int
) -> Instance:
    off = _body_offset(data)
    return Instance(
        path=rel,
        kind=kind,
        study=str(ds.StudyInstanceUID),
        series=str(ds.SeriesInstanceUID),
        sop=str(ds.SOPInstanceUID),
        size=len(data),
        body_offset=off,
        body_sha256=hashlib.sha256(data[off:]).hexdigest(),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        accession=str(ds.get("AccessionNumber", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        frames=frames,
        frame_size=frame_size,
        pixel_offset=pixel_offset,
    )


def _copy_testfiles(root: Path) -> Iterator[Instance]:
    """pydicom's well-formed test files: a file meta group, all UIDs, one file per study."""
    seen_sops: set[str] = set()
    seen_studies: set[str] = set()
    for src in sorted(get_testdata_files(), key=lambda p: Path(p).name):
        name = Path(src).name
        if not Path(src).is_file() or "DICOMDIR" in name or "truncated" in name or name.startswith("bad"):
            continue
        data = Path(src).read_bytes()
        if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ds = pydicom.dcmread(src, stop_before_pixels=True)
        except Exception:  # any complaint excludes the file
            continue
        uids = [str(ds.get(k, "") or "") for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")]
        if not all(uids) or uids[0] in seen_sops or uids[1] in seen_studies:
            continue
        seen_sops.add(uids[0])
        seen_studies.add(uids[1])
        dest = root / "testfiles" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        yield _describe(ds, data, dest.relative_to(root).as_posix(), "testfile", 0, 0, 0)
