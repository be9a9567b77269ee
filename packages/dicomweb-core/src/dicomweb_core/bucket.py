"""The S3 bucket configuration, with the names of the Alvearie ConfigMap and Secret.

Each key is read from the environment, or else from a file named after the key in
``BUCKET_CONFIG_PATH`` or ``BUCKET_SECRET_PATH`` (how Kubernetes mounts a ConfigMap
and a Secret as volumes: one file per key). When both exist the environment wins:
the mounted files are the cluster's configuration, and an environment variable is
the natural way to override one key for a local run or a debugging session.

``BUCKET_HOST`` may carry a scheme (``https://s3.example.org``); the scheme wins.
Without one, ``BUCKET_PORT`` decides: 443 is https, anything else (80, 8333, 9000,
...) is plain http, as S3-compatible servers inside a cluster usually are. Without
a scheme or a port, the endpoint is https on 443.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

#: Keys of the ConfigMap (``bucketConfigName``) and of the Secret (``bucketSecretName``).
CONFIG_KEYS = ("BUCKET_HOST", "BUCKET_PORT", "BUCKET_NAME", "BUCKET_REGION", "BUCKET_SUBREGION")
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

DEFAULT_REGION = "us-east-1"

# The S3 bucket naming rules (3-63 characters; lower-case letters, digits, dots, hyphens;
# starts and ends with a letter or digit). Checked here so a typo fails at start-up.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """Where the objects live and how to sign requests to it."""

    scheme: str
    host: str
    port: int
    name: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    subregion: str = ""
    #: An HTTP(S)_PROXY/ALL_PROXY variable is set: S3 is reached through a proxy (the readiness
    #: probe then goes through httpx, which honours those and NO_PROXY, as the SDK does).
    via_proxy: bool = False

    @property
    def endpoint_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{self.scheme}://{host}:{self.port}"


_PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")


def load_bucket_config(env: Mapping[str, str]) -> BucketConfig:
    """Parse the bucket configuration; raise :class:`ConfigError` naming the first bad key."""
    values = _gather(env)

    def required(key: str) -> str:
        value = values.get(key, "")
        if not value:
            raise ConfigError(f"{key} is not set (environment, BUCKET_CONFIG_PATH or BUCKET_SECRET_PATH)")
        return value

    scheme, host, host_port = _parse_host(required("BUCKET_HOST"))
    port = _parse_port(values.get("BUCKET_PORT", ""), host_port, scheme)
    if scheme is None:
        scheme = "https" if port == 443 else "http"

    name = required("BUCKET_NAME")
    if not _BUCKET_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"BUCKET_NAME={name!r} is not a valid S3 bucket name "
            "(3-63 characters: lower-case letters, digits, '.', '-')"
        )

    return BucketConfig(
        scheme=scheme,
        host=host,
        port=port,
        name=name,
        region=values.get("BUCKET_REGION") or DEFAULT_REGION,
        subregion=values.get("BUCKET_SUBREGION", ""),
        access_key_id=required("AWS_ACCESS_KEY_ID"),
        secret_access_key=required("AWS_SECRET_ACCESS_KEY"),
        via_proxy=any(env.get(v) or env.get(v.upper()) for v in _PROXY_VARIABLES),
    )


def _gather(env: Mapping[str, str]) -> dict[str, str]:
    """Every known key's value: from the mounted files first, then overridden by the environment."""
    values: dict[str, str] = {}
    for path_key, keys in (("BUCKET_CONFIG_PATH", CONFIG_KEYS), ("BUCKET_SECRET_PATH", SECRET_KEYS)):
        directory = env.get(path_key, "")
        if not directory:
            continue
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"{path_key}={directory!r} is not a directory")
        for key in keys:
            path = root / key
            try:
                # Files made with `kubectl create --from-file` or an editor often end in a newline.
                values[key] = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{key}: cannot read {path}: {exc}") from exc
    for key in (*CONFIG_KEYS, *SECRET_KEYS):
        value = env.get(key)
        if value is not None and value.strip():
            values[key] = value.strip()
    return values


def _parse_host(raw: str) -> tuple[str | None, str, int | None]:
    """``(scheme or None, host, port in the host or None)`` from ``BUCKET_HOST``."""
    has_scheme = "://" in raw
    try:
        parts = urlsplit(raw if has_scheme else f"//{raw}")
        host_port = parts.port
    except ValueError as exc:
        raise ConfigError(f"BUCKET_HOST={raw!r} is not a host name or URL: {exc}") from exc
    scheme = parts.scheme.lower() if has_scheme else None
    if scheme not in (None, "http", "https"):
        raise ConfigError(f"BUCKET_HOST={raw!r}: the scheme must be http or https")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"BUCKET_HOST={raw!r} must be a host name or an http(s) URL without a path")
    return scheme, parts.hostname, host_port


def _parse_port(raw: str, host_port: int | None, scheme: str | None) -> int:
    if not raw:
        if host_port is not None:
            return host_port
        return 80 if scheme == "http" else 443
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"BUCKET_PORT={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"BUCKET_PORT={raw!r} is out of range (1-65535)")
    if host_port is not None and host_port != port:
        raise ConfigError(f"BUCKET_PORT={port} contradicts the port in BUCKET_HOST ({host_port})")
    return port
