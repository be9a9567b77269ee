"""The operator's own settings, read once from its environment (the Deployment sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dicomweb_operator.spec import PULL_POLICIES

# Locally built images (`podman build -t localhost/...`); a real deployment sets
# DICOMWEB_STOW_IMAGE / DICOMWEB_WADO_IMAGE on the operator or `image` in the CR.
DEFAULT_STOW_IMAGE = "localhost/dicomweb-stow-svc:0.1.0"
DEFAULT_WADO_IMAGE = "localhost/dicomweb-wado-svc:0.1.0"


class ConfigError(ValueError):
    """An operator setting in the environment is invalid; the message names it."""


@dataclass(frozen=True)
class OperatorConfig:
    stow_image: str = DEFAULT_STOW_IMAGE
    wado_image: str = DEFAULT_WADO_IMAGE
    image_pull_policy: str = "IfNotPresent"
    # How often every custom resource is re-read and re-applied: this is what
    # notices a ConfigMap/Secret/Broker that appeared later and Knative status changes,
    # without watching Secrets cluster-wide (which would need list/watch on them).
    resync_seconds: float = 30.0
    cluster_domain: str = "cluster.local"
    field_manager: str = "dicomweb-operator"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        policy = env.get("DICOMWEB_IMAGE_PULL_POLICY", cls.image_pull_policy)
        if policy not in PULL_POLICIES:
            raise ConfigError(f"DICOMWEB_IMAGE_PULL_POLICY must be one of {', '.join(PULL_POLICIES)}")
        raw_resync = env.get("DICOMWEB_RESYNC_SECONDS", str(cls.resync_seconds))
        try:
            resync = float(raw_resync)
        except ValueError:
            raise ConfigError(f"DICOMWEB_RESYNC_SECONDS is not a number: {raw_resync!r}") from None
        if resync <= 0:
            raise ConfigError("DICOMWEB_RESYNC_SECONDS must be > 0")
        return cls(
            stow_image=env.get("DICOMWEB_STOW_IMAGE") or DEFAULT_STOW_IMAGE,
            wado_image=env.get("DICOMWEB_WADO_IMAGE") or DEFAULT_WADO_IMAGE,
            image_pull_policy=policy,
            resync_seconds=resync,
            cluster_domain=env.get("DICOMWEB_CLUSTER_DOMAIN") or cls.cluster_domain,
        )
