"""Configuration, parsed once at start-up into a frozen dataclass, which is passed down.

Environment first, with the Alvearie-compatible names where they exist. Bad configuration
raises :class:`ConfigError` with one clear line; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .auth.settings import AuthSettings, load_auth_settings
from .bucket import BucketConfig, load_bucket_config
from .errors import ConfigError
from .limits import Limits, load_limits
from .observability.config import ObservabilitySettings, load_observability
from .ui.settings import UiSettings, load_ui_settings

MiB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}={value} must be >= 0")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    #: Where objects live: a directory (file store) unless a bucket is configured.
    data_dir: Path | None = None
    #: ``sqlite:///...`` or ``postgresql://...``; default: SQLite inside ``data_dir``.
    catalog_url: str = ""
    #: The S3 bucket, when BUCKET_* configuration selects the S3 store (else the file store).
    bucket: BucketConfig | None = None
    k_sink: str = ""
    provider_name: str = "provider"
    event_source: str = ""
    wado_internal_endpoint: str = ""
    wado_external_endpoint: str = ""
    query_endpoint: str = ""
    public_base_url: str = ""
    cors_origins: tuple[str, ...] = ()
    max_header_size: int = 64 * MiB
    #: Cap on a whole STOW request body; 0 = no cap.
    max_request_size: int = 0
    s3_part_size: int = 8 * MiB
    study_quiet_seconds: float = 0.0
    #: How long a dispatcher holds claimed outbox events before another replica may retry them.
    event_lease_seconds: float = 15.0
    #: Most results one QIDO-RS search returns.
    qido_max_limit: int = 10000
    #: Access control, audit trail and trusted proxies (:mod:`dicomweb_core.auth`).
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: Resource limits (see :mod:`.limits`).
    limits: Limits = field(default_factory=Limits)
    #: Logs, metrics, traces (:mod:`dicomweb_core.observability`).
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    #: The web UI's viewer (:mod:`dicomweb_core.ui`).
    ui: UiSettings = field(default_factory=UiSettings)
    #: A re-store of a catalogued SOP Instance UID with other content: ``replace`` (last
    #: acknowledged wins), ``keep-first`` (the new copy is dropped) or ``reject`` (fails).
    duplicate_policy: str = "replace"
    #: Unreferenced objects, temp files and incomplete uploads younger than this are left
    #: alone by the sweep and by ``fsck --repair`` (they may belong to an upload in flight).
    sweep_grace_seconds: float = 900.0
    #: Time budget of the start-up sweep of leftovers (0: no start-up sweep).
    startup_sweep_seconds: float = 60.0

    @property
    def resolved_catalog_url(self) -> str:
        if self.catalog_url:
            return self.catalog_url
        if self.data_dir is None:
            raise ConfigError("no CATALOG_URL and no data directory: set CATALOG_URL or --data-dir")
        return f"sqlite:///{self.data_dir / 'catalog.db'}"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(env: Mapping[str, str], **overrides: object) -> Settings:
    """Parse and check every setting of ``env`` (the process environment, as the command line
    completed it: :mod:`dicomweb_core.cli`); the only place configuration is read."""
    use_s3 = bool(env.get("BUCKET_NAME") or env.get("BUCKET_CONFIG_PATH"))
    bucket = load_bucket_config(env) if use_s3 else None
    data_dir = env.get("DICOMWEB_DATA_DIR")
    cors = tuple(o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip())
    settings = Settings(
        data_dir=Path(data_dir) if data_dir else None,
        catalog_url=env.get("CATALOG_URL", ""),
        bucket=bucket,
        k_sink=env.get("K_SINK", ""),
        provider_name=env.get("PROVIDER_NAME", "provider"),
        event_source=env.get("EVENT_SOURCE", ""),
        wado_internal_endpoint=env.get("WADO_INTERNAL_ENDPOINT", ""),
        wado_external_endpoint=env.get("WADO_EXTERNAL_ENDPOINT", ""),
        query_endpoint=env.get("QUERY_ENDPOINT", ""),
        public_base_url=env.get("PUBLIC_BASE_URL", "").rstrip("/"),
        cors_origins=cors,
        max_header_size=_int(env, "MAX_HEADER_SIZE", 64 * MiB, 1024),
        max_request_size=_int(env, "MAX_REQUEST_SIZE", 0),
        s3_part_size=_int(env, "S3_PART_SIZE", 8 * MiB, 5 * MiB),
        study_quiet_seconds=_float(env, "STUDY_QUIET_SECONDS", 0.0),
        event_lease_seconds=_float(env, "EVENT_LEASE_SECONDS", 15.0),
        qido_max_limit=_int(env, "QIDO_MAX_LIMIT", 10000, 1),
        auth=load_auth_settings(env),
        limits=load_limits(env),
        observability=load_observability(env),
        ui=load_ui_settings(env),
        duplicate_policy=env.get("DUPLICATE_POLICY", "") or "replace",
        sweep_grace_seconds=_float(env, "SWEEP_GRACE_SECONDS", 900.0),
        startup_sweep_seconds=_float(env, "STARTUP_SWEEP_SECONDS", 60.0),
    )
    settings = replace(settings, **overrides)  # type: ignore[arg-type]
    if settings.duplicate_policy not in ("replace", "keep-first", "reject"):
        raise ConfigError(
            f"DUPLICATE_POLICY={settings.duplicate_policy!r} must be replace, keep-first or reject"
        )
    for name in ("k_sink", "query_endpoint", "public_base_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name.upper()}={value!r} must be an http(s) URL")
    return settings
