"""Reconciliation as a pure function: custom resource + what exists -> manifests + status.

No I/O here. The kopf handlers read the cluster into an :class:`Observed`, call
:func:`reconcile`, apply ``plan.changed`` and write ``plan.status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.manifests import (
    broker_name,
    cluster_local_host,
    common_env,
    event_processor_query_endpoint,
    knative_service,
    sink_binding,
    sink_binding_name,
    stow_service_name,
    wado_service_name,
)
from dicomweb_operator.spec import IngestionSpec, InvalidSpecError, parse_spec

PHASE_INITIALIZING = "Initializing"
PHASE_RECONCILING = "Reconciling"
PHASE_READY = "Ready"
PHASE_FAILING = "Failing"


@dataclass(frozen=True)
class Observed:
    """What the handlers found in the CR's namespace (``None``: not found).

    Secrets are summarised by their data keys only: the operator never needs,
    nor keeps, their values.
    """

    bucket_config: bool = False
    bucket_secret: bool = False
    broker: bool = False
    catalog_secret_keys: frozenset[str] | None = None
    stow_service: Mapping[str, Any] | None = None
    wado_service: Mapping[str, Any] | None = None
    sink_binding: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    """``manifests``: every object the CR should own; ``changed``: those to create or patch."""

    manifests: tuple[dict[str, Any], ...]
    changed: tuple[dict[str, Any], ...]
    status: dict[str, Any] = field(default_factory=dict)


def reconcile(cr: Mapping[str, Any], observed: Observed, config: OperatorConfig) -> Plan:
    """Compute the desired manifests and the status for ``cr``.

    An invalid spec or a missing dependency (bucket ConfigMap/Secret, catalog
    Secret or its key, the broker) yields no manifests and phase ``Failing``
    with a message naming what is wrong; objects created earlier are left alone.
    """
    meta = cr["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = parse_spec(cr.get("spec") or {})
    except InvalidSpecError as exc:
        return Plan((), (), _status(cr, observed, PHASE_FAILING, f"Invalid spec: {exc}", config))

    missing = _missing_dependencies(spec, observed)
    if missing:
        message = "Waiting for " + "; ".join(missing)
        return Plan((), (), _status(cr, observed, PHASE_FAILING, message, config))

    obj = dict(cr)
    wado_internal, wado_external = _wado_endpoints(name, namespace, observed.wado_service, config)
    event_source = cluster_local_host(stow_service_name(name), namespace, config.cluster_domain)
    stow_env = [
        *common_env(spec),
        {"name": "EVENT_SOURCE", "value": event_source},
        {"name": "WADO_INTERNAL_ENDPOINT", "value": f"{wado_internal}/wado-rs"},
        # Until Knative reports the public URL, events point at the cluster-local one.
        {"name": "WADO_EXTERNAL_ENDPOINT", "value": f"{wado_external or wado_internal}/wado-rs"},
    ]
    wado_env = [
        *common_env(spec),
        {"name": "WADO_INTERNAL_ENDPOINT", "value": f"{wado_internal}/wado-rs"},
        {"name": "WADO_EXTERNAL_ENDPOINT", "value": f"{wado_external or wado_internal}/wado-rs"},
    ]
    query = _query_endpoint(spec, namespace, config)
    if query is not None:
        wado_env.append({"name": "QUERY_ENDPOINT", "value": query})

    stow = knative_service(obj, spec, component="stow", env=stow_env, config=config)
    wado = knative_service(obj, spec, component="wado", env=wado_env, config=config)
    binding = sink_binding(obj, spec)
    manifests = (stow, wado, binding)
    existing = (observed.stow_service, observed.wado_service, observed.sink_binding)
    changed = tuple(m for m, e in zip(manifests, existing, strict=True) if e is None or not is_subset(m, e))

    if all(e is None for e in existing):
        phase, message = PHASE_INITIALIZING, "Creating the stow and wado services and the sink binding"
    else:
        waiting = _not_ready(manifests, existing, changed)
        if waiting:
            phase, message = PHASE_RECONCILING, "Waiting for " + "; ".join(waiting)
        else:
            phase, message = PHASE_READY, "The stow and wado services are ready"
    return Plan(manifests, changed, _status(cr, observed, phase, message, config, spec=spec))


def _missing_dependencies(spec: IngestionSpec, observed: Observed) -> list[str]:
    missing = []
    if not observed.bucket_config:
        missing.append(f"ConfigMap {spec.bucket_config_name!r} (spec.bucketConfigName) not found")
    if not observed.bucket_secret:
        missing.append(f"Secret {spec.bucket_secret_name!r} (spec.bucketSecretName) not found")
    if spec.catalog_database is not None:
        ref = spec.catalog_database
        if observed.catalog_secret_keys is None:
            missing.append(f"Secret {ref.name!r} (spec.catalogDatabaseSecret) not found")
        elif ref.key not in observed.catalog_secret_keys:
            missing.append(f"Secret {ref.name!r} has no key {ref.key!r} (spec.catalogDatabaseSecret)")
    if not observed.broker:
        broker = broker_name(spec.dicom_event_driven_ingestion_name)
        missing.append(
            f"Broker {broker!r} of DicomEventDrivenIngestion "
            f"{spec.dicom_event_driven_ingestion_name!r} not found"
        )
    return missing


def _query_endpoint(spec: IngestionSpec, namespace: str, config: OperatorConfig) -> str | None:
    """The remote catalog for wado: explicit, else Alvearie's event processor unless a database is given."""
    if spec.query_endpoint:
        return spec.query_endpoint
    if spec.catalog_database is not None:
        return None
    edi = spec.dicom_event_driven_ingestion_name
    return event_processor_query_endpoint(edi, namespace, config.cluster_domain)


