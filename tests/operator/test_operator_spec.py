"""Parsing the custom resource's spec and the operator's own settings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from operator_samples import SEED_SPEC

from dicomweb_operator.config import ConfigError, OperatorConfig
from dicomweb_operator.spec import InvalidSpecError, ServiceSpec, parse_spec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
spec_keys = st.sampled_from(
    [
        "bucketConfigName",
        "bucketSecretName",
        "dicomEventDrivenIngestionName",
        "providerName",
        "stowService",
        "wadoService",
        "imagePullSecrets",
        "catalogDatabaseSecret",
        "queryEndpoint",
    ]
)


def test_seed_spec_parses_to_its_values() -> None:
    spec = parse_spec(SEED_SPEC)
    assert spec.bucket_config_name == "img-ingest-s3"
    assert spec.bucket_secret_name == "img-ingest-s3"
    assert spec.dicom_event_driven_ingestion_name == "core"
    assert spec.provider_name == "provider"
    assert spec.stow == spec.wado == ServiceSpec(concurrency=0, min_replicas=0, max_replicas=3)
    assert spec.catalog_database is None and spec.query_endpoint is None


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_spec({"stowService": {"minReplicas": -1}})
    problems = info.value.problems
    assert len(problems) == 4
    assert any("bucketConfigName" in p for p in problems)
    assert any("stowService.minReplicas" in p for p in problems)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(spec_keys, json_values, max_size=6))
def test_any_json_spec_either_parses_or_raises_invalid_spec(raw: dict[str, Any]) -> None:
    try:
        spec = parse_spec(raw)
    except InvalidSpecError as exc:
        assert exc.problems
    else:
        assert spec.stow.min_replicas >= 0 and spec.wado.concurrency >= 0
        for service in (spec.stow, spec.wado):
            assert service.max_replicas == 0 or service.max_replicas >= service.min_replicas


def test_operator_config_from_env() -> None:
    config = OperatorConfig.from_env(
        {
            "DICOMWEB_STOW_IMAGE": "r/stow:2",
            "DICOMWEB_WADO_IMAGE": "r/wado:2",
            "DICOMWEB_IMAGE_PULL_POLICY": "Always",
            "DICOMWEB_RESYNC_SECONDS": "5",
            "DICOMWEB_CLUSTER_DOMAIN": "corp.local",
        }
    )
    assert config == OperatorConfig(
        stow_image="r/stow:2",
        wado_image="r/wado:2",
        image_pull_policy="Always",
        resync_seconds=5.0,
        cluster_domain="corp.local",
    )
    assert OperatorConfig.from_env({}) == OperatorConfig()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DICOMWEB_RESYNC_SECONDS": "soon"}, "DICOMWEB_RESYNC_SECONDS"),
        ({"DICOMWEB_RESYNC_SECONDS": "0"}, "DICOMWEB_RESYNC_SECONDS"),
        ({"DICOMWEB_IMAGE_PULL_POLICY": "Daily"}, "DICOMWEB_IMAGE_PULL_POLICY"),
    ],
)
def test_bad_operator_settings_fail_with_the_variable_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OperatorConfig.from_env(env)
