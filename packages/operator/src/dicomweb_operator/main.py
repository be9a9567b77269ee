"""Entry module for ``kopf run -m dicomweb_operator.main``: registers the handlers in kopf's default registry.

Run against the cluster of the current kubeconfig context::

    kopf run --standalone --all-namespaces -m dicomweb_operator.main

The operator's settings come from its environment (see :class:`OperatorConfig`).
"""

from __future__ import annotations

import kopf

from dicomweb_operator.config import OperatorConfig
from dicomweb_operator.handlers import register

# Importing this module is how `kopf run -m` finds handlers: registration at
# import is the contract, into kopf's own default registry.
register(kopf.get_default_registry(), config=OperatorConfig.from_env())
