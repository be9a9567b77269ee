"""WADO-RS + QIDO-RS routes (PS3.18 10.4, 10.6)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dicomweb_core.runtime import Runtime
from dicomweb_core.server import Service


def create_app(runtime: Runtime) -> Service:
    routes: list[BaseRoute] = []
    return Service(name="wado", root="/wado-rs", routes=routes)
