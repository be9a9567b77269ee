"""Observability settings (logs, metrics, traces), parsed once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

#: Set by ``dicomweb ... --quiet``: no access line per request.
QUIET_ENV = "DICOMWEB_QUIET"
#: Set by the CLI so that worker processes configure logging like the parent.
LOG_LEVEL_ENV = "DICOMWEB_LOG_LEVEL"

LOG_FORMATS = ("text", "json")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be one of 1/0, true/false, yes/no, on/off")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    #: ``text`` (one human-readable line) or ``json`` (one JSON object per line).
    log_format: str = "text"
    log_level: str = "INFO"
    #: One access line per request (``--quiet`` turns it off).
    access_log: bool = True
    #: ``/metrics`` and the request metrics (``METRICS=off`` turns both off).
    metrics: bool = True
    #: OpenTelemetry tracing is on when an OTLP endpoint is configured.
    otlp_endpoint: str = ""


def load_observability(env: Mapping[str, str] | None = None) -> ObservabilitySettings:
    env = os.environ if env is None else env
    log_format = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={log_format!r} must be 'text' or 'json'")
    level = (env.get("DICOMWEB_LOG_LEVEL", "") or "info").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{LOG_LEVEL_ENV}={level!r} must be debug, info, warning or error")
    otlp = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if otlp and not otlp.startswith(("http://", "https://")):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT={otlp!r} must be an http(s) URL")
    return ObservabilitySettings(
        log_format=log_format,
        log_level=level,
        access_log=not _flag(env, QUIET_ENV, False),
        metrics=_flag(env, "METRICS", True),
        otlp_endpoint=otlp,
    )
