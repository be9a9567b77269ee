"""Every kustomize overlay renders, every object validates offline, and every reference resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_offline import _LOADER, REPO, crd_schemas, validate

from dicomweb_operator.manifests import broker_name, labels

KUSTOMIZE = REPO / "kustomize"
OVERLAYS = ["base", "overlays/dev", "overlays/knative", "overlays/production"]
ZERO_DIGEST = "sha256:" + "0" * 64


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render the overlays"
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return [doc for doc in yaml.load_all(out.stdout, Loader=_LOADER) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: kustomize(KUSTOMIZE / overlay) for overlay in OVERLAYS}


def schemas_for(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Known CRD schemas plus those of the CRDs in the rendered output itself."""
    schemas = crd_schemas()
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            for version in doc["spec"]["versions"]:
                key = (f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


# --- cross-references -------------------------------------------------------------------------


def group_of(obj: dict[str, Any]) -> str:
    return str(obj["apiVersion"]).rpartition("/")[0]


class Index:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.keys = {
            (group_of(d), d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs
        }

    def has(self, group: str, kind: str, namespace: str | None, name: str) -> bool:
        return (group, kind, namespace, name) in self.keys

    def of_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        return (d for d in self.docs if d["kind"] == kind)


def _pod_templates(index: Index, namespace: str | None) -> Iterator[dict[str, Any]]:
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for d in index.of_kind(kind):
            if d["metadata"].get("namespace") == namespace:
                yield d["spec"]["template"]


def _selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return all(pod_labels.get(k) == v for k, v in selector.items())


def reference_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every name one rendered object uses to point at another, checked against the rendered set.

    A broker named ``<edi>-broker`` also resolves when a DicomwebIngestionService in the
    namespace names DicomEventDrivenIngestion ``<edi>``: the operator binds to that broker.
    """
    index = Index(docs)
    problems: list[str] = []
    operator_brokers = {
        (d["metadata"].get("namespace"), broker_name(d["spec"]["dicomEventDrivenIngestionName"]))
        for d in index.of_kind("DicomwebIngestionService")
    }

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def broker_ok(ns: str | None, name: str) -> bool:
        return index.has("eventing.knative.dev", "Broker", ns, name) or (ns, name) in operator_brokers

    for d in docs:
        ns, name, kind = d["metadata"].get("namespace"), d["metadata"]["name"], d["kind"]
        where = f"{kind} {ns}/{name}"
        if kind == "DicomwebIngestionService":
            spec = d["spec"]
            need(index.has("", "ConfigMap", ns, spec["bucketConfigName"]), f"{where}: bucketConfigName")
            need(index.has("", "Secret", ns, spec["bucketSecretName"]), f"{where}: bucketSecretName")
            if "catalogDatabaseSecret" in spec:
                need(index.has("", "Secret", ns, spec["catalogDatabaseSecret"]["name"]), f"{where}: catalog")
        elif kind == "SinkBinding":
            subject, sink = d["spec"]["subject"], d["spec"]["sink"]["ref"]
            group = group_of(subject)
            need(
                index.has(group, subject["kind"], ns, subject["name"]), f"{where}: subject {subject['name']}"
            )
            need(broker_ok(sink.get("namespace", ns), sink["name"]), f"{where}: sink {sink['name']}")
        elif kind == "Trigger":
            need(broker_ok(ns, d["spec"]["broker"]), f"{where}: broker {d['spec']['broker']}")
            ref = d["spec"]["subscriber"]["ref"]
            group = group_of(ref)
            need(index.has(group, ref["kind"], ns, ref["name"]), f"{where}: subscriber {ref['name']}")
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            role = d["roleRef"]
            role_ns = None if role["kind"] == "ClusterRole" else ns
            need(
                index.has("rbac.authorization.k8s.io", role["kind"], role_ns, role["name"]),
                f"{where}: roleRef",
            )
            for subject in d["subjects"]:
                if subject["kind"] == "ServiceAccount":
                    need(
                        index.has("", "ServiceAccount", subject.get("namespace", ns), subject["name"]),
                        f"{where}: subject {subject.get('namespace')}/{subject['name']}",
                    )
        elif kind == "Deployment":
            pod = d["spec"]["template"]["spec"]
            need(
                _selects(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]),
                f"{where}: selector does not match its pods",
            )
            if "serviceAccountName" in pod:
                account = pod["serviceAccountName"]
                need(index.has("", "ServiceAccount", ns, account), f"{where}: serviceAccount {account}")
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    config = volume["configMap"]["name"]
                    need(index.has("", "ConfigMap", ns, config), f"{where}: configMap {config}")
                if "secret" in volume:
                    secret = volume["secret"]["secretName"]
                    need(index.has("", "Secret", ns, secret), f"{where}: secret {secret}")
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    need(index.has("", "PersistentVolumeClaim", ns, claim), f"{where}: claim {claim}")
        elif kind == "Service" and d["apiVersion"] == "v1":
            selector = d["spec"]["selector"]
            pods = [t for t in _pod_templates(index, ns) if _selects(selector, t["metadata"]["labels"])]
            need(bool(pods), f"{where}: selector matches no pods")
            ports = {p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
            for port in d["spec"]["ports"]:
                if isinstance(port.get("targetPort"), str):
                    need(port["targetPort"] in ports, f"{where}: targetPort {port['targetPort']}")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = d["spec"]["selector"] if kind == "PodDisruptionBudget" else d["spec"]["podSelector"]
            match = selector.get("matchLabels", {})
            # Either a workload rendered here, or the pods the operator creates (their labels).
            operator_pods = [labels("any", component) for component in ("stow", "wado")]
            candidates = [t["metadata"]["labels"] for t in _pod_templates(index, ns)]
            need(any(_selects(match, lbl) for lbl in candidates + operator_pods), f"{where}: selects no pods")
    return problems


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_offline(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    schemas = schemas_for(docs)
    problems = {f"{d['kind']}/{d['metadata']['name']}": validate(d, schemas) for d in docs}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    assert reference_problems(rendered[overlay]) == []


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def test_base_is_the_operator_and_nothing_else(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert kinds(rendered["base"]) == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    }


def test_operator_rbac_is_least_privilege(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (role,) = [d for d in rendered["base"] if d["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    crs = "imaging-ingestion.alvearie.org"
    expected = {
        *((crs, "dicomwebingestionservices", v) for v in ("get", "list", "watch", "patch")),
        (crs, "dicomwebingestionservices/status", "get"),
        (crs, "dicomwebingestionservices/status", "patch"),
        (crs, "dicomwebingestionservices/finalizers", "update"),
        *(("serving.knative.dev", "services", v) for v in ("get", "create", "patch")),
        *(("sources.knative.dev", "sinkbindings", v) for v in ("get", "create", "patch")),
        ("eventing.knative.dev", "brokers", "get"),
        ("", "configmaps", "get"),
        ("", "secrets", "get"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    assert granted == expected
    assert not any("*" in str(rule) for rule in role["rules"])


def test_dev_overlay_needs_no_knative_and_runs_the_embedded_server(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/dev"]
    assert all(not d["apiVersion"].endswith("knative.dev/v1") for d in docs)
    assert kinds(docs) == {"Namespace", "PersistentVolumeClaim", "Deployment", "Service"}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["dicomweb"]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]


def test_knative_overlay_carries_the_seed_example(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["overlays/knative"]
    (cr,) = [d for d in docs if d["kind"] == "DicomwebIngestionService"]
    assert cr["metadata"] == {"name": "img-ingest", "namespace": "imaging"}
    assert cr["spec"]["dicomEventDrivenIngestionName"] == "core"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert set(config["data"]) == {
        "BUCKET_HOST",
        "BUCKET_PORT",
        "BUCKET_NAME",
        "BUCKET_REGION",
        "BUCKET_SUBREGION",
    }
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"][0]["namespace"] == "imaging"


def test_production_overlay_pins_digests_and_adds_budgets_and_policies(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/production"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].endswith("@" + ZERO_DIGEST)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DICOMWEB_STOW_IMAGE"].endswith("@" + ZERO_DIGEST)
    assert env["DICOMWEB_WADO_IMAGE"].endswith("@" + ZERO_DIGEST)
    assert deployment["spec"]["replicas"] == 1
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"} == {
        "dicomweb-stow",
        "dicomweb-wado",
    }
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy"} == {
        "dicomweb-system",
        "imaging",
    }


# --- renaming keeps references ------------------------------------------------------------------

EVENTING_SAMPLE = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: local-broker}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: producer}
spec:
  template:
    spec:
      containers: [{image: registry.test/producer:1}]
---
apiVersion: sources.knative.dev/v1
kind: SinkBinding
metadata: {name: producer-binding}
spec:
  subject: {apiVersion: serving.knative.dev/v1, kind: Service, name: producer}
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: local-broker}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: to-producer}
spec:
  broker: local-broker
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: producer}}
"""


def write_overlay(root: Path, *, base: Path, with_sample: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "eventing.yaml").write_text(EVENTING_SAMPLE)
    # kustomize accepts only relative paths to other kustomizations.
    relative = os.path.relpath(base, root)
    resources = [relative, "eventing.yaml"] if with_sample else ["eventing.yaml"]
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namePrefix": "site-a-",
                "nameSuffix": "-v2",
                "namespace": "elsewhere",
                "resources": resources,
            }
        )
    )
    return root


