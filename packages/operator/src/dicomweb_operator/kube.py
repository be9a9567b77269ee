"""The operator's few Kubernetes API calls: get one object, create-or-patch one object.

Built on lightkube's async client, which finds its credentials like kubectl
(in-cluster service account, else ``$KUBECONFIG`` / ``~/.kube/config`` with
exec plugins). Objects go in and out as plain dicts.

Applying is "create, or JSON merge patch with the whole desired object". The
manifests list every managed field (empty lists rather than absent keys), and
merge patch replaces lists wholesale, so a patch also removes what the spec no
longer asks for without server-side apply's managed-fields bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, Secret
from lightkube.types import PatchType

from dicomweb_operator.manifests import BROKER_API, KNATIVE_SERVICE_API, SINK_BINDING_API
from dicomweb_operator.spec import GROUP, KIND, PLURAL, VERSION

# lightkube keeps generic resource classes in its own registry; defining them once
# per process at import is how its API is meant to be used.
KnativeService = create_namespaced_resource("serving.knative.dev", "v1", "Service", "services")
SinkBinding = create_namespaced_resource("sources.knative.dev", "v1", "SinkBinding", "sinkbindings")
Broker = create_namespaced_resource("eventing.knative.dev", "v1", "Broker", "brokers")
IngestionService = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

_RESOURCES: dict[tuple[str, str], Any] = {
    (KNATIVE_SERVICE_API, "Service"): KnativeService,
    (SINK_BINDING_API, "SinkBinding"): SinkBinding,
    (BROKER_API, "Broker"): Broker,
    (f"{GROUP}/{VERSION}", KIND): IngestionService,
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "Secret"): Secret,
}


class KubeApiError(Exception):
    """A Kubernetes API call failed (``status`` 0: no HTTP response at all)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@asynccontextmanager
async def _api_errors(what: str) -> AsyncIterator[None]:
    # lightkube raises ApiError (an httpx2 HTTPStatusError) only for responses typed exactly
    # "application/json"; catch the base class so every HTTP error looks the same.
    try:
        yield
    except httpx2.HTTPStatusError as exc:
        code = exc.response.status_code
        raise KubeApiError(f"{what}: HTTP {code} {_reason(exc.response)}", status=code) from exc
    except httpx2.HTTPError as exc:
        raise KubeApiError(f"{what}: {exc}") from exc


def _reason(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase


class KubeApiClosed(Exception):
    """The client is closing: the operator is shutting down, start no new reconciliation pass."""


class KubeApi:
    """A thin async facade; ``None`` means "not found" (object or whole resource type)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @asynccontextmanager
    async def reconciliation(self) -> AsyncIterator[KubeApi]:
        """Bracket one pass, so that :meth:`close` lets it finish instead of cutting it off."""
        if self._closing:
            raise KubeApiClosed()
        self._active += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @classmethod
    def from_environment(cls, *, field_manager: str) -> KubeApi:
        return cls(AsyncClient(field_manager=field_manager))

    @classmethod
    def from_server(cls, url: str, *, field_manager: str) -> KubeApi:
        """An unauthenticated client for a given API URL (a local proxy, or a test's emulator)."""
        # KubeConfig.from_server() leaves the user unset, which the client then refuses.
        config = KubeConfig.from_one(cluster=Cluster(server=url), user=User())
        return cls(AsyncClient(config, field_manager=field_manager))

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = _RESOURCES[(api_version, kind)]
        try:
            async with _api_errors(f"get {kind} {namespace}/{name}"):
                obj = await self._client.get(resource, name, namespace=namespace)
        except KubeApiError as exc:
            # 404 also when the kind itself is not installed (e.g. no Knative Eventing).
            if exc.status == 404:
                return None
            raise
        return _plain(obj)

    async def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The data keys of a Secret, never its values."""
        secret = await self.get("v1", "Secret", namespace, name)
        if secret is None:
            return None
        return frozenset(secret.get("data") or {}) | frozenset(secret.get("stringData") or {})

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = _RESOURCES[(manifest["apiVersion"], manifest["kind"])]
        meta = manifest["metadata"]
        what = f"{manifest['kind']} {meta['namespace']}/{meta['name']}"
        try:
            async with _api_errors(f"create {what}"):
                # The namespace comes from the object's metadata.
                obj = await self._client.create(resource(manifest))
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            async with _api_errors(f"patch {what}"):
                obj = await self._client.patch(
                    resource, meta["name"], manifest, namespace=meta["namespace"], patch_type=PatchType.MERGE
                )
        return _plain(obj)

    async def close(self, *, grace: float = 10.0) -> None:
        """Refuse new passes, wait up to ``grace`` seconds for running ones, then close."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self._client.close()


def _plain(obj: Any) -> dict[str, Any]:
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(result)
