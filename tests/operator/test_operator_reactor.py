"""The real kopf reactor, in-process, against kmock's in-memory Kubernetes API emulator.

Knative is simulated the way its controllers would act: by writing ``status`` into
the Knative objects the operator created. The emulator has no garbage collector,
so deletion is checked through the finalizer round trip and the ownerReferences
that the cluster's collector follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.types import PatchType
from operator_samples import make_cr

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.handlers import FINALIZER, register
from dicomweb_operator.kube import IngestionService, KubeApi

NS = "imaging"
CRS = "imaging-ingestion.alvearie.org/v1alpha1/dicomwebingestionservices"
KSVC = "serving.knative.dev/v1/services"
SINKS = "sources.knative.dev/v1/sinkbindings"
BROKERS = "eventing.knative.dev/v1/brokers"
RESYNC = 0.3
# The tests' `kmock` parameter (the emulator fixture) shadows the module inside them.
KubernetesError = kmock.KubernetesError
k8s_resource = kmock.resource

# The kmock fixture runs its server on the session loop (asyncio_default_fixture_loop_scope);
# the tests must run there too or the server never gets to answer.
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    # kopf discovers resources before watching; without the bundled built-ins it never starts.
    emulator.resources.load_bundled()
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for key, kind in [
        (CRS, "DicomwebIngestionService"),
        (KSVC, "Service"),
        (SINKS, "SinkBinding"),
        (BROKERS, "Broker"),
    ]:
        emulator.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=verbs, subresources={"status"}
        )


def seed(emulator: kmock.KubernetesEmulator, *, config_map: bool = True) -> None:
    """The seed's prerequisites: bucket ConfigMap and Secret, and the broker of ingestion 'core'."""
    meta = {"name": "img-ingest-s3", "namespace": NS}
    if config_map:
        emulator.objects["v1/configmaps", NS, "img-ingest-s3"] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"BUCKET_NAME": "dicom"},
        }
    emulator.objects["v1/secrets", NS, "img-ingest-s3"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "data": {"AWS_ACCESS_KEY_ID": "a2V5"},
    }
    emulator.objects[BROKERS, NS, "core-broker"] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "core-broker", "namespace": NS},
    }


