"""The ``DicomwebIngestionService`` custom resource: names and its spec as frozen values.

The CRD's ``openAPIV3Schema`` already types, defaults and bounds every field, but
the operator cannot rely on it alone: the CEL rule ``maxReplicas >= minReplicas``
is skipped on clusters older than 1.25 and objects written before a CRD upgrade
were never re-validated. So :func:`parse_spec` checks everything again and
reports all problems in one :class:`InvalidSpecError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "imaging-ingestion.alvearie.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DicomwebIngestionService"
PLURAL = "dicomwebingestionservices"
SINGULAR = "dicomwebingestionservice"

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_PROVIDER_NAME = "provider"
DEFAULT_CATALOG_KEY = "CATALOG_URL"
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 3
DEFAULT_CONCURRENCY = 0

# RFC 1123 subdomain (ConfigMap, Secret, Broker names) and the env-var/secret-key alphabet.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_RESOURCE_SECTIONS = ("limits", "requests")


class InvalidSpecError(ValueError):
    """The custom resource's spec cannot be turned into manifests; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class ServiceSpec:
    """``spec.stowService`` / ``spec.wadoService``: scaling, image and resources of one Knative Service."""

    concurrency: int = DEFAULT_CONCURRENCY
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    image: str | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    # {"requests": {"cpu": "500m"}, "limits": {...}}; quantities kept as the user wrote them.
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogDatabaseRef:
    """``spec.catalogDatabaseSecret``: the Secret key holding the PostgreSQL DSN (``CATALOG_URL``)."""

    name: str
    key: str = DEFAULT_CATALOG_KEY


PERMISSION_SOURCES = ("scope", "keycloak", "entra")


@dataclass(frozen=True)
class AuthSpec:
    """``spec.auth`` (optional, additive): OAuth 2 / OpenID Connect access control of both services."""

    issuer: str
    audience: str
    permissions_from: str = "scope"
    jwks_url: str | None = None
    roles_client: str | None = None

    def env(self) -> list[tuple[str, str]]:
        """The services' ``AUTH_*`` settings."""
        env = [
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", self.issuer),
            ("AUTH_AUDIENCE", self.audience),
            ("AUTH_PERMISSIONS_FROM", self.permissions_from),
        ]
        if self.jwks_url:
            env.append(("AUTH_JWKS_URL", self.jwks_url))
        if self.roles_client:
            env.append(("AUTH_ROLES_CLIENT", self.roles_client))
        return env


@dataclass(frozen=True)
class IngestionSpec:
    bucket_config_name: str
    bucket_secret_name: str
    dicom_event_driven_ingestion_name: str
    provider_name: str = DEFAULT_PROVIDER_NAME
    stow: ServiceSpec = ServiceSpec()
    wado: ServiceSpec = ServiceSpec()
    # Alvearie's spec has one list for both services; per-service lists are added to it.
    image_pull_secrets: tuple[str, ...] = ()
    catalog_database: CatalogDatabaseRef | None = None
    query_endpoint: str | None = None
    auth: AuthSpec | None = None


def parse_spec(raw: Mapping[str, Any]) -> IngestionSpec:
    """Validate ``raw`` (the CR's ``spec``) and fill in the CRD's defaults.

    Unknown keys are ignored (the API server prunes them anyway). Raises
    :class:`InvalidSpecError` naming every invalid field at once.
    """
    problems: list[str] = []
    names = {
        key: _required_name(raw, key, problems)
        for key in ("bucketConfigName", "bucketSecretName", "dicomEventDrivenIngestionName")
    }
    provider = raw.get("providerName", DEFAULT_PROVIDER_NAME)
    if not isinstance(provider, str) or not provider:
        problems.append("spec.providerName must be a non-empty string")
        provider = DEFAULT_PROVIDER_NAME
    pull_secrets = _pull_secrets(raw.get("imagePullSecrets"), "spec.imagePullSecrets", problems)
    stow = _service_spec(raw.get("stowService"), "spec.stowService", problems)
    wado = _service_spec(raw.get("wadoService"), "spec.wadoService", problems)
    catalog = _catalog_ref(raw.get("catalogDatabaseSecret"), problems)
    query_endpoint = raw.get("queryEndpoint")
    if query_endpoint is not None and (
        not isinstance(query_endpoint, str) or not query_endpoint.startswith(("http://", "https://"))
    ):
        problems.append("spec.queryEndpoint must be an http:// or https:// URL")
    auth = _auth_spec(raw.get("auth"), problems)
    if problems:
        raise InvalidSpecError(problems)
    return IngestionSpec(
        bucket_config_name=names["bucketConfigName"],
        bucket_secret_name=names["bucketSecretName"],
        dicom_event_driven_ingestion_name=names["dicomEventDrivenIngestionName"],
        provider_name=provider,
        stow=stow,
        wado=wado,
        image_pull_secrets=pull_secrets,
        catalog_database=catalog,
        query_endpoint=query_endpoint or None,
        auth=auth,
    )


