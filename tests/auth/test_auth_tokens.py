"""Tokens: forged ones refused with the reason, key rotation at the issuer while the service
runs, a flood of unknown key ids costing the issuer at most one JWKS fetch per interval, roles
from Keycloak- and Entra-style claims, dicomweb-client with a bearer session, the audit trail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from dicomweb_client.api import DICOMwebClient

from tests.auth.conftest import (
    AUDIENCE,
    OidcProvider,
    SigningKey,
    auth_env,
    bearer,
    start_server,
    wait_for_audit,
)
from tests.dicomfiles import make_dataset, make_instance, multipart_related, uid
from tests.servers import ServiceProcess


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())


def forged(oidc: OidcProvider, issuer_key: SigningKey) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason the service must give)."""
    stranger = SigningKey(issuer_key.kid)  # same kid, another key
    now = int(time.time())
    public_pem = issuer_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": issuer_key.kid}, oidc.claims())
    hs256 = hs_input + "." + b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    return {
        "wrong key": (stranger.sign(oidc.claims()), "signature does not verify"),
        "wrong audience": (issuer_key.sign(oidc.claims(aud="https://other.test")), "not for this service"),
        "wrong issuer": (issuer_key.sign(oidc.claims(iss="http://127.0.0.1:1")), "another issuer"),
        "expired": (issuer_key.sign(oidc.claims(exp=now - 60)), "expired"),
        "not yet valid": (issuer_key.sign(oidc.claims(nbf=now + 600)), "not valid yet"),
        "no exp": (issuer_key.sign({k: v for k, v in oidc.claims().items() if k != "exp"}), "no 'exp'"),
        "alg none": (unsigned({"alg": "none", "kid": issuer_key.kid}, oidc.claims()) + ".", "'none'"),
        "HS256 with the public key": (hs256, "'HS256' is not accepted"),
        "unknown kid": (issuer_key.sign(oidc.claims(), kid="made-up"), "kid"),
        "tampered claims": (
            (
                lambda t: (
                    t.split(".")[0]
                    + "."
                    + b64(json.dumps(oidc.claims(sub="admin")).encode())
                    + "."
                    + t.split(".")[2]
                )
            )(issuer_key.sign(oidc.claims())),
            "signature does not verify",
        ),
    }


def test_forged_tokens_are_refused_with_the_reason(
    secured: ServiceProcess, oidc: OidcProvider, issuer_key: SigningKey
) -> None:
    target = secured.base + "/dicomweb/studies"
    for name, (token, reason) in forged(oidc, issuer_key).items():
        r = httpx.get(target, headers=bearer(token))
        assert r.status_code == 401, (name, r.status_code, r.text)
        challenge = r.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge, name
        assert reason in r.text, (name, r.text)
    # The same claims signed by the issuer's key are accepted: the refusals were about the forgery.
    assert httpx.get(target, headers=bearer(issuer_key.sign(oidc.claims()))).status_code == 200


def test_leeway_accepts_a_token_expired_a_moment_ago(
    secured: ServiceProcess, oidc: OidcProvider, issuer_key: SigningKey
) -> None:
    token = issuer_key.sign(oidc.claims(exp=int(time.time()) - 2))  # leeway is 5 s here
    assert httpx.get(secured.base + "/dicomweb/studies", headers=bearer(token)).status_code == 200


def test_key_rotation_at_the_issuer_while_the_service_runs(tmp_path: Path) -> None:
    old, new = SigningKey("old-key"), SigningKey("new-key")
    provider = OidcProvider(tmp_path, [old]).start()
    server = start_server(tmp_path / "server", auth_env(provider, AUTH_TOKEN_CACHE_SECONDS="0"))
    try:
        target = server.base + "/dicomweb/studies"
        old_token = provider.token("dicom.read")
        assert httpx.get(target, headers=bearer(old_token)).status_code == 200
        provider.restart([new])  # the old key is withdrawn
        new_token = provider.token("dicom.read")
        assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "==="))["kid"] == "new-key"
        deadline = time.monotonic() + 10
        while (status := httpx.get(target, headers=bearer(new_token)).status_code) != 200:
            assert status == 401 and time.monotonic() < deadline, status
            time.sleep(0.2)  # a refetch waits out AUTH_JWKS_MIN_REFRESH_SECONDS (1 s here)
        r = httpx.get(target, headers=bearer(old_token))
        assert r.status_code == 401 and "kid" in r.text
    finally:
        server.stop()
        provider.stop()


