"""kopf handlers: read the cluster, call :func:`reconcile`, apply, write status.

Every handler runs the same idempotent pass. Create/update/resume react at
once; the timer repeats the pass every ``resync_seconds``, which is how a
ConfigMap, Secret or Broker created later is noticed (phase Failing recovers by
itself) and how the Knative services' URLs and readiness reach the status.
Nothing is deleted by hand: every owned object carries an ownerReference to
the custom resource, so Kubernetes' garbage collector removes them with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.kube import KubeApi, KubeApiClosed, KubeApiError
from dicomweb_operator.manifests import (
    BROKER_API,
    KNATIVE_SERVICE_API,
    SINK_BINDING_API,
    broker_name,
    sink_binding_name,
    stow_service_name,
    wado_service_name,
)
from dicomweb_operator.reconcile import PHASE_FAILING, Observed, reconcile
from dicomweb_operator.spec import GROUP, PLURAL, VERSION, InvalidSpecError, parse_spec

ANNOTATION_PREFIX = "dicomweb.imaging-ingestion.alvearie.org"
FINALIZER = f"{ANNOTATION_PREFIX}/operator"


async def observe(api: KubeApi, cr: Mapping[str, Any]) -> Observed:
    """Read everything the custom resource depends on or owns, concurrently."""
    meta = cr["metadata"]
    name, ns = meta["name"], meta["namespace"]
    try:
        spec = parse_spec(cr.get("spec") or {})
    except InvalidSpecError:
        return Observed()  # reconcile() reports the spec problems; nothing to read
    catalog = spec.catalog_database
    objects = asyncio.gather(
        api.get("v1", "ConfigMap", ns, spec.bucket_config_name),
        api.get("v1", "Secret", ns, spec.bucket_secret_name),
        api.get(BROKER_API, "Broker", ns, broker_name(spec.dicom_event_driven_ingestion_name)),
        api.get(KNATIVE_SERVICE_API, "Service", ns, stow_service_name(name)),
        api.get(KNATIVE_SERVICE_API, "Service", ns, wado_service_name(name)),
        api.get(SINK_BINDING_API, "SinkBinding", ns, sink_binding_name(name)),
    )
    keys = api.secret_keys(ns, catalog.name) if catalog is not None else _none()
    (config_map, secret, broker, stow, wado, binding), catalog_keys = await asyncio.gather(objects, keys)
    return Observed(
        bucket_config=config_map is not None,
        bucket_secret=secret is not None,
        broker=broker is not None,
        catalog_secret_keys=catalog_keys,
        stow_service=stow,
        wado_service=wado,
        sink_binding=binding,
    )


async def _none() -> frozenset[str] | None:
    return None


async def reconcile_once(
    cr: Mapping[str, Any],
    *,
    api: KubeApi,
    config: OperatorConfig,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> dict[str, Any]:
    """One full pass; returns the status to write. API errors become phase Failing, not exceptions."""
    try:
        observed = await observe(api, cr)
        plan = reconcile(cr, observed, config)
        for manifest in plan.changed:
            await api.apply(manifest)
            logger.info("Applied %s %s", manifest["kind"], manifest["metadata"]["name"])
    except KubeApiError as exc:
        logger.warning("Kubernetes API error: %s", exc)
        status = dict(cr.get("status") or {})
        status.update(phase=PHASE_FAILING, ready=False, message=f"Kubernetes API error: {exc}")
        return status
    if plan.status["phase"] == PHASE_FAILING:
        logger.warning("%s", plan.status["message"])
    return plan.status


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``current`` into ``desired`` (nulls delete map keys)."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            sub = status_patch(old, value)
            sub.update({k: None for k in old if k not in value})
            if sub:
                patch[key] = sub
        elif old != value:
            patch[key] = value
    return patch


def plain(value: Any) -> Any:
    """kopf's body views as ordinary dicts and lists."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def register(
    registry: kopf.OperatorRegistry,
    *,
    config: OperatorConfig,
    api_factory: Callable[[], KubeApi] | None = None,
) -> None:
    """Register the operator's handlers in ``registry`` (kopf's default one under ``kopf run``)."""
    make_api = api_factory or (lambda: KubeApi.from_environment(field_manager=config.field_manager))
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Keep kopf's bookkeeping in our own annotations (the status schema has no room for it).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.WARNING
        memo["api"] = make_api()

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        api = memo.get("api")
        if api is not None:
            await api.close()

    async def run(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger) -> None:
        cr = plain(body)
        try:
            async with memo["api"].reconciliation() as api:
                status = await reconcile_once(cr, api=api, config=config, logger=logger)
        except KubeApiClosed:
            return  # shutting down; the next operator start reconciles again
        changes = status_patch(cr.get("status") or {}, status)
        if changes:
            patch.status.update(changes)

    @kopf.on.resume(*resource, registry=registry, id="resume")
    @kopf.on.create(*resource, registry=registry, id="create")
    @kopf.on.update(*resource, field="spec", registry=registry, id="update")
    async def on_change(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        await run(body, patch, memo, logger)

    @kopf.timer(*resource, interval=config.resync_seconds, registry=registry, id="resync")
    async def resync(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        await run(body, patch, memo, logger)
