"""STOW-RS over HTTP with multipart boundaries longer than RFC 2046's 70 characters."""

from __future__ import annotations

import httpx
import pytest

from dicomweb_core.multipart import MAX_BOUNDARY_LENGTH
from tests.dicomfiles import make_instance, multipart_related, uid
from tests.servers import ServiceProcess


def _boundary(length: int) -> str:
    return ("9f1c2e7a-4b3d-4a5e-8c6f-0d1e2f3a4b5c-" * 8)[:length]


@pytest.mark.parametrize("length", [73, 120, MAX_BOUNDARY_LENGTH])
def test_boundaries_up_to_the_cap_are_stored(embedded: ServiceProcess, length: int) -> None:
    study = uid()
    body, ctype = multipart_related([make_instance(study_uid=study)], boundary=_boundary(length))
    resp = httpx.post(f"{embedded.base}/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    assert len(httpx.get(f"{embedded.base}/dicomweb/studies/{study}/instances").json()) == 1


def test_a_boundary_past_the_cap_is_400_with_the_reason_and_nothing_is_stored(
    embedded: ServiceProcess,
) -> None:
    study = uid()
    length = MAX_BOUNDARY_LENGTH + 1
    body, ctype = multipart_related([make_instance(study_uid=study)], boundary=_boundary(length))
    resp = httpx.post(f"{embedded.base}/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 400
    assert f"{length} characters long" in resp.text and str(MAX_BOUNDARY_LENGTH) in resp.text
    assert httpx.get(f"{embedded.base}/dicomweb/studies", params={"StudyInstanceUID": study}).json() == []
