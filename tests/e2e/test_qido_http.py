"""QIDO-RS over real HTTP: the routes, dicomweb-client searches, headers and 4xx."""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.dicomfiles import make_instance, uid
from tests.e2e.test_wado_retrieve import parts, store
from tests.servers import ServiceProcess


@pytest.fixture(scope="module")
def study(embedded: ServiceProcess) -> tuple[str, str, str, str]:
    """One study with two series (CT x2, MR x1) and a unique patient."""
    study, ct, mr = uid(), uid(), uid()
    patient = "QIDO-" + uid()[-12:]
    blobs = [
        make_instance(
            study_uid=study, series_uid=ct, InstanceNumber=1, PatientID=patient, PatientName="Qido^Anna"
        ),
        make_instance(
            study_uid=study, series_uid=ct, InstanceNumber=2, PatientID=patient, PatientName="Qido^Anna"
        ),
        make_instance(
            study_uid=study,
            series_uid=mr,
            Modality="MR",
            InstanceNumber=1,
            PatientID=patient,
            PatientName="Qido^Anna",
        ),
    ]
    store(embedded, blobs)
    return study, ct, mr, patient


def test_dicomweb_client_searches_at_every_level(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    study_uid, ct, mr, patient = study
    client = DICOMwebClient(embedded.base + "/dicomweb")
    [found] = client.search_for_studies(search_filters={"PatientID": patient})
    assert found["0020000D"]["Value"] == [study_uid]
    assert found["00201206"]["Value"] == [2]
    assert found["00201208"]["Value"] == [3]
    assert found["00081190"]["Value"][0] == f"{embedded.base}/dicomweb/studies/{study_uid}"
    series = client.search_for_series(study_uid)
    assert {s["0020000E"]["Value"][0] for s in series} == {ct, mr}
    mr_only = client.search_for_series(search_filters={"PatientID": patient, "Modality": "MR"})
    assert [s["0020000E"]["Value"][0] for s in mr_only] == [mr]
    assert len(client.search_for_instances(study_uid)) == 3
    assert len(client.search_for_instances(study_uid, ct)) == 2
    assert len(client.search_for_instances(search_filters={"PatientID": patient})) == 3


def test_all_six_resources_answer(embedded: ServiceProcess, study: tuple[str, str, str, str]) -> None:
    study_uid, ct, _, patient = study
    expected = {
        f"/studies?PatientID={patient}": 1,
        f"/series?PatientID={patient}": 2,
        f"/instances?PatientID={patient}": 3,
        f"/studies/{study_uid}/series": 2,
        f"/studies/{study_uid}/instances": 3,
        f"/studies/{study_uid}/series/{ct}/instances": 2,
    }
    for root in ("/dicomweb", "/wado-rs"):
        for path, count in expected.items():
            resp = httpx.get(embedded.base + root + path)
            assert resp.status_code == 200, (root, path, resp.text)
            assert resp.headers["content-type"] == "application/dicom+json"
            assert len(resp.json()) == count, (root, path)


def test_hex_tag_keys_and_unencoded_wildcards(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    study_uid, _, _, patient = study
    resp = httpx.get(
        f"{embedded.base}/dicomweb/studies?00100020={patient}&00100010=Qido*&includefield=00081030"
    )
    assert [s["0020000D"]["Value"][0] for s in resp.json()] == [study_uid]
    assert resp.json()[0]["00081030"]["Value"] == ["Test study"]


def test_limit_offset_pages_are_disjoint(embedded: ServiceProcess, study: tuple[str, str, str, str]) -> None:
    study_uid = study[0]
    pages = [
        httpx.get(f"{embedded.base}/dicomweb/studies/{study_uid}/instances?limit=1&offset={n}").json()
        for n in range(4)
    ]
    uids = [p[0]["00080018"]["Value"][0] for p in pages[:3]]
    assert len(set(uids)) == 3 and pages[3] == []


def test_empty_result_is_200_empty_array(embedded: ServiceProcess) -> None:
    resp = httpx.get(f"{embedded.base}/dicomweb/studies?PatientID=nobody-{uid()}")
    assert resp.status_code == 200
    assert resp.json() == []


def test_unsupported_matching_gives_a_warning_header_and_is_ignored(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    # PatientWeight is a real attribute the catalog cannot match on: warned, then ignored.
    resp = httpx.get(f"{embedded.base}/dicomweb/studies?PatientID={study[3]}&PatientWeight=1")
    assert resp.status_code == 200
    assert resp.headers["warning"].startswith("299 ")
    assert "PatientWeight" in resp.headers["warning"]
    assert [s["0020000D"]["Value"][0] for s in resp.json()] == [study[0]]


@pytest.mark.parametrize("key", ["Foo", "NoSuchKeyword", "PatientID.Foo"])
def test_keys_that_are_not_dicom_attributes_are_400_with_the_key(
    embedded: ServiceProcess, study: tuple[str, str, str, str], key: str
) -> None:
    resp = httpx.get(f"{embedded.base}/dicomweb/studies", params={"PatientID": study[3], key: "bar"})
    assert resp.status_code == 400
    assert key in resp.text and "unknown query key" in resp.text


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "offset=x",
        "StudyDate=2024-13-45",
        "fuzzymatching=maybe",
        "StudyDate=20200230",
        "StudyDate=20231301-",
        "StudyTime=999999",
        "StudyTime=2400",
        "PatientBirthDate=19990229",
        "StudyDate=20240101&StudyTime=1800-1000",
        "PatientID=%00",  # no database text column holds NUL (PostgreSQL refused it: a 503)
        "PatientName=a%00b*",
        "Modality=C%01T",
        "includefield=%00",
    ],
)
def test_invalid_query_values_are_400(embedded: ServiceProcess, query: str) -> None:
    resp = httpx.get(f"{embedded.base}/dicomweb/studies?{query}")
    assert resp.status_code == 400
    assert resp.text.strip()


def test_modalities_in_study_with_other_keys_over_http(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    study_uid, _, _, patient = study
    client = DICOMwebClient(embedded.base + "/dicomweb")
    for filters in (
        {"PatientID": patient, "ModalitiesInStudy": "CT"},
        {"ModalitiesInStudy": "MR", "PatientID": patient},
        {"ModalitiesInStudy": "CT", "PatientName": "Qido*", "PatientID": patient, "Modality": "MR"},
    ):
        found = client.search_for_studies(search_filters=filters)
        assert [s["0020000D"]["Value"][0] for s in found] == [study_uid], filters
    assert client.search_for_studies(search_filters={"PatientID": patient, "ModalitiesInStudy": "US"}) == []


def test_cross_level_searches_return_the_enclosing_levels_attributes(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    study_uid, ct, _, patient = study
    root = f"{embedded.base}/dicomweb"
    for path, count in (
        (f"/series?PatientID={patient}", 2),
        (f"/instances?PatientID={patient}", 3),
        (f"/studies/{study_uid}/instances", 3),
    ):
        results = httpx.get(root + path).json()
        assert len(results) == count, path
        for r in results:
            assert r["0020000D"]["Value"] == [study_uid]
            assert r["00100020"]["Value"] == [patient]
            assert r["00080020"]["Value"] == ["20240115"]
            assert r["00080061"]["Value"] == ["CT", "MR"]
            assert r["00201206"]["Value"] == [2]
            assert r["00201208"]["Value"] == [3]
            expected = 2 if r["0020000E"]["Value"] == [ct] else 1
            assert r["00201209"]["Value"] == [expected], path
            assert r["00080060"]["Value"]


def test_study_date_and_time_match_as_one_datetime_range(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    # The study is on 2024-01-15 at 10:15:00.
    patient = study[3]
    found = {
        (date, time): len(
            httpx.get(
                f"{embedded.base}/dicomweb/studies",
                params={"PatientID": patient, "StudyDate": date, "StudyTime": time},
            ).json()
        )
        for date, time in [
            ("20240114-20240115", "1200-1100"),  # 14th 12:00 to 15th 11:00: in
            ("20240115-20240116", "1100-0900"),  # 15th 11:00 to 16th 09:00: out
            ("20240110-20240115", "0000-1000"),  # up to the 15th 10:00: out
            ("20240115-", "1015-"),  # from the 15th 10:15: in
        ]
    }
    assert list(found.values()) == [1, 0, 0, 1], found


def test_malformed_uid_in_the_path_is_400(embedded: ServiceProcess) -> None:
    assert httpx.get(f"{embedded.base}/dicomweb/studies/1.2.x/series").status_code == 400


def test_unservable_accept_is_406(embedded: ServiceProcess) -> None:
    assert httpx.get(f"{embedded.base}/dicomweb/studies", headers={"accept": "image/png"}).status_code == 406


def test_results_as_dicom_xml(embedded: ServiceProcess, study: tuple[str, str, str, str]) -> None:
    resp = httpx.get(
        f"{embedded.base}/dicomweb/studies?PatientID={study[3]}",
        headers={"accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert resp.status_code == 200
    [(headers, body)] = parts(resp)
    assert headers["content-type"] == "application/dicom+xml"
    assert study[0].encode() in body and b"NativeDicomModel" in body


def test_retrieve_url_honours_forwarded_headers(
    embedded: ServiceProcess, study: tuple[str, str, str, str]
) -> None:
    resp = httpx.get(
        f"{embedded.base}/wado-rs/studies?PatientID={study[3]}",
        headers={"x-forwarded-proto": "https", "x-forwarded-host": "pacs.example.org:8443"},
    )
    assert (
        resp.json()[0]["00081190"]["Value"][0] == f"https://pacs.example.org:8443/wado-rs/studies/{study[0]}"
    )
