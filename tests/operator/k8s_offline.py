"""Offline validation of Kubernetes objects: built-in kinds and custom resources against their CRDs.

Built-in kinds go through ``kubernetes-validate`` (strict: unknown fields are
errors). Custom resources are checked against their CRD's ``openAPIV3Schema``
with ``jsonschema``, plus the unknown-field check the API server's pruning
implies, which plain JSON Schema does not do.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
# Third-party CRD schemas are vendored in the repository (source and version: schemas/README.md).
KNATIVE_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "knative"
PROMETHEUS_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "prometheus"
OPERATOR_CRD = REPO / "packages" / "operator" / "src" / "dicomweb_operator" / "crd.yaml"
K8S_VERSION = "1.32"


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.load_all(f, Loader=_LOADER) if doc]


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of the known CRDs."""
    return dict(_crd_schemas())


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    paths = [
        *sorted(KNATIVE_SCHEMAS.glob("*.yaml")),
        *sorted(PROMETHEUS_SCHEMAS.glob("*.yaml")),
        OPERATOR_CRD,
    ]
    for path in paths:
        for crd in load_yaml_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Fields the API server would prune: neither in ``properties`` nor allowed by additionalProperties."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(obj, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            if properties is not None and key in properties:
                yield from _unknown_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from _unknown_fields(value, additional, f"{path}.{key}")
            elif properties is not None:
                yield f"{path}.{key}: unknown field"
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            yield from _unknown_fields(item, schema["items"], f"{path}[{index}]")


def validate_custom(obj: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key not in schemas:
        return [f"no CRD schema known for {key}"]
    schema = schemas[key]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
    # The API server always keeps apiVersion, kind and metadata, whatever the schema lists.
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    errors.extend(_unknown_fields(body, schema, ""))
    return errors


def validate_builtin(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{path}: {exc.message}"]
    return []


def is_builtin(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group == "" or group.endswith(".k8s.io") or "." not in group


def validate(obj: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    return validate_builtin(obj) if is_builtin(obj) else validate_custom(obj, schemas)


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting as the API server does it: fill absent properties that have a default."""
    result = copy.deepcopy(obj)
    if isinstance(result, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = apply_defaults(result[key], sub)
    elif isinstance(result, list) and isinstance(schema.get("items"), dict):
        result = [apply_defaults(item, schema["items"]) for item in result]
    return result
