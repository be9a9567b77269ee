"""Every DICOMweb route under AUTH_MODE=oidc, with real tokens from a real OpenID Provider:
401 without a token, 403 with a valid token that lacks the route's permission, success with
one that has it; open paths and CORS preflights without a token; a refused STOW stores nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import OidcProvider, bearer, wait_for_audit
from tests.dicomfiles import make_instance, multipart_related, uid
from tests.servers import ServiceProcess

Study = tuple[str, str, str]

S = "/studies/{study}"
SE = S + "/series/{series}"
I = SE + "/instances/{instance}"  # noqa: E741
F = I + "/frames/1"
READ_ROUTES = [
    "/studies",
    "/series",
    "/instances",
    S + "/series",
    S + "/instances",
    SE + "/instances",
    S,
    SE,
    I,
    S + "/metadata",
    SE + "/metadata",
    I + "/metadata",
    F,
    I + "/bulkdata/7FE00010",
    S + "/rendered",
    SE + "/rendered",
    I + "/rendered",
    F + "/rendered",
    S + "/thumbnail",
    SE + "/thumbnail",
    I + "/thumbnail",
    F + "/thumbnail",
]
DELETE_ROUTES = [S, SE, I]
STOW_ROUTES = ["/studies", S]
#: The permission each token lacks is granted by another token; "none" has no dicom.* scope.
LACKING = {"read": ["write", "delete", "none"], "write": ["read", "delete"], "delete": ["read", "write"]}


def store(server: ServiceProcess, token: str, root: str = "/dicomweb") -> Study:
    study, series, instance = uid(), uid(), uid()
    body, ctype = multipart_related([make_instance(study_uid=study, series_uid=series, sop_uid=instance)])
    r = httpx.post(
        server.base + root + "/studies", content=body, headers={"content-type": ctype, **bearer(token)}
    )
    assert r.status_code == 200, r.text
    return study, series, instance


@pytest.fixture(scope="module")
def study(secured: ServiceProcess, tokens: dict[str, str]) -> Study:
    return store(secured, tokens["write"])


def url(server: ServiceProcess, root: str, template: str, at: Study) -> str:
    return server.base + root + template.format(study=at[0], series=at[1], instance=at[2])


def assert_refused(response: httpx.Response, status: int, error: str | None) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="dicomweb"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge, challenge


def check_route(
    server: ServiceProcess,
    tokens: dict[str, str],
    method: str,
    target: str,
    permission: str,
    expected: int,
    **kwargs: object,
) -> None:
    assert_refused(httpx.request(method, target, **kwargs), 401, None)  # type: ignore[arg-type]
    for other in LACKING[permission]:
        headers = {**kwargs.pop("headers", {}), **bearer(tokens[other])}  # type: ignore[dict-item]
        r = httpx.request(method, target, headers=headers, **kwargs)  # type: ignore[arg-type]
        assert_refused(r, 403, "insufficient_scope")
        assert f'scope="dicom.{permission}"' in r.headers["www-authenticate"]
        kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
    headers = {**kwargs.pop("headers", {}), **bearer(tokens[permission])}  # type: ignore[dict-item]
    r = httpx.request(method, target, headers=headers, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == expected, (target, r.status_code, r.text[:300])


@pytest.mark.parametrize("root", ["/dicomweb", "/wado-rs"])
@pytest.mark.parametrize("template", READ_ROUTES)
def test_read_routes_need_the_read_permission(
    secured: ServiceProcess, tokens: dict[str, str], study: Study, root: str, template: str
) -> None:
    check_route(secured, tokens, "GET", url(secured, root, template, study), "read", 200)


@pytest.mark.parametrize("root", ["/dicomweb", "/stow-rs"])
@pytest.mark.parametrize("template", STOW_ROUTES)
def test_stow_routes_need_the_write_permission(
    secured: ServiceProcess, tokens: dict[str, str], root: str, template: str
) -> None:
    at = (uid(), uid(), uid())
    body, ctype = multipart_related([make_instance(study_uid=at[0], series_uid=at[1], sop_uid=at[2])])
    target = url(secured, root, template, at)
    check_route(secured, tokens, "POST", target, "write", 200, content=body, headers={"content-type": ctype})
    r = httpx.get(
        url(secured, root.replace("stow", "wado"), I + "/metadata", at), headers=bearer(tokens["read"])
    )
    assert r.status_code == 200


@pytest.mark.parametrize("root", ["/dicomweb", "/wado-rs"])
@pytest.mark.parametrize("template", DELETE_ROUTES)
def test_delete_routes_need_the_delete_permission(
    secured: ServiceProcess, tokens: dict[str, str], root: str, template: str
) -> None:
    at = store(secured, tokens["write"])
    check_route(secured, tokens, "DELETE", url(secured, root, template, at), "delete", 204)
    r = httpx.get(url(secured, root, I + "/metadata", at), headers=bearer(tokens["read"]))
    assert r.status_code == 404


def test_health_and_readiness_are_open(secured: ServiceProcess) -> None:
    assert httpx.get(secured.base + "/healthz").status_code == 200
    assert httpx.get(secured.base + "/readyz").status_code == 200
    # Open, whether or not a metrics endpoint is installed: never a 401.
    assert httpx.get(secured.base + "/metrics").status_code in (200, 404)


def test_other_paths_need_a_valid_token(secured: ServiceProcess, tokens: dict[str, str]) -> None:
    assert_refused(httpx.get(secured.base + "/elsewhere"), 401, None)
    assert httpx.get(secured.base + "/elsewhere", headers=bearer(tokens["none"])).status_code == 404


def test_cors_preflight_needs_no_token_and_refusals_are_readable_cross_origin(
    secured: ServiceProcess, tokens: dict[str, str]
) -> None:
    origin = "http://viewer.example"
    preflight = httpx.options(
        secured.base + "/dicomweb/studies",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = httpx.get(secured.base + "/dicomweb/studies", headers={"Origin": origin})
    assert_refused(refused, 401, None)
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
    allowed = httpx.get(
        secured.base + "/dicomweb/studies", headers={"Origin": origin, **bearer(tokens["read"])}
    )
    assert allowed.status_code == 200


def test_malformed_authorization_headers(secured: ServiceProcess, tokens: dict[str, str]) -> None:
    target = secured.base + "/dicomweb/studies"
    assert_refused(httpx.get(target, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, None)
    assert_refused(httpx.get(target, headers={"Authorization": "Bearer"}), 400, "invalid_request")
    assert_refused(httpx.get(target, headers={"Authorization": "Bearer a b"}), 400, "invalid_request")
    assert_refused(httpx.get(target, headers={"Authorization": "Bearer not-a-jwt"}), 401, "invalid_token")
    twice = [("Authorization", f"Bearer {tokens['read']}"), ("Authorization", f"Bearer {tokens['read']}")]
    assert_refused(httpx.get(target, headers=twice), 400, "invalid_request")
    # The scheme name is case-insensitive (RFC 7235).
    assert httpx.get(target, headers={"Authorization": f"bearer {tokens['read']}"}).status_code == 200


def leftovers(data: Path) -> list[Path]:
    """Every file in the data directory other than the catalog database."""
    return [p for p in data.rglob("*") if p.is_file() and not p.name.startswith("catalog.db")]


def test_refused_stow_stores_nothing_and_reads_no_body(
    tmp_path: Path, oidc: OidcProvider, tokens: dict[str, str]
) -> None:
    from tests.auth.conftest import auth_env, start_server

    server = start_server(tmp_path, auth_env(oidc))
    try:
        data = tmp_path / "data"
        study = uid()
        parts = [make_instance(study_uid=study, rows=256, cols=256, pixel_seed=n) for n in range(8)]
        body, ctype = multipart_related(parts)
        refused = {
            None: 401,
            "Bearer " + tokens["read"]: 403,
            "Bearer " + tokens["delete"]: 403,
            "Bearer " + tokens["read"][:-4] + "AAAA": 401,
        }
        for authorization, status in refused.items():
            headers = {"content-type": ctype, **({"Authorization": authorization} if authorization else {})}
            r = httpx.post(server.base + "/dicomweb/studies", content=body, headers=headers)
            assert r.status_code == status, r.text
        # A client that waits for "100 Continue" is answered without sending its body at all.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                (
                    f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
                    f"Authorization: Bearer {tokens['read']}\r\n\r\n"
                ).encode()
            )
            head = conn.recv(65536).decode("latin-1")
        assert head.startswith("HTTP/1.1 403"), head[:200]
        assert "100 Continue" not in head
        lines = wait_for_audit(server, 5)
        assert [line["status"] for line in lines] == [401, 403, 403, 401, 403]
        assert all(line["bytes_in"] == 0 and line["transaction"] == "STOW-RS" for line in lines)
        assert all(line["outcome"] == "denied" and line["stored_count"] == 0 for line in lines)
        assert leftovers(data) == []
        search = httpx.get(
            server.base + "/dicomweb/studies",
            params={"StudyInstanceUID": study},
            headers=bearer(tokens["read"]),
        )
        assert search.status_code in (200, 204) and study not in search.text
        # The same body with the write permission is stored (the refusals were about the token).
        ok = httpx.post(
            server.base + "/dicomweb/studies",
            content=body,
            headers={"content-type": ctype, **bearer(tokens["write"])},
        )
        assert ok.status_code == 200
        assert len(leftovers(data)) == 8
    finally:
        server.stop()