def test_name_prefix_and_suffix_keep_every_reference(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path / "renamed", base=KUSTOMIZE / "overlays" / "knative", with_sample=True)
    docs = kustomize(overlay)
    by_kind = {
        (d["kind"], d["metadata"]["name"].removeprefix("site-a-").removesuffix("-v2")): d for d in docs
    }
    cr = by_kind[("DicomwebIngestionService", "img-ingest")]
    assert cr["spec"]["bucketConfigName"] == "site-a-img-ingest-s3-v2"
    assert cr["spec"]["bucketSecretName"] == "site-a-img-ingest-s3-v2"
    binding = by_kind[("SinkBinding", "producer-binding")]
    assert binding["spec"]["subject"]["name"] == "site-a-producer-v2"
    assert binding["spec"]["sink"]["ref"]["name"] == "site-a-local-broker-v2"
    trigger = by_kind[("Trigger", "to-producer")]
    assert trigger["spec"]["broker"] == "site-a-local-broker-v2"
    assert trigger["spec"]["subscriber"]["ref"]["name"] == "site-a-producer-v2"
    # The broker the operator binds to is not renamed: it follows the CR's dicomEventDrivenIngestionName.
    assert by_kind[("Trigger", "image-stored-display")]["spec"]["broker"] == "core-broker"
    assert reference_problems(docs) == []
    schemas = schemas_for(docs)
    assert [p for d in docs for p in validate(d, schemas)] == []


