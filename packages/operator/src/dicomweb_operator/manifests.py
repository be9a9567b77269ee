"""Desired manifests for one ``DicomwebIngestionService``: two Knative Services and a SinkBinding.

Names follow the Alvearie imaging-ingestion operator so that this service is a
drop-in for its DicomwebIngestionService: ``<name>-stow``, ``<name>-wado``,
``<name>-stow-sink-binding``, and the event broker of a DicomEventDrivenIngestion
``<edi>`` is ``<edi>-broker`` (its model/event_broker.go ``GetEventBrokerName``);
its event processor, which serves the ``/query`` endpoint, is ``<edi>-event-processor``.
"""

from __future__ import annotations

from typing import Any

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.spec import API_VERSION, KIND, IngestionSpec, ServiceSpec

KNATIVE_SERVICE_API = "serving.knative.dev/v1"
SINK_BINDING_API = "sources.knative.dev/v1"
BROKER_API = "eventing.knative.dev/v1"

MIN_SCALE = "autoscaling.knative.dev/min-scale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"

BUCKET_CONFIG_PATH = "/etc/bucket/config"
BUCKET_SECRET_PATH = "/etc/bucket/secret"
CONTAINER_PORT = 8080


def stow_service_name(name: str) -> str:
    return f"{name}-stow"


def wado_service_name(name: str) -> str:
    return f"{name}-wado"


def sink_binding_name(name: str) -> str:
    return f"{name}-stow-sink-binding"


def broker_name(dicom_event_driven_ingestion: str) -> str:
    return f"{dicom_event_driven_ingestion}-broker"


def cluster_local_host(service: str, namespace: str, cluster_domain: str) -> str:
    return f"{service}.{namespace}.svc.{cluster_domain}"


def event_processor_query_endpoint(edi: str, namespace: str, cluster_domain: str) -> str:
    return f"http://{cluster_local_host(f'{edi}-event-processor', namespace, cluster_domain)}/query"


def owner_reference(cr: dict[str, Any]) -> dict[str, Any]:
    meta = cr["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"dicomweb-{component}",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "dicomweb-ingestion",
        "app.kubernetes.io/managed-by": "dicomweb-operator",
    }


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def knative_service(
    cr: dict[str, Any],
    spec: IngestionSpec,
    *,
    component: str,
    env: list[dict[str, Any]],
    config: OperatorConfig,
) -> dict[str, Any]:
    """One autoscaled Knative Service running ``dicomweb <component>-svc``.

    Every field the operator manages is always present (empty lists rather than
    absent keys) so that a JSON merge patch with this object also removes what a
    spec change took away.
    """
    name = cr["metadata"]["name"]
    service: ServiceSpec = spec.stow if component == "stow" else spec.wado
    default_image = config.stow_image if component == "stow" else config.wado_image
    pull_secrets = list(dict.fromkeys(spec.image_pull_secrets + service.image_pull_secrets))
    container: dict[str, Any] = {
        "name": component,
        "image": service.image or default_image,
        "imagePullPolicy": service.image_pull_policy or config.image_pull_policy,
        # Knative sets $PORT from this port; the services listen on $PORT.
        "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
        "env": env,
        "volumeMounts": [
            {"name": "bucket-config", "mountPath": BUCKET_CONFIG_PATH, "readOnly": True},
            {"name": "bucket-secret", "mountPath": BUCKET_SECRET_PATH, "readOnly": True},
        ],
        # No port: Knative probes the serving port itself.
        "readinessProbe": {"httpGet": {"path": "/readyz"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {section: dict(values) for section, values in service.resources.items()},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": KNATIVE_SERVICE_API,
        "kind": "Service",
        "metadata": {
            "name": f"{name}-{component}",
            "namespace": cr["metadata"]["namespace"],
            "labels": labels(name, component),
            "ownerReferences": [owner_reference(cr)],
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels(name, component),
                    "annotations": {
                        MIN_SCALE: str(service.min_replicas),
                        MAX_SCALE: str(service.max_replicas),
                    },
                },
                "spec": {
                    "containerConcurrency": service.concurrency,
                    "imagePullSecrets": [{"name": secret} for secret in pull_secrets],
                    "containers": [container],
                    "volumes": [
                        {"name": "bucket-config", "configMap": {"name": spec.bucket_config_name}},
                        {"name": "bucket-secret", "secret": {"secretName": spec.bucket_secret_name}},
                    ],
                },
            },
        },
    }


def common_env(spec: IngestionSpec) -> list[dict[str, Any]]:
    env = [
        _env("BUCKET_CONFIG_PATH", BUCKET_CONFIG_PATH),
        _env("BUCKET_SECRET_PATH", BUCKET_SECRET_PATH),
        _env("PROVIDER_NAME", spec.provider_name),
    ]
    if spec.catalog_database is not None:
        ref = spec.catalog_database
        env.append({"name": "CATALOG_URL", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    # The services refuse to listen beyond loopback without access control unless told so on
    # purpose: without spec.auth, AUTH_MODE=none says the cluster (mesh, ingress) guards them.
    auth = spec.auth.env() if spec.auth is not None else [("AUTH_MODE", "none")]
    env.extend(_env(name, value) for name, value in auth)
    return env


def sink_binding(cr: dict[str, Any], spec: IngestionSpec) -> dict[str, Any]:
    """Injects ``K_SINK`` (the broker's address) into the stow service's pods."""
    name = cr["metadata"]["name"]
    return {
        "apiVersion": SINK_BINDING_API,
        "kind": "SinkBinding",
        "metadata": {
            "name": sink_binding_name(name),
            "namespace": cr["metadata"]["namespace"],
            "labels": labels(name, "stow"),
            "ownerReferences": [owner_reference(cr)],
        },
        "spec": {
            "subject": {
                "apiVersion": KNATIVE_SERVICE_API,
                "kind": "Service",
                "name": stow_service_name(name),
            },
            "sink": {
                "ref": {
                    "apiVersion": BROKER_API,
                    "kind": "Broker",
                    "name": broker_name(spec.dicom_event_driven_ingestion_name),
                    "namespace": cr["metadata"]["namespace"],
                },
            },
        },
    }