def test_a_flood_of_unknown_key_ids_costs_the_issuer_one_fetch_per_interval(
    tmp_path: Path, oidc: OidcProvider, issuer_key: SigningKey
) -> None:
    server = start_server(tmp_path, auth_env(oidc, AUTH_JWKS_MIN_REFRESH_SECONDS="30"))
    try:
        target = server.base + "/dicomweb/studies"
        assert httpx.get(target, headers=bearer(issuer_key.sign(oidc.claims()))).status_code == 200
        before = oidc.requests_to("/jwks")
        started = time.monotonic()

        def attempt(n: int) -> int:
            token = issuer_key.sign(oidc.claims(), kid=f"made-up-{n}")
            return httpx.get(target, headers=bearer(token), timeout=10).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(attempt, range(200)))
        elapsed = time.monotonic() - started
        fetched = oidc.requests_to("/jwks") - before
        assert statuses == [401] * 200
        assert fetched <= 1 + int(elapsed / 30), (fetched, elapsed)
        # Known keys keep working during and after the flood.
        assert httpx.get(target, headers=bearer(issuer_key.sign(oidc.claims()))).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("source", "extra", "client", "allowed", "refused"),
    [
        ("keycloak", {"AUTH_ROLES_CLIENT": "dicomweb"}, "kc-owner", ["GET", "POST", "DELETE"], []),
        ("keycloak", {"AUTH_ROLES_CLIENT": "dicomweb"}, "kc-reader", ["GET"], ["POST", "DELETE"]),
        ("keycloak", {}, "kc-owner", [], ["GET", "POST", "DELETE"]),  # client roles not configured
        ("entra", {"AUTH_READ_PERMISSION": "DICOM.Reader"}, "entra-reader", ["GET"], ["POST", "DELETE"]),
        ("entra", {}, "entra-reader", [], ["GET"]),
    ],
)
def test_permissions_from_roles(
    tmp_path: Path,
    oidc: OidcProvider,
    source: str,
    extra: dict[str, str],
    client: str,
    allowed: list[str],
    refused: list[str],
) -> None:
    server = start_server(tmp_path, auth_env(oidc, AUTH_PERMISSIONS_FROM=source, **extra))
    try:
        # The scopes of the token do not count here: only the roles.
        token = oidc.token("dicom.read dicom.write dicom.delete", client=client)
        study, series, sop = uid(), uid(), uid()
        body, ctype = multipart_related([make_instance(study_uid=study, series_uid=series, sop_uid=sop)])
        requests_by_method = {
            "POST": ("POST", "/dicomweb/studies", {"content": body, "headers": {"content-type": ctype}}),
            "GET": ("GET", "/dicomweb/studies", {}),
            "DELETE": ("DELETE", f"/dicomweb/studies/{uid()}", {}),
        }
        expected = {"POST": 200, "GET": 200, "DELETE": 204}  # DELETE is idempotent
        for method in allowed + refused:
            verb, path, kwargs = requests_by_method[method]
            headers = {**kwargs.pop("headers", {}), **bearer(token)}  # type: ignore[dict-item]
            r = httpx.request(verb, server.base + path, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == (expected[method] if method in allowed else 403), (method, r.text)
    finally:
        server.stop()


def test_dicomweb_client_with_a_bearer_session(secured: ServiceProcess, oidc: OidcProvider) -> None:
    token = oidc.token("dicom.read dicom.write dicom.delete")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    client = DICOMwebClient(secured.base + "/dicomweb", session=session)
    ds = make_dataset()
    client.store_instances([ds])
    found = client.search_for_studies(search_filters={"StudyInstanceUID": ds.StudyInstanceUID})
    assert [s["0020000D"]["Value"][0] for s in found] == [ds.StudyInstanceUID]
    back = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert back.SOPInstanceUID == ds.SOPInstanceUID and back.PixelData == ds.PixelData
    client.delete_study(ds.StudyInstanceUID)
    # Without the token, the same client is refused.
    anonymous = DICOMwebClient(secured.base + "/dicomweb")
    with pytest.raises(requests.HTTPError) as refused:
        anonymous.search_for_studies()
    assert refused.value.response.status_code == 401


def test_audit_lines_name_who_did_what_to_which_uids(tmp_path: Path, oidc: OidcProvider) -> None:
    server = start_server(tmp_path, auth_env(oidc))
    try:
        token = oidc.token("dicom.read dicom.write")
        study, series, sop = uid(), uid(), uid()
        body, ctype = multipart_related([make_instance(study_uid=study, series_uid=series, sop_uid=sop)])
        base = server.base + "/dicomweb"
        stow = httpx.post(base + "/studies", content=body, headers={"content-type": ctype, **bearer(token)})
        assert stow.status_code == 200
        metadata = httpx.get(
            f"{base}/studies/{study}/series/{series}/instances/{sop}/metadata", headers=bearer(token)
        )
        assert metadata.status_code == 200
        search = httpx.get(base + "/studies", params={"PatientName": "Doe^Jane"}, headers=bearer(token))
        assert search.status_code == 200
        denied = httpx.delete(f"{base}/studies/{study}", headers=bearer(token))
        assert denied.status_code == 403
        lines = wait_for_audit(server, 4)
        assert [(line["transaction"], line["action"], line["outcome"]) for line in lines] == [
            ("STOW-RS", "write", "success"),
            ("WADO-RS", "read", "success"),
            ("QIDO-RS", "read", "success"),
            ("DELETE", "delete", "denied"),
        ]
        for line in lines:
            assert line["subject"] == "svc" and line["client_id"] == "svc"
            assert line["remote"] == "127.0.0.1"
            assert line["time"].endswith("Z")
        assert lines[0]["stored"] == [{"study": study, "series": series, "instance": sop}]
        assert lines[0]["bytes_in"] == len(body) and lines[0]["status"] == 200
        assert lines[1]["route"] == "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata"
        assert (lines[1]["study"], lines[1]["series"], lines[1]["instance"]) == (study, series, sop)
        assert lines[1]["bytes_out"] == len(metadata.content)
        assert lines[3]["study"] == study and lines[3]["status"] == 403
        assert server.log_path is not None
        log = server.log_path.read_text()
        assert token not in log and token.split(".")[2] not in log
        assert "Doe" not in log  # the query (PHI) is never written
        assert AUDIENCE not in log
    finally:
        server.stop()
