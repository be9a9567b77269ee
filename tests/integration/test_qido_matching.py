"""QIDO-RS matching (PS3.4 C.2.2.2, PS3.18 8.3.4) on both catalog backends."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicomweb_core.catalog.qido import parse_qido
from dicomweb_core.errors import BadRequestError
from dicomweb_core.models import InstanceRecord

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SR = "1.2.840.10008.5.1.4.1.1.88.22"
US = "1.2.840.10008.5.1.4.1.1.6.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
BASE = "http://127.0.0.1:8080/dicomweb"

# study uid, patient name, patient id, date, time, accession, [(modality, sop class, n instances)]
STUDIES: list[tuple[str, str, str, str, str, str, list[tuple[str, str, int]]]] = [
    ("1.2.3.1", "Smith^John", "P001", "20240115", "101500", "ACC1", [("CT", CT, 2), ("SR", SR, 1)]),
    ("1.2.3.2", "Smithson^Jane", "P002", "20230601", "093000", "ACC2", [("MR", MR, 3)]),
    ("1.2.3.3", "Jones^Johnny^Q", "P003", "20221231", "140000", "ACC3", [("CT", CT, 1), ("US", US, 1)]),
    ("1.2.3.4", "smith^anna", "P004", "", "", "", [("CR", CR, 1)]),
    ("1.2.3.5", "O'Brien^Mary", "P005", "20240115", "080000", "ACC5", [("MR", MR, 1)]),
]


def build_records() -> list[InstanceRecord]:
    records = []
    for study_uid, name, pid, date, tm, acc, series in STUDIES:
        for se_no, (modality, sop_class, count) in enumerate(series, start=1):
            series_uid = f"{study_uid}.{se_no}"
            for i in range(1, count + 1):
                ds = Dataset()
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.SOPInstanceUID = f"{series_uid}.{i}"
                ds.SOPClassUID = sop_class
                ds.PatientName = name
                ds.PatientID = pid
                ds.StudyDate = date
                ds.StudyTime = tm
                ds.AccessionNumber = acc
                ds.ReferringPhysicianName = "Welby^Marcus"
                ds.StudyDescription = f"Study of {pid}"
                ds.StudyID = pid[1:]
                ds.Modality = modality
                ds.SeriesNumber = se_no
                ds.SeriesDescription = f"{modality} series"
                ds.BodyPartExamined = "CHEST" if modality == "CT" else "HEAD"
                ds.InstanceNumber = count + 1 - i  # stored in reverse order of instance number
                ds.Rows = 64
                ds.Columns = 64
                ds.BitsAllocated = 16
                ds.SliceThickness = "1.5"
                ds.PatientWeight = "70"
                if study_uid == "1.2.3.1":
                    ref = Dataset()
                    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
                    ref.ReferencedSOPInstanceUID = "9.9.9.1"
                    ds.ReferencedStudySequence = DicomSequence([ref])
                if modality == "MR" and study_uid == "1.2.3.2":
                    req = Dataset()
                    req.ScheduledProcedureStepID = "SPS2"
                    req.RequestedProcedureID = "RP2"
                    ds.RequestAttributesSequence = DicomSequence([req])
                meta = ds.to_json_dict()
                meta["7FE00010"] = {"vr": "OW", "BulkDataURI": f"{BASE}/bulk/{ds.SOPInstanceUID}"}
                records.append(
                    InstanceRecord(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_instance_uid=ds.SOPInstanceUID,
                        sop_class_uid=sop_class,
                        transfer_syntax_uid="1.2.840.10008.1.2.1",
                        object_key=f"{study_uid}/{series_uid}/{ds.SOPInstanceUID}.dcm",
                        size=100,
                        metadata=orjson.dumps(meta),
                    )
                )
    return records


@pytest.fixture
async def filled(catalog: Any) -> Any:
    records = build_records()
    await catalog.upsert_instances(records[:4])
    for rec in records[4:]:
        await catalog.upsert_instance(rec)
    return catalog


async def search(cat: Any, level: str = "study", *params: tuple[str, str], **kw: str) -> list[dict[str, Any]]:
    return list(await cat.search(parse_qido(level, list(params), **kw), base_url=BASE))  # type: ignore[arg-type]


def v(obj: dict[str, Any], tag: str) -> Any:
    return obj.get(tag, {}).get("Value")


async def uids(cat: Any, *params: tuple[str, str], level: str = "study", **kw: str) -> list[str]:
    key = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}[level]
    return [v(r, key)[0] for r in await search(cat, level, *params, **kw)]


async def test_single_value_matching_by_keyword_and_by_hex_tag(filled: Any) -> None:
    assert await uids(filled, ("PatientID", "P002")) == ["1.2.3.2"]
    assert await uids(filled, ("00100020", "P002")) == ["1.2.3.2"]
    assert await uids(filled, ("PatientName", "Smith^John")) == ["1.2.3.1"]
    assert await uids(filled, ("AccessionNumber", "ACC3")) == ["1.2.3.3"]
    assert await uids(filled, ("PatientID", "nobody")) == []


async def test_person_names_match_case_sensitively_without_fuzzy(filled: Any) -> None:
    assert await uids(filled, ("PatientName", "smith^john")) == []
    assert await uids(filled, ("PatientName", "smith*")) == ["1.2.3.4"]


async def test_uid_list_matching(filled: Any) -> None:
    assert sorted(await uids(filled, ("StudyInstanceUID", "1.2.3.1,1.2.3.3"))) == ["1.2.3.1", "1.2.3.3"]
    assert sorted(await uids(filled, ("StudyInstanceUID", "1.2.3.2\\1.2.3.5"))) == ["1.2.3.2", "1.2.3.5"]


async def test_wildcard_matching(filled: Any) -> None:
    assert sorted(await uids(filled, ("PatientName", "Smith*"))) == ["1.2.3.1", "1.2.3.2"]
    assert await uids(filled, ("PatientName", "Sm?th^*")) == ["1.2.3.1"]
    assert await uids(filled, ("PatientName", "*^Mary")) == ["1.2.3.5"]
    assert await uids(filled, ("PatientName", "O'Brien*")) == ["1.2.3.5"]
    assert sorted(await uids(filled, ("PatientID", "P00?"))) == [s[0] for s in STUDIES]


async def test_fuzzy_person_name_matching_is_case_insensitive_and_component_wise(filled: Any) -> None:
    fz = ("fuzzymatching", "true")
    assert sorted(await uids(filled, ("PatientName", "smith"), fz)) == ["1.2.3.1", "1.2.3.2", "1.2.3.4"]
    # One token: prefix of any component (Jones, Johnny; John).
    assert sorted(await uids(filled, ("PatientName", "jo"), fz)) == ["1.2.3.1", "1.2.3.3"]
    # Components are positional.
    assert await uids(filled, ("PatientName", "smi^jo"), fz) == ["1.2.3.1"]
    assert sorted(await uids(filled, ("PatientName", "smi^j"), fz)) == ["1.2.3.1", "1.2.3.2"]
    assert await uids(filled, ("PatientName", "^mar"), fz) == ["1.2.3.5"]
    assert await uids(filled, ("PatientName", "john^smith"), fz) == []
    assert sorted(await uids(filled, ("ReferringPhysicianName", "WELBY"), fz)) == [s[0] for s in STUDIES]


async def test_date_range_matching_closed_and_open(filled: Any) -> None:
    assert await uids(filled, ("StudyDate", "20230101-20231231")) == ["1.2.3.2"]
    assert await uids(filled, ("StudyDate", "20240101-")) == ["1.2.3.1", "1.2.3.5"]
    assert await uids(filled, ("StudyDate", "-20221231")) == ["1.2.3.3"]
    assert await uids(filled, ("StudyDate", "20240115")) == ["1.2.3.1", "1.2.3.5"]
    assert await uids(filled, ("StudyDate", "20221231-20240115")) == [
        "1.2.3.1",
        "1.2.3.5",
        "1.2.3.2",
        "1.2.3.3",
    ]


async def test_time_range_matching(filled: Any) -> None:
    assert await uids(filled, ("StudyTime", "0900-1000")) == ["1.2.3.2"]
    assert await uids(filled, ("StudyTime", "1015-")) == ["1.2.3.1", "1.2.3.3"]


async def test_empty_value_matching(filled: Any) -> None:
    assert await uids(filled, ("AccessionNumber", '""')) == ["1.2.3.4"]
    assert await uids(filled, ("StudyDate", '""')) == ["1.2.3.4"]


async def test_universal_matching_returns_the_attribute(filled: Any) -> None:
    res = await search(filled, "study", ("PatientID", "P001"), ("StudyDescription", ""))
    assert v(res[0], "00081030") == ["Study of P001"]
    assert len(await search(filled, "study", ("PatientName", "*"))) == len(STUDIES)


async def test_modalities_in_study_matching(filled: Any) -> None:
    assert await uids(filled, ("ModalitiesInStudy", "MR")) == ["1.2.3.5", "1.2.3.2"]
    assert sorted(await uids(filled, ("ModalitiesInStudy", "CT,US"))) == ["1.2.3.1", "1.2.3.3"]
    assert await uids(filled, ("SOPClassesInStudy", SR)) == ["1.2.3.1"]


async def test_sequence_matching_one_level_deep(filled: Any) -> None:
    assert await uids(filled, ("ReferencedStudySequence.ReferencedSOPInstanceUID", "9.9.9.1")) == ["1.2.3.1"]
    assert await uids(filled, ("00081110.00081155", "9.9.9.1")) == ["1.2.3.1"]
    assert await uids(filled, ("00081110.00081155", "9.9.9.2")) == []
    assert await uids(
        filled, ("RequestAttributesSequence.ScheduledProcedureStepID", "SPS*"), level="series"
    ) == ["1.2.3.2.1"]
    res = await search(filled, "series", ("RequestAttributesSequence.RequestedProcedureID", "RP2"))
    assert v(res[0], "00400275")[0]["00401001"]["Value"] == ["RP2"]


async def test_lower_and_upper_level_keys(filled: Any) -> None:
    assert await uids(filled, ("Modality", "SR"), level="study") == ["1.2.3.1"]
    assert await uids(filled, ("SOPClassUID", SR), level="series") == ["1.2.3.1.2"]
    assert await uids(filled, ("PatientID", "P002"), level="instance") == [
        "1.2.3.2.1.3",
        "1.2.3.2.1.2",
        "1.2.3.2.1.1",
    ]
    assert await uids(filled, ("Modality", "CT"), ("BodyPartExamined", "CHEST"), level="series") == [
        "1.2.3.1.1",
        "1.2.3.3.1",
    ]


async def test_study_results_carry_return_and_computed_attributes(filled: Any) -> None:
    (res,) = await search(filled, "study", ("PatientID", "P001"))
    assert v(res, "00100010") == [{"Alphabetic": "Smith^John"}]
    assert v(res, "00080020") == ["20240115"]
    assert v(res, "00080050") == ["ACC1"]
    assert v(res, "00080005") == ["ISO_IR 100"]
    assert v(res, "00201206") == [2]
    assert v(res, "00201208") == [3]
    assert v(res, "00080061") == ["CT", "SR"]
    assert v(res, "00080062") == [CT, SR]
    assert v(res, "00080056") == ["ONLINE"]
    assert v(res, "00081190") == [f"{BASE}/studies/1.2.3.1"]
    assert res["00100030"] == {"vr": "DA"}  # required return key, absent: returned empty
    assert "00080060" not in res and "00280010" not in res  # lower levels stay out
    assert list(res) == sorted(res)


async def test_series_results_carry_series_and_study_attributes(filled: Any) -> None:
    res = await search(filled, "series", study_uid="1.2.3.1")
    assert [v(r, "00200011") for r in res] == [[1], [2]]
    assert [v(r, "00080060") for r in res] == [["CT"], ["SR"]]
    assert [v(r, "00201209") for r in res] == [[2], [1]]
    assert v(res[0], "0008103E") == ["CT series"]
    assert v(res[0], "00100020") == ["P001"]
    assert v(res[0], "0020000D") == ["1.2.3.1"]
    assert v(res[0], "00081190") == [f"{BASE}/studies/1.2.3.1/series/1.2.3.1.1"]
    assert v(res[0], "00201208") == [3]  # the enclosing study's computed attributes too


async def test_instance_results_are_ordered_by_instance_number(filled: Any) -> None:
    res = await search(filled, "instance", study_uid="1.2.3.2", series_uid="1.2.3.2.1")
    assert [v(r, "00200013") for r in res] == [[1], [2], [3]]
    first = res[0]
    assert v(first, "00080016") == [MR]
    assert v(first, "00280010") == [64]
    assert v(first, "00280100") == [16]
    assert v(first, "00080060") == ["MR"]
    assert v(first, "00100020") == ["P002"]
    sop = v(first, "00080018")[0]
    assert v(first, "00081190") == [f"{BASE}/studies/1.2.3.2/series/1.2.3.2.1/instances/{sop}"]
    assert await search(filled, "instance", study_uid="1.2.3.2", series_uid="7.7") == []


async def test_includefield_by_keyword_tag_comma_list_and_all(filled: Any) -> None:
    (res,) = await search(
        filled, "study", ("PatientID", "P003"), ("includefield", "StudyDescription,00180015")
    )
    assert v(res, "00081030") == ["Study of P003"]
    assert v(res, "00180015") is not None  # from an instance of the study
    (res,) = await search(filled, "study", ("PatientID", "P003"), ("includefield", "00101030"))
    assert v(res, "00101030") == [70]
    (res,) = await search(filled, "study", ("PatientID", "P003"), ("includefield", "all"))
    assert v(res, "00081030") == ["Study of P003"]
    inst = await search(filled, "instance", ("includefield", "all"), study_uid="1.2.3.5")
    assert v(inst[0], "00180050") == [1.5]
    assert "7FE00010" not in inst[0]
    series = await search(
        filled, "series", ("includefield", "NumberOfStudyRelatedInstances"), study_uid="1.2.3.3"
    )
    assert [v(s, "00201208") for s in series] == [[2], [2]]


async def test_limit_offset_pages_are_disjoint_and_complete(filled: Any) -> None:
    everything = await uids(filled)
    assert everything == ["1.2.3.1", "1.2.3.5", "1.2.3.2", "1.2.3.3", "1.2.3.4"]
    pages = [await uids(filled, ("limit", "2"), ("offset", str(o))) for o in (0, 2, 4, 6)]
    assert pages == [everything[0:2], everything[2:4], everything[4:], []]
    all_instances = await uids(filled, level="instance")
    assert len(all_instances) == len(set(all_instances)) == 10
    paged = []
    for offset in range(0, 12, 3):
        paged += await uids(filled, ("limit", "3"), ("offset", str(offset)), level="instance")
    assert paged == all_instances
    assert await uids(filled, ("offset", "3")) == everything[3:]


async def test_unsupported_attribute_keys_produce_warnings_not_silence(filled: Any) -> None:
    q = parse_qido("study", [("PatientWeight", "70"), ("PatientID", "P001")])
    assert any("PatientWeight" in w for w in q.warnings)
    (res,) = await filled.search(q, base_url=BASE)
    assert v(res, "00101030") == [70]  # returned even though not matched
    q = parse_qido(
        "study", [("ReferencedStudySequence.ReferencedStudySequence.ReferencedSOPInstanceUID", "1")]
    )
    assert q.warnings and not q.matches


@pytest.mark.parametrize(
    "key",
    [
        "Foo",
        "NoSuchKeyword",
        "ReferencedStudySequence.ReferencedSOPInstanceUID.Foo",
        "Foo.PatientID",
        "0010002",
    ],
)
def test_keys_that_are_not_dicom_attributes_are_bad_requests_naming_the_key(key: str) -> None:
    with pytest.raises(BadRequestError, match="unknown query key") as exc:
        parse_qido("study", [("PatientID", "P001"), (key, "bar")])
    assert repr(key) in exc.value.reason


@pytest.mark.parametrize(
    "params",
    [
        [("PatientID", "P001"), ("ModalitiesInStudy", "CT")],
        [("ModalitiesInStudy", "CT"), ("PatientID", "P001")],
        [("ModalitiesInStudy", "CT"), ("StudyDate", "20240101-"), ("PatientName", "Smith*")],
        [
            ("Modality", "SR"),
            ("PatientName", "Smith*"),
            ("ModalitiesInStudy", "CT"),
            ("StudyDate", "20240101-"),
        ],
        [("SOPClassesInStudy", SR), ("ModalitiesInStudy", "CT"), ("AccessionNumber", "ACC1")],
    ],
)
async def test_modalities_in_study_combined_with_other_keys_in_any_order(
    filled: Any, params: list[tuple[str, str]]
) -> None:
    assert await uids(filled, *params) == ["1.2.3.1"]
    assert await uids(filled, *reversed(params)) == ["1.2.3.1"]


async def test_lower_level_keys_combined_with_own_level_keys_at_series_level(filled: Any) -> None:
    params = [("SOPInstanceUID", "1.2.3.3.2.1"), ("Modality", "US"), ("PatientID", "P003")]
    assert await uids(filled, *params, level="series") == ["1.2.3.3.2"]
    assert await uids(filled, *reversed(params), level="series") == ["1.2.3.3.2"]


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        # From 2024-01-15 09:00 on: 1.2.3.1 (10:15 that day); 1.2.3.5 (08:00) is before it.
        ("20240115-", "0900-", ["1.2.3.1"]),
        # Up to 2024-01-15 09:00: 1.2.3.5 (08:00) and every earlier day at any time.
        ("-20240115", "-0900", ["1.2.3.5", "1.2.3.2", "1.2.3.3"]),
        # 2022-12-31 15:00 to 2024-01-15 09:00: 1.2.3.3 is at 14:00 that first day, outside.
        ("20221231-20240115", "1500-0900", ["1.2.3.5", "1.2.3.2"]),
        # A single date with a time range is that day's window.
        ("20240115", "0700-0900", ["1.2.3.5"]),
        # A date range with a single time: from that time on the first day to it on the last.
        ("20230601-20240115", "093000", ["1.2.3.5", "1.2.3.2"]),
    ],
)
async def test_study_date_and_time_ranges_match_as_one_datetime_range(
    filled: Any, date: str, time: str, expected: list[str]
) -> None:
    assert await uids(filled, ("StudyDate", date), ("StudyTime", time)) == expected
    assert await uids(filled, ("StudyTime", time), ("StudyDate", date)) == expected
    q = parse_qido("study", [("StudyDate", date), ("StudyTime", time)])
    assert [m.kind for m in q.matches] == ["datetime"]


async def test_separate_date_and_time_ranges_would_differ_from_the_combined_one(filled: Any) -> None:
    # Independently, 1500-0900 is an empty time range (400); as one datetime range it is not.
    with pytest.raises(BadRequestError):
        parse_qido("study", [("StudyTime", "1500-0900")])
    # Two single values are two plain conditions.
    assert await uids(filled, ("StudyDate", "20240115"), ("StudyTime", "080000")) == ["1.2.3.5"]


async def test_series_and_instance_searches_carry_the_enclosing_levels_attributes(filled: Any) -> None:
    for level, params, kw in [
        ("series", [("PatientID", "P001")], {}),
        ("series", [], {"study_uid": "1.2.3.1"}),
        ("instance", [("PatientID", "P001")], {}),
        ("instance", [], {"study_uid": "1.2.3.1"}),
        ("instance", [], {"study_uid": "1.2.3.1", "series_uid": "1.2.3.1.1"}),
    ]:
        res = await search(filled, level, *params, **kw)
        assert res, (level, kw)
        for r in res:
            assert v(r, "00100020") == ["P001"], (level, kw)
            assert v(r, "00080020") == ["20240115"]
            assert v(r, "00080061") == ["CT", "SR"]
            assert v(r, "00201206") == [2]
            assert v(r, "00201208") == [3]
            assert v(r, "0020000E") is not None and v(r, "00080060") is not None
            series_no = v(r, "00200011")[0]
            assert v(r, "00201209") == [{1: 2, 2: 1}[series_no]]
        if level == "instance":
            assert all(v(r, "00080018") for r in res)


@pytest.mark.parametrize(
    "params",
    [
        [("limit", "-1")],
        [("limit", "ten")],
        [("offset", "-5")],
        [("offset", "1.5")],
        [("fuzzymatching", "maybe")],
        [("StudyDate", "2024-01-01")],
        [("StudyDate", "20240101-20230101")],
        [("StudyDate", "2024")],
        [("StudyTime", "25h")],
        [("StudyDate", "20200230")],
        [("StudyDate", "20231301")],
        [("StudyDate", "20240101-20240231")],
        [("PatientBirthDate", "19990229")],
        [("StudyTime", "999999")],
        [("StudyTime", "2400")],
        [("StudyTime", "1260")],
        [("StudyTime", "-246000")],
        [("StudyDate", "20240101"), ("StudyTime", "1800-1000")],
        [("StudyInstanceUID", "abc")],
        [("StudyInstanceUID", "1.2.3,01.2")],
        [("SeriesNumber", "one")],
    ],
)
def test_bad_parameters_are_bad_requests(params: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequestError):
        parse_qido("study", params)


def test_parse_reads_includefields_limit_offset_and_fuzzy() -> None:
    q = parse_qido(
        "series",
        [
            ("includefield", "00081030,Modality"),
            ("includefield", "all"),
            ("limit", "10"),
            ("offset", "20"),
            ("fuzzymatching", "true"),
            ("PatientName", "doe"),
        ],
    )
    assert q.include_all and 0x00081030 in q.includefields and 0x00080060 in q.includefields
    assert (q.limit, q.offset, q.fuzzy) == (10, 20, True)
    assert q.matches[0].kind == "fuzzy"
    capped = parse_qido("study", [("limit", "5000")], max_limit=100)
    assert capped.limit == 100 and capped.warnings