def stored(emulator: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    # Membership tests need a parsed resource; item access accepts the string form.
    if (kmock.resource(resource), NS, name) not in emulator.objects:
        return None
    key = (resource, NS, name)
    if emulator.objects[key].deleted:
        return None
    return copy.deepcopy(dict(emulator.objects[key].raw))


async def eventually(check: Callable[[], Any], *, within: float = 15.0) -> Any:
    """Poll until ``check()`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}")


def reads(emulator: kmock.KubernetesEmulator, path_end: str) -> int:
    """How many times the operator has read the object at ``.../path_end`` so far: each
    reconciliation reads the objects its resource depends on and owns, so this counts them."""
    return sum(1 for r in emulator if r.method == "GET" and r.url.path.endswith(path_end))


@contextlib.asynccontextmanager
async def running_operator(emulator: kmock.KubernetesEmulator) -> AsyncIterator[None]:
    url = str(emulator.url)
    registry = kopf.OperatorRegistry()
    config = OperatorConfig(resync_seconds=RESYNC)
    register(registry, config=config, api_factory=lambda: KubeApi.from_server(url, field_manager="test"))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    ready = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(registry=registry, clusterwide=True, standalone=True, ready_flag=ready)
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield
    finally:
        # Cancelling (rather than the stop flag) skips kopf's 5-second grace period for
        # "hung" tasks, which here include the emulator's never-ending watch responses.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)


@pytest.fixture()
async def client(kmock: kmock.KubernetesEmulator) -> AsyncIterator[AsyncClient]:
    """A client acting as the user (kubectl) against the emulator."""
    declare_resources(kmock)
    config = KubeConfig.from_one(cluster=Cluster(server=str(kmock.url)), user=User())
    api = AsyncClient(config, field_manager="kubectl")
    yield api
    await api.close()


async def create_cr(api: AsyncClient, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    cr = make_cr(spec, namespace=NS)
    # kopf guards its patches with a resourceVersion test; the emulator keeps whatever it is given.
    cr["metadata"]["resourceVersion"] = "1"
    await api.create(IngestionService(cr))
    return cr


def knative_ready(emulator: kmock.KubernetesEmulator, resource: str, name: str, **status: Any) -> None:
    """Do what Knative's controller does once a revision serves: report Ready and the URLs."""
    emulator.objects[resource, NS, name].patch(
        {"status": {**status, "conditions": [{"type": "Ready", "status": "True"}]}}
    )


def cr_status(emulator: kmock.KubernetesEmulator) -> dict[str, Any]:
    return (stored(emulator, CRS, "img-ingest") or {}).get("status") or {}


async def test_create_produces_services_and_reports_ready_with_urls(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    async with running_operator(kmock):
        cr = await create_cr(client)
        stow = await eventually(lambda: stored(kmock, KSVC, "img-ingest-stow"))
        wado = await eventually(lambda: stored(kmock, KSVC, "img-ingest-wado"))
        binding = await eventually(lambda: stored(kmock, SINKS, "img-ingest-stow-sink-binding"))
        for obj in (stow, wado, binding):
            (owner,) = obj["metadata"]["ownerReferences"]
            assert owner["uid"] == cr["metadata"]["uid"] and owner["controller"] is True
        assert stow["spec"]["template"]["metadata"]["annotations"] == {
            "autoscaling.knative.dev/min-scale": "0",
            "autoscaling.knative.dev/max-scale": "3",
        }
        assert binding["spec"]["sink"]["ref"]["name"] == "core-broker"
        # Created, but Knative has not reported anything yet.
        status = await eventually(lambda: cr_status(kmock).get("phase") == "Reconciling" and cr_status(kmock))
        assert "no Ready condition yet" in status["message"]

        knative_ready(
            kmock,
            KSVC,
            "img-ingest-wado",
            url="https://img-ingest-wado.imaging.example.com",
            address={"url": "http://img-ingest-wado.imaging.svc.cluster.local"},
        )
        knative_ready(
            kmock,
            KSVC,
            "img-ingest-stow",
            url="https://img-ingest-stow.imaging.example.com",
            address={"url": "http://img-ingest-stow.imaging.svc.cluster.local"},
        )
        knative_ready(kmock, SINKS, "img-ingest-stow-sink-binding")

        status = await eventually(lambda: cr_status(kmock).get("ready") and cr_status(kmock))
        assert status["phase"] == "Ready"
        assert status["stowUrl"] == "https://img-ingest-stow.imaging.example.com/stow-rs"
        assert status["wadoUrl"] == "https://img-ingest-wado.imaging.example.com/wado-rs"
        assert status["wadoServiceExternalEndpoint"] == "https://img-ingest-wado.imaging.example.com"
        assert status["secondaryResources"]["Service"] == ["img-ingest-stow", "img-ingest-wado"]
        # The stow service's events now carry the public WADO URL.
        env = {
            e["name"]: e["value"]
            for e in stored(kmock, KSVC, "img-ingest-stow")["spec"]["template"]["spec"]["containers"][0][
                "env"
            ]
        }
        assert env["WADO_EXTERNAL_ENDPOINT"] == "https://img-ingest-wado.imaging.example.com/wado-rs"


async def test_spec_change_updates_the_services_in_place(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    async with running_operator(kmock):
        await create_cr(client)
        await eventually(lambda: stored(kmock, KSVC, "img-ingest-stow"))
        await client.patch(
            IngestionService,
            "img-ingest",
            {
                "spec": {
                    "stowService": {"maxReplicas": 7, "minReplicas": 1, "concurrency": 5},
                    "wadoService": {"image": "registry.test/wado:2"},
                }
            },
            namespace=NS,
            patch_type=PatchType.MERGE,
        )

        def updated() -> bool:
            stow = stored(kmock, KSVC, "img-ingest-stow") or {}
            wado = stored(kmock, KSVC, "img-ingest-wado") or {}
            template = stow["spec"]["template"]
            return (
                template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "7"
                and template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
                and template["spec"]["containerConcurrency"] == 5
                and wado["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.test/wado:2"
            )

        await eventually(updated)
        # Patched in place: still the one object each, never recreated.
        history = kmock.objects[KSVC, NS, "img-ingest-stow"].history
        assert all(version is not None for version in history)


async def test_missing_configmap_fails_then_recovers_when_it_appears(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock, config_map=False)
    async with running_operator(kmock):
        await create_cr(client)
        status = await eventually(lambda: cr_status(kmock).get("phase") == "Failing" and cr_status(kmock))
        assert "ConfigMap 'img-ingest-s3'" in status["message"]
        assert status["ready"] is False
        # The operator keeps trying (two more reconciliations), and creates nothing while a
        # dependency is missing.
        tried = reads(kmock, "/configmaps/img-ingest-s3")
        await eventually(lambda: reads(kmock, "/configmaps/img-ingest-s3") >= tried + 2)
        assert stored(kmock, KSVC, "img-ingest-stow") is None
        assert cr_status(kmock)["phase"] == "Failing"

        kmock.objects["v1/configmaps", NS, "img-ingest-s3"] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "img-ingest-s3", "namespace": NS},
            "data": {"BUCKET_NAME": "dicom"},
        }
        await eventually(lambda: stored(kmock, KSVC, "img-ingest-stow"))
        status = await eventually(lambda: cr_status(kmock).get("phase") != "Failing" and cr_status(kmock))
        assert status["phase"] in {"Initializing", "Reconciling"}
        assert "ConfigMap" not in status["message"]


async def test_missing_broker_fails_naming_the_ingestion(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    kmock.objects[BROKERS, NS, "core-broker"].delete()
    async with running_operator(kmock):
        await create_cr(client)
        status = await eventually(lambda: cr_status(kmock).get("phase") == "Failing" and cr_status(kmock))
        assert "Broker 'core-broker' of DicomEventDrivenIngestion 'core'" in status["message"]


async def test_invalid_spec_fails_with_the_field_named(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    async with running_operator(kmock):
        spec = {
            "bucketConfigName": "img-ingest-s3",
            "bucketSecretName": "img-ingest-s3",
            "dicomEventDrivenIngestionName": "core",
            "wadoService": {"minReplicas": 5, "maxReplicas": 2},
        }
        await create_cr(client, spec)
        status = await eventually(lambda: cr_status(kmock).get("phase") == "Failing" and cr_status(kmock))
        assert "spec.wadoService.maxReplicas" in status["message"]


async def test_delete_releases_the_resource_and_leaves_cleanup_to_owner_references(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    async with running_operator(kmock):
        cr = await create_cr(client)
        await eventually(
            lambda: (
                FINALIZER
                in ((stored(kmock, CRS, "img-ingest") or {}).get("metadata", {}).get("finalizers") or [])
            )
        )
        await eventually(lambda: stored(kmock, SINKS, "img-ingest-stow-sink-binding"))
        await client.delete(IngestionService, "img-ingest", namespace=NS)
        # kopf stops the resync timer and removes its finalizer; the emulator then drops the object.
        await eventually(lambda: stored(kmock, CRS, "img-ingest") is None)
        writes_before = len(kmock.objects[KSVC, NS, "img-ingest-stow"].history)
        reads_before = reads(kmock, "/services/img-ingest-stow")
        # Another resource keeps the operator busy: once it has been reconciled three times
        # (resyncs included), the deleted one's timer would have fired too had it survived.
        other = make_cr(name="other", namespace=NS)
        other["metadata"]["resourceVersion"] = "1"
        await client.create(IngestionService(other))
        await eventually(lambda: reads(kmock, "/services/other-stow") >= 3)
        # No reads and no writes for the deleted resource after the delete.
        assert reads(kmock, "/services/img-ingest-stow") == reads_before
        assert len(kmock.objects[KSVC, NS, "img-ingest-stow"].history) == writes_before
    for resource, name in [
        (KSVC, "img-ingest-stow"),
        (KSVC, "img-ingest-wado"),
        (SINKS, "img-ingest-stow-sink-binding"),
    ]:
        owners = (stored(kmock, resource, name) or {})["metadata"]["ownerReferences"]
        assert owners[0]["uid"] == cr["metadata"]["uid"]
        assert owners[0]["blockOwnerDeletion"] is True


async def test_api_errors_become_failing_status_not_crashes(
    kmock: kmock.KubernetesEmulator, client: AsyncClient
) -> None:
    seed(kmock)
    # As if RBAC denied reading Secrets.
    forbidden = kmock["get", k8s_resource("v1/secrets")] << KubernetesError(
        status=403, reason="Forbidden", message="secrets is forbidden"
    )
    async with running_operator(kmock):
        await create_cr(client)
        status = await eventually(lambda: cr_status(kmock).get("phase") == "Failing" and cr_status(kmock))
        assert "HTTP 403" in status["message"] and "Secret imaging/img-ingest-s3" in status["message"]
        assert len(forbidden) >= 1


async def test_kopf_run_starts_the_operator_from_a_kubeconfig(
    kmock: kmock.KubernetesEmulator, client: AsyncClient, tmp_path: Path
) -> None:
    """The documented start-up, `kopf run ... -m dicomweb_operator.main`, as a real process."""
    seed(kmock)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": str(kmock.url)}}],
                "users": [{"name": "emulator", "user": {}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
            }
        )
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "DICOMWEB_RESYNC_SECONDS": str(RESYNC),
        "DICOMWEB_STOW_IMAGE": "registry.test/stow:9",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        "--all-namespaces",
        "-m",
        "dicomweb_operator.main",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await create_cr(client)
        stow = await eventually(lambda: stored(kmock, KSVC, "img-ingest-stow"), within=30)
        assert stow["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.test/stow:9"
        await eventually(lambda: cr_status(kmock).get("phase") == "Reconciling")
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-2000:]
