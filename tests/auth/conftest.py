"""A real OpenID Provider (npm ``oidc-provider``, installed into ``tests/auth/node_modules`` by
``scripts/test-prereqs``) issuing RS256 JWT access tokens by the client-credentials grant, and
``dicomweb serve`` processes that accept them.

The provider's signing keys are generated here, so the tests can also forge tokens signed with
the issuer's own key (wrong ``aud``/``iss``, expired, ...) or with a stranger's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.servers import ServiceProcess, free_port

HERE = Path(__file__).resolve().parent
PROVIDER = HERE / "node_modules" / "oidc-provider"
AUDIENCE = "https://dicomweb.test"
SECRET = "a-client-secret-of-at-least-32-characters"
#: Clients of the provider and the extra claims put in their tokens (Keycloak/Entra-style roles).
CLIENTS: dict[str, dict[str, Any]] = {
    "svc": {},
    "kc-reader": {"realm_access": {"roles": ["dicom.read", "offline_access"]}},
    "kc-owner": {
        "realm_access": {"roles": ["default-roles"]},
        "resource_access": {"dicomweb": {"roles": ["dicom.read", "dicom.write", "dicom.delete"]}},
    },
    "entra-reader": {"roles": ["DICOM.Reader"]},
}


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None, alg: str = "RS256") -> str:
        headers = {"kid": self.kid if kid is None else kid, "typ": "at+jwt"}
        return jwt.encode(dict(claims), self.private, algorithm=alg, headers=headers)


def provider_prerequisites() -> None:
    if shutil.which("node") is None or not PROVIDER.is_dir():
        pytest.fail(f"the auth tests need node and {PROVIDER}: run scripts/test-prereqs", pytrace=False)


class OidcProvider:
    """``node provider.mjs`` on a free port; :meth:`restart` with other keys (key rotation)."""

    def __init__(self, work: Path, keys: list[SigningKey]) -> None:
        provider_prerequisites()
        self.work = work
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = keys
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> OidcProvider:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "audience": AUDIENCE,
            "jwks": {"keys": [k.private_jwk for k in self.keys]},
            "clients": [
                {"client_id": cid, "client_secret": SECRET, "claims": claims}
                for cid, claims in CLIENTS.items()
            ],
        }
        path = self.work / "provider.json"
        path.write_text(json.dumps(config))
        log = open(self.work / "provider.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs"), str(path)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"oidc-provider exited: {(self.work / 'provider.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("oidc-provider did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self, keys: list[SigningKey]) -> None:
        """Key rotation: the same issuer, on the same port, now signing with ``keys[0]``."""
        self.stop()
        self.keys = keys
        self.start()

    def token(self, scope: str = "", client: str = "svc") -> str:
        form = {"grant_type": "client_credentials", "client_id": client, "client_secret": SECRET}
        if scope:
            form["scope"] = scope
        response = httpx.post(self.issuer + "/token", data=form, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def requests_to(self, path: str) -> int:
        return int(httpx.get(self.issuer + "/test-counts", timeout=5).json().get(path, 0))

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Claims as the issuer would put them in a token, with ``changes``."""
        now = int(time.time())
        base = {"iss": self.issuer, "aud": AUDIENCE, "sub": "svc", "client_id": "svc", "iat": now}
        return {**base, "exp": now + 300, "scope": "dicom.read dicom.write dicom.delete", **changes}


def auth_env(provider: OidcProvider, **extra: str) -> dict[str, str]:
    return {
        "AUTH_MODE": "oidc",
        "AUTH_ISSUER": provider.issuer,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_LEEWAY_SECONDS": "5",
        "AUTH_JWKS_MIN_REFRESH_SECONDS": "1",
        **extra,
    }


def start_server(work: Path, env: Mapping[str, str], *extra_args: str) -> ServiceProcess:
    work.mkdir(parents=True, exist_ok=True)
    # One worker: the key and token caches are per process, and the rotation and flood tests
    # count what one process fetches and accepts.
    workers = () if "--workers" in extra_args else ("--workers", "1")
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(work / "data"), *workers, *extra_args],
        env=env,
        log_path=work / "server.log",
    )
    return server.start()


def audit_lines(server: ServiceProcess) -> list[dict[str, Any]]:
    assert server.log_path is not None
    lines = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{") and '"dicomweb.audit"' in line:
            lines.append(json.loads(line))
    return lines


def wait_for_audit(server: ServiceProcess, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = audit_lines(server)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def issuer_key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="session")
def oidc(tmp_path_factory: pytest.TempPathFactory, issuer_key: SigningKey) -> Iterator[OidcProvider]:
    provider = OidcProvider(tmp_path_factory.mktemp("oidc"), [issuer_key]).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory, oidc: OidcProvider) -> Iterator[ServiceProcess]:
    """``dicomweb serve`` with AUTH_MODE=oidc, permissions from scopes, every token verified in
    full (no verified-token cache), CORS for any origin."""
    work = tmp_path_factory.mktemp("secured")
    server = start_server(work, auth_env(oidc, AUTH_TOKEN_CACHE_SECONDS="0"), "--cors", "*")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tokens(oidc: OidcProvider) -> dict[str, str]:
    """Real tokens from the provider, by the scopes they carry."""
    return {
        "read": oidc.token("dicom.read"),
        "write": oidc.token("dicom.write"),
        "delete": oidc.token("dicom.delete"),
        "all": oidc.token("dicom.read dicom.write dicom.delete"),
        "none": oidc.token(),
    }
