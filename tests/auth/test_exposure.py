"""Safe exposure without a token issuer: the start-up bind check, ``X-Forwarded-*`` believed only
from trusted proxies (the audit line's remote address included), settings refused at start-up."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from dicomweb_core.auth.settings import SUPPORTED_ALGORITHMS, check_bind, load_auth_settings
from dicomweb_core.errors import ConfigError
from tests.auth.conftest import wait_for_audit
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import DICOMWEB, ServiceProcess, free_port


def run_serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    return subprocess.run(
        [DICOMWEB, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), *args],
        env={**full_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_non_loopback_bind_without_auth_is_refused_with_one_line(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--host", "0.0.0.0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without access control" in lines[0]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--insecure-no-auth"], {}), ([], {"AUTH_MODE": "none"}), (["--auth-mode", "none"], {})],
)
def test_serving_without_auth_beyond_loopback_when_told_on_purpose(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp_path / "data"), "--host", "0.0.0.0", *args],
        env=env,
        log_path=tmp_path / "server.log",
    )
    server.start()
    try:
        assert httpx.get(server.base + "/dicomweb/studies").status_code == 200
    finally:
        server.stop()


def test_the_embedded_default_on_loopback_needs_no_setup() -> None:
    settings = load_auth_settings({})
    check_bind("127.0.0.1", settings, insecure_no_auth=False)
    check_bind("::1", settings, insecure_no_auth=False)
    check_bind("localhost", settings, insecure_no_auth=False)
    with pytest.raises(ConfigError):
        check_bind("192.0.2.10", settings, insecure_no_auth=False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTH_MODE": "oidc", "AUTH_AUDIENCE": "x"}, "needs AUTH_ISSUER"),
        ({"AUTH_MODE": "oidc", "AUTH_ISSUER": "https://idp.test"}, "needs AUTH_AUDIENCE"),
        ({"AUTH_MODE": "saml"}, "expected none or oidc"),
        ({"AUTH_ISSUER": "idp.test"}, "must be an http(s) URL"),
        ({"AUTH_ALGORITHMS": "RS256,HS256"}, "'HS256' is not allowed"),
        ({"AUTH_ALGORITHMS": "none"}, "'none' is not allowed"),
        ({"AUTH_PERMISSIONS_FROM": "ldap"}, "expected scope, keycloak or entra"),
        ({"AUTH_LEEWAY_SECONDS": "-1"}, "must be a number of seconds"),
        ({"FORWARDED_ALLOW_IPS": "proxy.local"}, "not an IP address or network"),
    ],
)
def test_bad_auth_settings_fail_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_auth_settings(env)


def test_oidc_settings_are_parsed_once() -> None:
    settings = load_auth_settings(
        {
            "AUTH_MODE": "oidc",
            "AUTH_ISSUER": "https://idp.test/realms/x",
            "AUTH_AUDIENCE": "dicomweb, account",
            "AUTH_WRITE_PERMISSION": "DICOM Data Owner,dicom.write",
        }
    )
    assert settings.enabled and settings.audit
    assert settings.audiences == ("dicomweb", "account")
    assert dict(settings.grants)[next(p for p, _ in settings.grants if p.value == "write")] == (
        "DICOM Data Owner",
        "dicom.write",
    )
    assert settings.algorithms == SUPPORTED_ALGORITHMS and "HS256" not in settings.algorithms


def stow_through(server: ServiceProcess, headers: dict[str, str]) -> httpx.Response:
    body, ctype = multipart_related([make_instance()])
    return httpx.post(
        server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype, **headers}
    )


FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Host": "archive.example",
    "X-Forwarded-Proto": "https",
}


@pytest.mark.parametrize(
    ("allow", "believed"),
    [(None, True), ("127.0.0.0/8", True), ("*", True), ("", False), ("192.0.2.1", False)],
)
def test_forwarded_headers_only_from_trusted_proxies(
    tmp_path: Path, allow: str | None, believed: bool
) -> None:
    env = {"AUDIT_LOG": "true"}
    args = ["--data-dir", str(tmp_path / "data")]
    if allow is not None:
        args += ["--forwarded-allow-ips", allow]
    server = ServiceProcess("serve", args=args, env=env, log_path=tmp_path / "server.log").start()
    try:
        r = stow_through(server, FORWARDED)
        assert r.status_code == 200
        retrieve_url = json.loads(r.content)["00081190"]["Value"][0]
        [line] = wait_for_audit(server, 1)
        if believed:
            assert retrieve_url.startswith("https://archive.example/dicomweb/studies/")
            assert line["remote"] == "203.0.113.7"
        else:
            assert retrieve_url.startswith(f"http://127.0.0.1:{server.port}/dicomweb/studies/")
            assert line["remote"] == "127.0.0.1"
    finally:
        server.stop()


def test_the_client_is_the_last_untrusted_hop(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"]
    server = ServiceProcess(
        "serve", args=args, env={"AUDIT_LOG": "1"}, log_path=tmp_path / "server.log"
    ).start()
    try:
        # A client that writes its own X-Forwarded-For cannot choose its address: the proxies
        # append, and the right-most address that is not a trusted proxy is the client.
        headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.1.2.3"}
        assert httpx.get(server.base + "/dicomweb/studies", headers=headers).status_code == 200
        [line] = wait_for_audit(server, 1)
        assert line["remote"] == "203.0.113.9" and line["subject"] is None
    finally:
        server.stop()
