"""The pure reconciliation: custom resource + what exists -> manifests and status."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from operator_samples import make_cr

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.reconcile import Observed, is_subset, knative_ready, reconcile

ALL_DEPS = Observed(bucket_config=True, bucket_secret=True, broker=True)


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    container = service["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def by_name(plan_manifests: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in plan_manifests}


def ready(manifest: dict[str, Any], *, url: str | None = None, address: str | None = None) -> dict[str, Any]:
    """What Knative would store: our manifest, defaults added, status Ready."""
    obj = copy.deepcopy(manifest)
    obj["metadata"]["generation"] = 1
    obj["metadata"]["annotations"] = {"serving.knative.dev/creator": "system:serviceaccount:x"}
    if obj["kind"] == "Service":
        spec = obj["spec"]["template"]["spec"]
        spec["timeoutSeconds"] = 300
        spec["containers"][0]["readinessProbe"]["successThreshold"] = 1
        spec["containers"][0]["env"].append({"name": "K_SINK", "value": "http://broker"})
        obj["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]
    status: dict[str, Any] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    if url:
        status["url"] = url
    if address:
        status["address"] = {"url": address}
    obj["status"] = status
    return obj


def converged(cr: dict[str, Any], config: OperatorConfig) -> Observed:
    """Run reconcile until the cluster (simulated) holds what it asks for, every Knative object Ready."""
    observed = ALL_DEPS
    for _ in range(3):
        plan = reconcile(cr, observed, config)
        objs = by_name(plan.manifests)
        name = cr["metadata"]["name"]
        ns = cr["metadata"]["namespace"]
        observed = Observed(
            bucket_config=True,
            bucket_secret=True,
            broker=True,
            catalog_secret_keys=observed.catalog_secret_keys,
            stow_service=ready(
                objs[f"{name}-stow"],
                url=f"https://{name}-stow.{ns}.example.com",
                address=f"http://{name}-stow.{ns}.svc.cluster.local",
            ),
            wado_service=ready(
                objs[f"{name}-wado"],
                url=f"https://{name}-wado.{ns}.example.com",
                address=f"http://{name}-wado.{ns}.svc.cluster.local",
            ),
            sink_binding=ready(objs[f"{name}-stow-sink-binding"]),
        )
    return observed


def test_seed_example_produces_two_knative_services_and_a_sink_binding(config: OperatorConfig) -> None:
    plan = reconcile(make_cr(), ALL_DEPS, config)
    objs = by_name(plan.manifests)
    assert set(objs) == {"img-ingest-stow", "img-ingest-wado", "img-ingest-stow-sink-binding"}
    assert plan.changed == plan.manifests
    for svc in ("img-ingest-stow", "img-ingest-wado"):
        assert objs[svc]["apiVersion"] == "serving.knative.dev/v1"
        assert objs[svc]["kind"] == "Service"
        assert objs[svc]["metadata"]["namespace"] == "imaging"
    assert plan.status["phase"] == "Initializing"
    assert plan.status["ready"] is False


def test_autoscaling_annotations_and_concurrency_come_from_the_spec(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["stowService"] = {"concurrency": 10, "minReplicas": 1, "maxReplicas": 7}
    cr["spec"]["wadoService"] = {"concurrency": 50, "minReplicas": 2, "maxReplicas": 0}
    objs = by_name(reconcile(cr, ALL_DEPS, config).manifests)
    stow = objs["img-ingest-stow"]["spec"]["template"]
    wado = objs["img-ingest-wado"]["spec"]["template"]
    assert stow["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "7",
    }
    assert stow["spec"]["containerConcurrency"] == 10
    assert wado["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "2",
        "autoscaling.knative.dev/max-scale": "0",
    }
    assert wado["spec"]["containerConcurrency"] == 50


def test_defaults_fill_in_an_almost_empty_spec(config: OperatorConfig) -> None:
    cr = make_cr(
        {"bucketConfigName": "cfg", "bucketSecretName": "sec", "dicomEventDrivenIngestionName": "core"}
    )
    objs = by_name(reconcile(cr, ALL_DEPS, config).manifests)
    stow = objs["img-ingest-stow"]["spec"]["template"]
    container = stow["spec"]["containers"][0]
    assert stow["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "3",
    }
    assert stow["spec"]["containerConcurrency"] == 0
    assert container["image"] == "registry.test/stow:1"
    assert container["imagePullPolicy"] == "IfNotPresent"
    wado_container = objs["img-ingest-wado"]["spec"]["template"]["spec"]["containers"][0]
    assert wado_container["image"] == "registry.test/wado:1"
    assert env_of(objs["img-ingest-stow"])["PROVIDER_NAME"] == "provider"
    assert container["resources"] == {}
    assert stow["spec"]["imagePullSecrets"] == []


def test_probes_port_and_security_context(config: OperatorConfig) -> None:
    for svc in by_name(reconcile(make_cr(), ALL_DEPS, config).manifests).values():
        if svc["kind"] != "Service":
            continue
        container = svc["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_bucket_configmap_and_secret_are_mounted_as_files(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["bucketConfigName"] = "bucket-cfg"
    cr["spec"]["bucketSecretName"] = "bucket-creds"
    for name in ("img-ingest-stow", "img-ingest-wado"):
        svc = by_name(reconcile(cr, ALL_DEPS, config).manifests)[name]
        pod = svc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["bucket-config"]["configMap"] == {"name": "bucket-cfg"}
        assert volumes["bucket-secret"]["secret"] == {"secretName": "bucket-creds"}
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        env = env_of(svc)
        assert mounts["bucket-config"] == env["BUCKET_CONFIG_PATH"] == "/etc/bucket/config"
        assert mounts["bucket-secret"] == env["BUCKET_SECRET_PATH"] == "/etc/bucket/secret"


def test_stow_env_names_its_event_source_and_the_wado_endpoints(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["providerName"] = "site-a"
    env = env_of(by_name(reconcile(cr, ALL_DEPS, config).manifests)["img-ingest-stow"])
    assert env["PROVIDER_NAME"] == "site-a"
    assert env["EVENT_SOURCE"] == "img-ingest-stow.imaging.svc.cluster.local"
    assert env["WADO_INTERNAL_ENDPOINT"] == "http://img-ingest-wado.imaging.svc.cluster.local/wado-rs"
    # No public URL known yet: the cluster-local one stands in.
    assert env["WADO_EXTERNAL_ENDPOINT"] == "http://img-ingest-wado.imaging.svc.cluster.local/wado-rs"
    assert "QUERY_ENDPOINT" not in env
    assert "K_SINK" not in env  # the SinkBinding injects it


def test_external_wado_endpoint_follows_the_knative_status(config: OperatorConfig) -> None:
    cr = make_cr()
    observed = converged(cr, config)
    plan = reconcile(cr, observed, config)
    env = env_of(by_name(plan.manifests)["img-ingest-stow"])
    assert env["WADO_EXTERNAL_ENDPOINT"] == "https://img-ingest-wado.imaging.example.com/wado-rs"
    assert env["WADO_INTERNAL_ENDPOINT"] == "http://img-ingest-wado.imaging.svc.cluster.local/wado-rs"


def test_cluster_domain_is_configurable() -> None:
    config = OperatorConfig(cluster_domain="corp.internal")
    env = env_of(by_name(reconcile(make_cr(), ALL_DEPS, config).manifests)["img-ingest-stow"])
    assert env["EVENT_SOURCE"] == "img-ingest-stow.imaging.svc.corp.internal"


def test_wado_queries_the_alvearie_event_processor_by_default(config: OperatorConfig) -> None:
    env = env_of(by_name(reconcile(make_cr(), ALL_DEPS, config).manifests)["img-ingest-wado"])
    assert env["QUERY_ENDPOINT"] == "http://core-event-processor.imaging.svc.cluster.local/query"
    assert "CATALOG_URL" not in env


def test_query_endpoint_override(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["queryEndpoint"] = "http://elsewhere.example:8080/query"
    env = env_of(by_name(reconcile(cr, ALL_DEPS, config).manifests)["img-ingest-wado"])
    assert env["QUERY_ENDPOINT"] == "http://elsewhere.example:8080/query"


def test_catalog_database_secret_becomes_catalog_url_on_both_services(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["catalogDatabaseSecret"] = {"name": "catalog-db"}
    observed = Observed(
        bucket_config=True, bucket_secret=True, broker=True, catalog_secret_keys=frozenset({"CATALOG_URL"})
    )
    objs = by_name(reconcile(cr, observed, config).manifests)
    for name in ("img-ingest-stow", "img-ingest-wado"):
        expected = {"secretKeyRef": {"name": "catalog-db", "key": "CATALOG_URL"}}
        assert env_of(objs[name])["CATALOG_URL"] == expected
    assert "QUERY_ENDPOINT" not in env_of(objs["img-ingest-wado"])


def test_catalog_secret_key_is_configurable(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["catalogDatabaseSecret"] = {"name": "pg", "key": "dsn"}
    observed = Observed(
        bucket_config=True, bucket_secret=True, broker=True, catalog_secret_keys=frozenset({"dsn"})
    )
    env = env_of(by_name(reconcile(cr, observed, config).manifests)["img-ingest-stow"])
    assert env["CATALOG_URL"] == {"secretKeyRef": {"name": "pg", "key": "dsn"}}


def test_sink_binding_binds_the_stow_service_to_the_broker_of_the_ingestion(config: OperatorConfig) -> None:
    binding = by_name(reconcile(make_cr(), ALL_DEPS, config).manifests)["img-ingest-stow-sink-binding"]
    assert binding["apiVersion"] == "sources.knative.dev/v1"
    assert binding["spec"]["subject"] == {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "name": "img-ingest-stow",
    }
    assert binding["spec"]["sink"]["ref"] == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "name": "core-broker",
        "namespace": "imaging",
    }


def test_every_object_is_owned_by_the_custom_resource(config: OperatorConfig) -> None:
    cr = make_cr()
    for obj in reconcile(cr, ALL_DEPS, config).manifests:
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "imaging-ingestion.alvearie.org/v1alpha1",
                "kind": "DicomwebIngestionService",
                "name": "img-ingest",
                "uid": cr["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "img-ingest"


def test_images_pull_policy_pull_secrets_and_resources_per_service(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["imagePullSecrets"] = [{"name": "shared"}]
    cr["spec"]["stowService"].update(
        {
            "image": "registry.test/custom-stow@sha256:" + "a" * 64,
            "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "stow-only"}, {"name": "shared"}],
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        }
    )
    objs = by_name(reconcile(cr, ALL_DEPS, config).manifests)
    stow = objs["img-ingest-stow"]["spec"]["template"]["spec"]
    wado = objs["img-ingest-wado"]["spec"]["template"]["spec"]
    assert stow["containers"][0]["image"].startswith("registry.test/custom-stow@sha256:")
    assert stow["containers"][0]["imagePullPolicy"] == "Always"
    assert stow["imagePullSecrets"] == [{"name": "shared"}, {"name": "stow-only"}]
    assert stow["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert wado["containers"][0]["image"] == "registry.test/wado:1"
    assert wado["imagePullSecrets"] == [{"name": "shared"}]
    assert wado["containers"][0]["resources"] == {}


@pytest.mark.parametrize(
    ("observed", "named"),
    [
        (Observed(bucket_secret=True, broker=True), "ConfigMap 'img-ingest-s3'"),
        (Observed(bucket_config=True, broker=True), "Secret 'img-ingest-s3'"),
        (Observed(bucket_config=True, bucket_secret=True), "Broker 'core-broker'"),
    ],
)
def test_missing_dependency_fails_and_names_it(
    config: OperatorConfig, observed: Observed, named: str
) -> None:
    plan = reconcile(make_cr(), observed, config)
    assert plan.manifests == () and plan.changed == ()
    assert plan.status["phase"] == "Failing"
    assert plan.status["ready"] is False
    assert named in plan.status["message"]


def test_all_missing_dependencies_are_named_at_once(config: OperatorConfig) -> None:
    message = reconcile(make_cr(), Observed(), config).status["message"]
    assert "ConfigMap 'img-ingest-s3'" in message
    assert "Secret 'img-ingest-s3'" in message
    assert "DicomEventDrivenIngestion 'core'" in message


def test_missing_catalog_secret_or_key_fails(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["catalogDatabaseSecret"] = {"name": "catalog-db"}
    plan = reconcile(cr, ALL_DEPS, config)
    assert plan.status["phase"] == "Failing"
    assert "Secret 'catalog-db'" in plan.status["message"]
    observed = Observed(
        bucket_config=True, bucket_secret=True, broker=True, catalog_secret_keys=frozenset({"other"})
    )
    plan = reconcile(cr, observed, config)
    assert plan.status["phase"] == "Failing"
    assert "no key 'CATALOG_URL'" in plan.status["message"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"stowService": {"minReplicas": -1}}, "spec.stowService.minReplicas"),
        ({"wadoService": {"maxReplicas": -2}}, "spec.wadoService.maxReplicas"),
        ({"stowService": {"concurrency": -5}}, "spec.stowService.concurrency"),
        ({"wadoService": {"minReplicas": 4, "maxReplicas": 2}}, "spec.wadoService.maxReplicas"),
        ({"stowService": {"minReplicas": True}}, "spec.stowService.minReplicas"),
        ({"stowService": {"concurrency": "10"}}, "spec.stowService.concurrency"),
        ({"bucketConfigName": ""}, "spec.bucketConfigName"),
        ({"bucketSecretName": "Not_A_Name"}, "spec.bucketSecretName"),
        ({"dicomEventDrivenIngestionName": None}, "spec.dicomEventDrivenIngestionName"),
        ({"providerName": ""}, "spec.providerName"),
        ({"wadoService": {"imagePullPolicy": "Sometimes"}}, "spec.wadoService.imagePullPolicy"),
        ({"wadoService": {"image": " "}}, "spec.wadoService.image"),
        ({"stowService": {"resources": {"requsts": {"cpu": "1"}}}}, "spec.stowService.resources.requsts"),
        ({"stowService": {"imagePullSecrets": [{"nom": "x"}]}}, "spec.stowService.imagePullSecrets[0].name"),
        ({"queryEndpoint": "ftp://x"}, "spec.queryEndpoint"),
        ({"catalogDatabaseSecret": {"key": "CATALOG_URL"}}, "spec.catalogDatabaseSecret.name"),
        ({"stowService": "fast"}, "spec.stowService"),
    ],
)
def test_invalid_spec_fails_and_names_the_field(
    config: OperatorConfig, patch: dict[str, Any], field: str
) -> None:
    cr = make_cr()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(cr["spec"].get(key), dict):
            cr["spec"][key].update(value)
        else:
            cr["spec"][key] = value
    plan = reconcile(cr, ALL_DEPS, config)
    assert plan.manifests == ()
    assert plan.status["phase"] == "Failing"
    assert plan.status["message"].startswith("Invalid spec:")
    assert field in plan.status["message"]


def test_max_replicas_zero_means_unbounded_and_is_valid_with_any_min(config: OperatorConfig) -> None:
    cr = make_cr()
    cr["spec"]["stowService"] = {"minReplicas": 5, "maxReplicas": 0}
    assert reconcile(cr, ALL_DEPS, config).status["phase"] == "Initializing"


def test_converged_cluster_is_ready_with_urls_and_nothing_to_change(config: OperatorConfig) -> None:
    cr = make_cr()
    plan = reconcile(cr, converged(cr, config), config)
    assert plan.changed == ()
    status = plan.status
    assert status["phase"] == "Ready"
    assert status["ready"] is True
    assert status["stowUrl"] == "https://img-ingest-stow.imaging.example.com/stow-rs"
    assert status["wadoUrl"] == "https://img-ingest-wado.imaging.example.com/wado-rs"
    assert status["wadoServiceInternalEndpoint"] == "http://img-ingest-wado.imaging.svc.cluster.local"
    assert status["wadoServiceExternalEndpoint"] == "https://img-ingest-wado.imaging.example.com"
    assert status["observedGeneration"] == 1
    assert status["secondaryResources"] == {
        "ConfigMap": ["img-ingest-s3"],
        "Secret": ["img-ingest-s3"],
        "Broker": ["core-broker"],
        "Service": ["img-ingest-stow", "img-ingest-wado"],
        "SinkBinding": ["img-ingest-stow-sink-binding"],
    }


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["stowService"].update(maxReplicas=9),
        lambda s: s["wadoService"].update(minReplicas=1),
        lambda s: s["stowService"].update(concurrency=4),
        lambda s: s["wadoService"].update(image="registry.test/wado:2"),
        lambda s: s.update(providerName="other"),
        lambda s: s.update(bucketSecretName="rotated"),
    ],
)
def test_spec_change_updates_the_services_in_place(config: OperatorConfig, change: Any) -> None:
    cr = make_cr()
    observed = converged(cr, config)
    change(cr["spec"])
    cr["metadata"]["generation"] = 2
    plan = reconcile(cr, observed, config)
    assert plan.changed, "a spec change must patch at least one object"
    assert {m["metadata"]["name"] for m in plan.changed} <= {"img-ingest-stow", "img-ingest-wado"}
    assert plan.status["phase"] == "Reconciling"
    assert "to be updated" in plan.status["message"]


@pytest.mark.parametrize(
    "removal",
    [
        lambda s: s.pop("imagePullSecrets"),
        lambda s: s["stowService"].pop("resources"),
        lambda s: s.pop("queryEndpoint"),
    ],
)
def test_removing_a_field_is_a_change_too(config: OperatorConfig, removal: Any) -> None:
    cr = make_cr()
    cr["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    cr["spec"]["stowService"]["resources"] = {"limits": {"memory": "1Gi"}}
    cr["spec"]["queryEndpoint"] = "http://q.example/query"
    observed = converged(cr, config)
    assert reconcile(cr, observed, config).changed == ()
    removal(cr["spec"])
    assert reconcile(cr, observed, config).changed


def test_services_not_ready_yet_give_reconciling_with_knatives_reason(config: OperatorConfig) -> None:
    cr = make_cr()
    observed = converged(cr, config)
    wado = copy.deepcopy(dict(observed.wado_service or {}))
    wado["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "message": "Revision failed: ImagePullBackOff"}
    ]
    plan = reconcile(cr, Observed(**{**observed.__dict__, "wado_service": wado}), config)
    assert plan.status["phase"] == "Reconciling"
    assert "ImagePullBackOff" in plan.status["message"]
    assert plan.status["ready"] is False


def test_a_change_not_yet_observed_by_knative_is_not_ready() -> None:
    obj = {
        "metadata": {"generation": 3},
        "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert knative_ready(obj)[0] is False
    obj["status"]["observedGeneration"] = 3
    assert knative_ready(obj) == (True, "")
    assert knative_ready(None)[0] is False
    assert knative_ready({"status": {}})[0] is False


def test_dependency_lost_after_ready_fails_but_leaves_objects_alone(config: OperatorConfig) -> None:
    cr = make_cr()
    observed = converged(cr, config)
    plan = reconcile(cr, Observed(**{**observed.__dict__, "bucket_secret": False}), config)
    assert plan.status["phase"] == "Failing"
    assert plan.changed == ()
    # The URLs that exist are still reported.
    assert plan.status["stowUrl"] == "https://img-ingest-stow.imaging.example.com/stow-rs"


def test_reconcile_does_not_mutate_its_input(config: OperatorConfig) -> None:
    cr = make_cr()
    before = copy.deepcopy(cr)
    observed = converged(cr, config)
    reconcile(cr, observed, config)
    assert cr == before


def test_is_subset_rules() -> None:
    assert is_subset({"a": 1}, {"a": 1, "b": 2})
    assert not is_subset({"a": 1}, {"a": 2})
    assert is_subset({"a": []}, {})
    assert not is_subset({"a": {}}, {"a": {"x": 1}})
    env = [{"name": "A", "value": "1"}]
    assert is_subset(env, [*env, {"name": "K_SINK", "value": "x"}])
    assert not is_subset([{"name": "A"}], [{"name": "A"}, {"name": "B"}])
    assert not is_subset([1, 2], [1])
    assert not is_subset({"a": {"b": 1}}, {"a": "x"})


def test_status_patch_sets_changes_and_deletes_stale_map_keys() -> None:
    from dicomweb_operator.handlers import status_patch

    current = {
        "phase": "Ready",
        "ready": True,
        "secondaryResources": {"Service": ["a"], "SinkBinding": ["b"]},
    }
    desired = {"phase": "Failing", "ready": False, "secondaryResources": {"Service": ["a"]}}
    assert status_patch(current, desired) == {
        "phase": "Failing",
        "ready": False,
        "secondaryResources": {"SinkBinding": None},
    }
    assert status_patch(desired, desired) == {}