def test_without_the_name_reference_configuration_renaming_breaks_references(tmp_path: Path) -> None:
    # The same Knative sample without our base (and so without its kustomizeconfig.yaml):
    # kustomize renames the objects but not the references, and the checker must say so.
    docs = kustomize(write_overlay(tmp_path / "plain", base=KUSTOMIZE / "base", with_sample=False))
    problems = reference_problems(docs)
    assert any("SinkBinding" in p and "subject" in p for p in problems)
    assert any("Trigger" in p and "broker" in p for p in problems)


def test_reference_checker_catches_a_missing_configmap(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = [d for d in rendered["overlays/knative"] if d["kind"] != "ConfigMap"]
    assert any("bucketConfigName" in p for p in reference_problems(docs))


def test_validation_catches_an_unknown_knative_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["overlays/knative"]
    (ksvc,) = [d for d in docs if d["apiVersion"] == "serving.knative.dev/v1"]
    broken = {**ksvc, "spec": {**ksvc["spec"], "templat": {}}}
    assert any("templat" in p for p in validate(broken, schemas_for(docs)))


def test_the_walkthrough_shows_the_objects_the_knative_overlay_applies(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    doc = (REPO / "docs" / "deploy-kubernetes.md").read_text()
    blocks = [part.split("```")[0] for part in doc.split("```yaml\n")[1:]]
    shown = [yaml.safe_load(block) for block in blocks]
    wanted = {"ConfigMap", "DicomwebIngestionService"}
    shown_by_kind = {d["kind"]: d for d in shown if d.get("kind") in wanted}
    applied = {d["kind"]: d for d in rendered["overlays/knative"]}
    for kind in ("ConfigMap", "DicomwebIngestionService"):
        assert shown_by_kind[kind]["metadata"]["name"] == applied[kind]["metadata"]["name"]
        assert shown_by_kind[kind].get("spec", shown_by_kind[kind].get("data")) == applied[kind].get(
            "spec", applied[kind].get("data")
        )
    assert "kopf run --standalone --all-namespaces -m dicomweb_operator.main" in doc
