"""The PodMonitor in the production overlay (validated offline against the vendored Prometheus
Operator CRD) and the Grafana dashboard (every query names a metric the services export)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from dicomweb_core.observability.metrics import DICOMWEB_ROOTS, Metrics
from dicomweb_operator.manifests import CONTAINER_PORT, labels
from tests.operator.k8s_offline import REPO, crd_schemas, validate

PRODUCTION = REPO / "kustomize" / "overlays" / "production"
DASHBOARD = REPO / "dashboards" / "dicomweb.json"


def render(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render the overlays"
    out = subprocess.run([kubectl, "kustomize", path], check=True, capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_production_overlay_scrapes_every_operator_pod() -> None:
    docs = render(str(PRODUCTION))
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert validate(monitor, crd_schemas()) == []
    assert monitor["metadata"]["namespace"] == "imaging"
    selector = monitor["spec"]["selector"]["matchLabels"]
    for component in ("stow", "wado"):
        pod_labels = labels("img-ingest", component)
        assert all(pod_labels.get(k) == v for k, v in selector.items())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    # Knative names the user container's serving port "user-port".
    assert endpoint["port"] == "user-port" and endpoint["path"] == "/metrics"
    # The pods' network policy lets the monitoring namespace in, on the serving port only.
    (policy,) = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "dicomweb-services"
    ]
    scrape_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "monitoring"
            for peer in rule["from"]
        )
    ]
    assert [rule["ports"] for rule in scrape_rules] == [[{"port": CONTAINER_PORT, "protocol": "TCP"}]]


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry, DICOMWEB_ROOTS)
    names = set()
    for family in registry.collect():
        base = family.name
        names |= {base, base + "_total", base + "_bucket", base + "_count", base + "_sum"}
    # Computed at scrape time from the catalog.
    return names | {"dicomweb_outbox_pending_events", "dicomweb_outbox_oldest_pending_age_seconds"}


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    used = {name for e in exprs for name in re.findall(r"\bdicomweb_[a-z_]+", e)}
    assert used <= exported_names(), used - exported_names()
    # The families an operator looks at first are on it.
    families = {n.removesuffix("_bucket").removesuffix("_total") for n in used}
    for must in (
        "dicomweb_http_requests",
        "dicomweb_http_request_duration_seconds",
        "dicomweb_outbox_pending_events",
    ):
        assert must in families
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
