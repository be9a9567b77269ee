"""Samples shared by the operator tests: the seed's custom resource.

A module of its own (not conftest) so that its name is unique across test directories.
"""

from __future__ import annotations

import copy
from typing import Any

SEED_SPEC: dict[str, Any] = {
    "bucketConfigName": "img-ingest-s3",
    "bucketSecretName": "img-ingest-s3",
    "dicomEventDrivenIngestionName": "core",
    "providerName": "provider",
    "stowService": {"concurrency": 0, "maxReplicas": 3, "minReplicas": 0},
    "wadoService": {"concurrency": 0, "maxReplicas": 3, "minReplicas": 0},
}


def make_cr(
    spec: dict[str, Any] | None = None,
    *,
    name: str = "img-ingest",
    namespace: str = "imaging",
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "imaging-ingestion.alvearie.org/v1alpha1",
        "kind": "DicomwebIngestionService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "4f1c7e2a-0000-4000-8000-000000000001",
            "generation": generation,
        },
        "spec": copy.deepcopy(SEED_SPEC if spec is None else spec),
    }