def _required_name(raw: Mapping[str, Any], key: str, problems: list[str]) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        problems.append(f"spec.{key} is required")
        return ""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        problems.append(f"spec.{key} {value!r} is not a valid Kubernetes object name")
    return value


def _int_field(raw: Mapping[str, Any], key: str, default: int, where: str, problems: list[str]) -> int:
    value = raw.get(key, default)
    # bool is an int in Python but not in JSON; reject it like the API server would.
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(f"{where}.{key} must be an integer")
        return default
    if value < 0:
        problems.append(f"{where}.{key} must be >= 0 (got {value})")
    return value


def _service_spec(raw: Any, where: str, problems: list[str]) -> ServiceSpec:
    if raw is None:
        return ServiceSpec()
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object")
        return ServiceSpec()
    concurrency = _int_field(raw, "concurrency", DEFAULT_CONCURRENCY, where, problems)
    min_replicas = _int_field(raw, "minReplicas", DEFAULT_MIN_REPLICAS, where, problems)
    max_replicas = _int_field(raw, "maxReplicas", DEFAULT_MAX_REPLICAS, where, problems)
    # Knative reads max-scale 0 as "no upper bound", so 0 is always allowed.
    if max_replicas != 0 and 0 <= max_replicas < min_replicas:
        problems.append(
            f"{where}.maxReplicas ({max_replicas}) must be >= minReplicas ({min_replicas}) or 0 (unbounded)"
        )
    image = raw.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        problems.append(f"{where}.image must be a non-empty string")
        image = None
    policy = raw.get("imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        problems.append(f"{where}.imagePullPolicy must be one of {', '.join(PULL_POLICIES)}")
        policy = None
    return ServiceSpec(
        concurrency=concurrency,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        image=image,
        image_pull_policy=policy,
        image_pull_secrets=_pull_secrets(raw.get("imagePullSecrets"), f"{where}.imagePullSecrets", problems),
        resources=_resources(raw.get("resources"), f"{where}.resources", problems),
    )


def _pull_secrets(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{where} must be a list of {{name: ...}}")
        return ()
    names: list[str] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            problems.append(f"{where}[{index}].name is required")
        elif name not in names:
            names.append(name)
    return tuple(names)


def _resources(raw: Any, where: str, problems: list[str]) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object with requests/limits")
        return {}
    result: dict[str, dict[str, str]] = {}
    for section, quantities in raw.items():
        if section not in _RESOURCE_SECTIONS:
            problems.append(f"{where}.{section} is not one of {', '.join(_RESOURCE_SECTIONS)}")
            continue
        if not isinstance(quantities, Mapping):
            problems.append(f"{where}.{section} must map resource names to quantities")
            continue
        clean: dict[str, str] = {}
        for resource, quantity in quantities.items():
            if isinstance(quantity, bool) or not isinstance(quantity, (str, int, float)):
                problems.append(f"{where}.{section}.{resource} must be a quantity")
                continue
            clean[str(resource)] = str(quantity)
        if clean:
            result[section] = clean
    return result


def _catalog_ref(raw: Any, problems: list[str]) -> CatalogDatabaseRef | None:
    if raw is None:
        return None
    where = "spec.catalogDatabaseSecret"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object with name and key")
        return None
    name = raw.get("name")
    key = raw.get("key", DEFAULT_CATALOG_KEY)
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name):
        problems.append(f"{where}.name must name a Secret")
        return None
    if not isinstance(key, str) or not _SECRET_KEY.match(key):
        problems.append(f"{where}.key must be a Secret data key")
        return None
    return CatalogDatabaseRef(name=name, key=key)


def _auth_spec(raw: Any, problems: list[str]) -> AuthSpec | None:
    if raw is None:
        return None
    where = "spec.auth"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object with issuer and audience")
        return None
    before = len(problems)

    def url(key: str, required: bool) -> str | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            problems.append(f"{where}.{key} must be an http:// or https:// URL")
            return None
        return value

    def text(key: str, required: bool) -> str | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}.{key} must be a non-empty string")
            return None
        return value

    issuer = url("issuer", True)
    jwks_url = url("jwksUrl", False)
    audience = text("audience", True)
    roles_client = text("rolesClient", False)
    source = raw.get("permissionsFrom", "scope")
    if source not in PERMISSION_SOURCES:
        problems.append(f"{where}.permissionsFrom must be one of {', '.join(PERMISSION_SOURCES)}")
    if len(problems) > before or issuer is None or audience is None:
        return None
    return AuthSpec(
        issuer=issuer,
        audience=audience,
        permissions_from=str(source),
        jwks_url=jwks_url,
        roles_client=roles_client,
    )
