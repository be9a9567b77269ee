"""The CRD: a valid CustomResourceDefinition whose schema accepts the seed resource and rejects bad ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from k8s_offline import (
    KNATIVE_SCHEMAS,
    OPERATOR_CRD,
    REPO,
    apply_defaults,
    crd_schemas,
    load_yaml_documents,
    validate,
    validate_builtin,
)
from operator_samples import SEED_SPEC, make_cr

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.reconcile import Observed, reconcile
from dicomweb_operator.spec import API_VERSION, KIND, PLURAL, parse_spec

SCHEMAS = crd_schemas()
CR_SCHEMA = SCHEMAS[(API_VERSION, KIND)]


def crd() -> dict[str, Any]:
    (doc,) = load_yaml_documents(OPERATOR_CRD)
    return doc


def test_crd_is_a_valid_custom_resource_definition() -> None:
    doc = crd()
    assert validate_builtin(doc) == []
    assert doc["metadata"]["name"] == f"{PLURAL}.imaging-ingestion.alvearie.org"
    (version,) = doc["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["storage"] is True
    assert doc["spec"]["scope"] == "Namespaced"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Phase", "STOW URL", "WADO URL", "Age"]


def test_kustomize_base_carries_the_same_crd() -> None:
    assert (REPO / "kustomize" / "base" / "crd.yaml").read_text() == OPERATOR_CRD.read_text()


def test_knative_schemas_are_present_beside_the_repository() -> None:
    assert (KNATIVE_SCHEMAS / "serving-service.yaml").is_file()
    assert ("serving.knative.dev/v1", "Service") in SCHEMAS
    assert ("sources.knative.dev/v1", "SinkBinding") in SCHEMAS


def test_seed_resource_validates() -> None:
    assert validate(make_cr(), SCHEMAS) == []


def test_schema_defaults_match_the_operators_defaults() -> None:
    minimal = {"bucketConfigName": "a", "bucketSecretName": "b", "dicomEventDrivenIngestionName": "c"}
    defaulted = apply_defaults(make_cr(minimal), CR_SCHEMA)
    assert defaulted["spec"]["stowService"] == {"concurrency": 0, "minReplicas": 0, "maxReplicas": 3}
    assert defaulted["spec"]["providerName"] == "provider"
    assert parse_spec(defaulted["spec"]) == parse_spec(minimal)
    with_catalog = apply_defaults(make_cr({**minimal, "catalogDatabaseSecret": {"name": "pg"}}), CR_SCHEMA)
    assert with_catalog["spec"]["catalogDatabaseSecret"] == {"name": "pg", "key": "CATALOG_URL"}


def test_every_optional_field_validates() -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec.update(
        {
            "imagePullSecrets": [{"name": "regcred"}],
            "catalogDatabaseSecret": {"name": "pg", "key": "dsn"},
            "queryEndpoint": "http://core-event-processor.imaging.svc.cluster.local/query",
        }
    )
    spec["stowService"].update(
        {
            "image": "registry.test/stow@sha256:" + "0" * 64,
            "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "x"}],
            "resources": {"requests": {"cpu": "250m", "memory": 268435456}, "limits": {"memory": "1Gi"}},
        }
    )
    assert validate(make_cr(spec), SCHEMAS) == []


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"stowService": {"minReplicas": -1}}, "minReplicas"),
        ({"wadoService": {"maxReplicas": -1}}, "maxReplicas"),
        ({"wadoService": {"concurrency": -1}}, "concurrency"),
        ({"stowService": {"imagePullPolicy": "Sometimes"}}, "imagePullPolicy"),
        ({"stowService": {"replicas": 3}}, "replicas"),
        ({"queryEndpoint": "ftp://x"}, "queryEndpoint"),
        ({"bucketConfigName": ""}, "bucketConfigName"),
        ({"bucketSecretNme": "typo"}, "bucketSecretNme"),
    ],
)
def test_schema_rejects_invalid_fields(patch: dict[str, Any], where: str) -> None:
    cr = make_cr()
    for key, value in patch.items():
        if isinstance(value, dict):
            cr["spec"][key] = {**cr["spec"].get(key, {}), **value}
        else:
            cr["spec"][key] = value
    errors = validate(cr, SCHEMAS)
    assert errors and any(where in e for e in errors), errors


def test_schema_requires_the_three_names() -> None:
    errors = validate(make_cr({"providerName": "p"}), SCHEMAS)
    for name in ("bucketConfigName", "bucketSecretName", "dicomEventDrivenIngestionName"):
        assert any(name in e for e in errors)


def test_cel_rule_is_the_operators_rule() -> None:
    # The API server evaluates this rule; the operator enforces the same one (tested in reconcile tests).
    rule = CR_SCHEMA["properties"]["spec"]["properties"]["stowService"]["x-kubernetes-validations"][0]["rule"]
    assert rule == "self.maxReplicas == 0 || self.maxReplicas >= self.minReplicas"


def test_status_written_by_the_operator_fits_the_status_schema() -> None:
    cr = make_cr()
    plan = reconcile(cr, Observed(bucket_config=True, bucket_secret=True, broker=True), OperatorConfig())
    cr["status"] = plan.status
    assert validate(cr, SCHEMAS) == []
    failing = reconcile(cr, Observed(), OperatorConfig())
    cr["status"] = failing.status
    assert validate(cr, SCHEMAS) == []


def test_generated_manifests_validate_against_the_knative_schemas() -> None:
    cr = make_cr()
    cr["spec"]["catalogDatabaseSecret"] = {"name": "pg"}
    cr["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    cr["spec"]["stowService"]["resources"] = {"requests": {"cpu": "1"}}
    observed = Observed(
        bucket_config=True, bucket_secret=True, broker=True, catalog_secret_keys=frozenset({"CATALOG_URL"})
    )
    plan = reconcile(cr, observed, OperatorConfig())
    assert len(plan.manifests) == 3
    for manifest in plan.manifests:
        assert validate(manifest, SCHEMAS) == [], manifest["metadata"]["name"]