def _wado_endpoints(
    name: str, namespace: str, wado: Mapping[str, Any] | None, config: OperatorConfig
) -> tuple[str, str]:
    """(internal, external) base URLs of the wado service; external is "" until Knative reports it."""
    status = (wado or {}).get("status") or {}
    internal = ((status.get("address") or {}).get("url")) or (
        f"http://{cluster_local_host(wado_service_name(name), namespace, config.cluster_domain)}"
    )
    return internal.rstrip("/"), str(status.get("url") or "").rstrip("/")


def knative_ready(obj: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether a Knative object is Ready for its current generation, and why not."""
    if obj is None:
        return False, "not created yet"
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed_generation = status.get("observedGeneration")
    if generation is not None and observed_generation is not None and observed_generation < generation:
        return False, "its latest change is not rolled out yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, ""
            return False, condition.get("message") or condition.get("reason") or "not ready"
    return False, "no Ready condition yet"


def _not_ready(
    manifests: tuple[dict[str, Any], ...],
    existing: tuple[Mapping[str, Any] | None, ...],
    changed: tuple[dict[str, Any], ...],
) -> list[str]:
    waiting = []
    for manifest, current in zip(manifests, existing, strict=True):
        label = f"{manifest['kind']} {manifest['metadata']['name']!r}"
        if any(manifest is c for c in changed):
            waiting.append(f"{label} to be updated")
            continue
        ready, why = knative_ready(current)
        if not ready:
            waiting.append(f"{label}: {why}")
    return waiting


def _status(
    cr: Mapping[str, Any],
    observed: Observed,
    phase: str,
    message: str,
    config: OperatorConfig,
    *,
    spec: IngestionSpec | None = None,
) -> dict[str, Any]:
    """The full status; every key is always written so a merge patch clears stale values."""
    meta = cr["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    wado_internal, wado_external = _wado_endpoints(name, namespace, observed.wado_service, config)
    stow_url = str(((observed.stow_service or {}).get("status") or {}).get("url") or "").rstrip("/")
    return {
        "phase": phase,
        "message": message,
        "ready": phase == PHASE_READY,
        "observedGeneration": meta.get("generation", 0),
        "secondaryResources": _secondary_resources(name, observed, spec),
        "stowUrl": f"{stow_url}/stow-rs" if stow_url else "",
        "wadoUrl": f"{wado_external}/wado-rs" if wado_external else "",
        "wadoServiceInternalEndpoint": wado_internal if observed.wado_service is not None else "",
        "wadoServiceExternalEndpoint": wado_external,
    }


def _secondary_resources(name: str, observed: Observed, spec: IngestionSpec | None) -> dict[str, list[str]]:
    """Kind -> names of the objects this CR uses or owns that exist (Alvearie's status shape)."""
    found: dict[str, list[str]] = {}

    def add(kind: str, item: str) -> None:
        found.setdefault(kind, [])
        if item not in found[kind]:
            found[kind].append(item)

    if spec is not None:
        if observed.bucket_config:
            add("ConfigMap", spec.bucket_config_name)
        if observed.bucket_secret:
            add("Secret", spec.bucket_secret_name)
        if spec.catalog_database is not None and observed.catalog_secret_keys is not None:
            add("Secret", spec.catalog_database.name)
        if observed.broker:
            add("Broker", broker_name(spec.dicom_event_driven_ingestion_name))
    if observed.stow_service is not None:
        add("Service", stow_service_name(name))
    if observed.wado_service is not None:
        add("Service", wado_service_name(name))
    if observed.sink_binding is not None:
        add("SinkBinding", sink_binding_name(name))
    return found


# Env vars the SinkBinding webhook adds to the stow container; not ours to remove.
_INJECTED_ENV = frozenset({"K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS"})


def is_subset(desired: Any, actual: Any) -> bool:
    """Whether ``actual`` already holds everything ``desired`` says.

    Extra map keys in ``actual`` are fine (Knative's webhooks add defaults), and
    so are the env vars a SinkBinding injects. Lists must otherwise match
    element by element, so a removed env var or pull secret counts as a change.
    An empty list or map in ``desired`` matches an absent or empty one, because
    the API server drops empty values.
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        if not desired:
            return not actual
        for key, value in desired.items():
            if key not in actual:
                if value in ({}, [], None):
                    continue
                return False
            if not is_subset(value, actual[key]):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(actual, list):
            return False
        actual = [
            item for item in actual if not (isinstance(item, Mapping) and item.get("name") in _INJECTED_ENV)
        ]
        return len(actual) == len(desired) and all(
            is_subset(d, a) for d, a in zip(desired, actual, strict=True)
        )
    return bool(desired == actual)
