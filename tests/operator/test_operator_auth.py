"""The optional, additive ``spec.auth`` block: validated, passed to both services as AUTH_*
settings, shown by the production ingestion example; without it the services are told
AUTH_MODE=none on purpose (they refuse a non-loopback bind otherwise)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from k8s_offline import _LOADER, REPO, crd_schemas, validate
from operator_samples import SEED_SPEC, make_cr

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.reconcile import Observed, reconcile
from dicomweb_operator.spec import InvalidSpecError, parse_spec

ALL_DEPS = Observed(bucket_config=True, bucket_secret=True, broker=True)
AUTH = {
    "issuer": "https://keycloak.example.com/realms/imaging",
    "audience": "dicomweb",
    "permissionsFrom": "keycloak",
    "rolesClient": "dicomweb",
}


def service_env(cr: dict[str, Any], config: OperatorConfig) -> dict[str, dict[str, Any]]:
    plan = reconcile(cr, ALL_DEPS, config)
    envs = {}
    for manifest in plan.manifests:
        if manifest["kind"] == "Service":
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            envs[manifest["metadata"]["name"]] = {e["name"]: e.get("value") for e in container["env"]}
    return envs


def test_spec_auth_reaches_both_services(config: OperatorConfig) -> None:
    envs = service_env(make_cr({**SEED_SPEC, "auth": AUTH}), config)
    assert set(envs) == {"img-ingest-stow", "img-ingest-wado"}
    for env in envs.values():
        assert env["AUTH_MODE"] == "oidc"
        assert env["AUTH_ISSUER"] == AUTH["issuer"]
        assert env["AUTH_AUDIENCE"] == "dicomweb"
        assert env["AUTH_PERMISSIONS_FROM"] == "keycloak"
        assert env["AUTH_ROLES_CLIENT"] == "dicomweb"
        assert "AUTH_JWKS_URL" not in env


def test_without_spec_auth_the_seed_runs_as_before_with_auth_off_on_purpose(config: OperatorConfig) -> None:
    envs = service_env(make_cr(), config)
    for env in envs.values():
        assert env["AUTH_MODE"] == "none"
        assert not any(name.startswith("AUTH_") and name != "AUTH_MODE" for name in env)
    assert parse_spec(SEED_SPEC).auth is None


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"audience": "x"}, "spec.auth.issuer"),
        ({"issuer": "keycloak.example.com"}, "spec.auth.issuer"),
        ({"issuer": "https://idp.test"}, "spec.auth.audience"),
        ({**AUTH, "permissionsFrom": "ldap"}, "spec.auth.permissionsFrom"),
        ({**AUTH, "jwksUrl": "file:///etc/keys"}, "spec.auth.jwksUrl"),
        ("oidc", "spec.auth must be an object"),
    ],
)
def test_invalid_spec_auth_is_reported(auth: Any, problem: str) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec({**SEED_SPEC, "auth": auth})
    assert any(problem in p for p in refused.value.problems), refused.value.problems


def test_the_production_ingestion_example_validates_and_enables_auth(config: OperatorConfig) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render the overlays"
    out = subprocess.run(
        [kubectl, "kustomize", str(REPO / "kustomize" / "overlays" / "production" / "ingestion")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    docs = [d for d in yaml.load_all(out, Loader=_LOADER) if d]
    schemas = crd_schemas()
    assert [p for d in docs for p in validate(d, schemas)] == []
    (cr,) = [d for d in docs if d["kind"] == "DicomwebIngestionService"]
    cr["metadata"]["uid"] = "4f1c7e2a-0000-4000-8000-000000000002"
    for env in service_env(cr, config).values():
        assert env["AUTH_MODE"] == "oidc" and env["AUTH_PERMISSIONS_FROM"] == "keycloak"
