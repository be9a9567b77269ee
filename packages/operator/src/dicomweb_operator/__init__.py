"""Kubernetes operator for the ``DicomwebIngestionService`` custom resource (kopf).

:func:`~dicomweb_operator.reconcile.reconcile` is the pure core: custom resource
plus what exists in the cluster in, desired manifests and status out. The kopf
handlers in :mod:`dicomweb_operator.handlers` only read, call it, apply and
write status.
"""

from __future__ import annotations

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.reconcile import Observed, Plan, reconcile
from dicomweb_operator.spec import IngestionSpec, InvalidSpecError, parse_spec

__all__ = [
    "IngestionSpec",
    "InvalidSpecError",
    "Observed",
    "OperatorConfig",
    "Plan",
    "parse_spec",
    "reconcile",
]
