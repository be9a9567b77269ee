"""Access-control and exposure settings, parsed once at start-up into a frozen dataclass.

``AUTH_MODE=none`` (the default) serves everyone who can reach the port, which is what the
embedded server on 127.0.0.1 wants. ``AUTH_MODE=oidc`` requires a bearer JWT from the issuer on
every DICOMweb route. :func:`check_bind` refuses a non-loopback bind without auth unless the
operator said so on purpose (``AUTH_MODE=none`` set explicitly, or ``--insecure-no-auth``).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError


class Permission(enum.Enum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


class PermissionSource(enum.Enum):
    #: OAuth scopes: ``scope`` (space-separated string) or ``scp`` (string or list).
    SCOPE = "scope"
    #: Keycloak: ``realm_access.roles`` and ``resource_access.<AUTH_ROLES_CLIENT>.roles``.
    KEYCLOAK = "keycloak"
    #: Microsoft Entra ID app roles: ``roles``.
    ENTRA = "entra"


#: Asymmetric algorithms only: ``none`` and the HMAC family (where a public key could be
#: misused as the shared secret) are never accepted.
SUPPORTED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_GRANTS = {
    Permission.READ: ("dicom.read",),
    Permission.WRITE: ("dicom.write",),
    Permission.DELETE: ("dicom.delete",),
}
LOOPBACK_PROXIES = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    #: ``none`` or ``oidc``.
    mode: str = "none"
    #: ``AUTH_MODE`` was set (to anything): ``none`` then means "no auth, on purpose".
    mode_explicit: bool = False
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    #: Empty: discovered from ``<issuer>/.well-known/openid-configuration``.
    jwks_url: str = ""
    permissions_from: PermissionSource = PermissionSource.SCOPE
    #: Keycloak client whose ``resource_access.<client>.roles`` also grant permissions.
    roles_client: str = ""
    #: Permission -> the scope/role names that grant it.
    grants: tuple[tuple[Permission, tuple[str, ...]], ...] = tuple(DEFAULT_GRANTS.items())
    leeway_seconds: float = 30.0
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS
    #: An unknown ``kid`` refetches the JWKS at most this often (a flood of made-up key ids
    #: must not hammer the issuer).
    jwks_min_refresh_seconds: float = 10.0
    #: The JWKS is refetched on use after this long even when every ``kid`` is known.
    jwks_max_age_seconds: float = 3600.0
    #: A verified token is remembered this long (never past its ``exp``); 0: verify every time.
    token_cache_seconds: float = 30.0
    http_timeout_seconds: float = 5.0
    #: One JSON audit line per DICOMweb transaction (always on with ``oidc``).
    audit: bool = False
    #: Peers whose ``X-Forwarded-*`` headers are believed (IPs, CIDR networks, or ``*``).
    forwarded_allow_ips: tuple[str, ...] = LOOPBACK_PROXIES

    @property
    def enabled(self) -> bool:
        return self.mode == "oidc"


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value < 1e9:
        raise ConfigError(f"{name}={raw!r} must be a number of seconds >= 0")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _url(name: str, value: str) -> str:
    if value and not value.startswith(("https://", "http://")):
        raise ConfigError(f"{name}={value!r} must be an http(s) URL")
    return value


def _proxies(raw: str) -> tuple[str, ...]:
    entries = _names(raw)
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"FORWARDED_ALLOW_IPS entry {entry!r} is not an IP address or network"
            ) from None
    return entries


def load_auth_settings(env: Mapping[str, str]) -> AuthSettings:
    raw_mode = env.get("AUTH_MODE", "").strip().lower()
    mode = raw_mode or "none"
    if mode not in ("none", "oidc"):
        raise ConfigError(f"AUTH_MODE={raw_mode!r}: expected none or oidc")
    source_name = env.get("AUTH_PERMISSIONS_FROM", "scope").strip().lower() or "scope"
    try:
        source = PermissionSource(source_name)
    except ValueError:
        raise ConfigError(
            f"AUTH_PERMISSIONS_FROM={source_name!r}: expected scope, keycloak or entra"
        ) from None
    grants = tuple(
        (perm, _names(env.get(f"AUTH_{perm.name}_PERMISSION", "")) or default)
        for perm, default in DEFAULT_GRANTS.items()
    )
    algorithms = _names(env.get("AUTH_ALGORITHMS", "")) or SUPPORTED_ALGORITHMS
    for alg in algorithms:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"AUTH_ALGORITHMS: {alg!r} is not allowed (only {', '.join(SUPPORTED_ALGORITHMS)})"
            )
    forwarded = env.get("FORWARDED_ALLOW_IPS")
    settings = AuthSettings(
        mode=mode,
        mode_explicit=bool(raw_mode),
        issuer=_url("AUTH_ISSUER", env.get("AUTH_ISSUER", "").strip()),
        audiences=_names(env.get("AUTH_AUDIENCE", "")),
        jwks_url=_url("AUTH_JWKS_URL", env.get("AUTH_JWKS_URL", "").strip()),
        permissions_from=source,
        roles_client=env.get("AUTH_ROLES_CLIENT", "").strip(),
        grants=grants,
        leeway_seconds=_seconds(env, "AUTH_LEEWAY_SECONDS", 30.0),
        algorithms=algorithms,
        jwks_min_refresh_seconds=_seconds(env, "AUTH_JWKS_MIN_REFRESH_SECONDS", 10.0),
        jwks_max_age_seconds=_seconds(env, "AUTH_JWKS_MAX_AGE_SECONDS", 3600.0),
        token_cache_seconds=_seconds(env, "AUTH_TOKEN_CACHE_SECONDS", 30.0),
        http_timeout_seconds=_seconds(env, "AUTH_HTTP_TIMEOUT_SECONDS", 5.0) or 5.0,
        audit=mode == "oidc" or _flag(env, "AUDIT_LOG"),
        forwarded_allow_ips=LOOPBACK_PROXIES if forwarded is None else _proxies(forwarded),
    )
    if settings.enabled:
        if not settings.issuer:
            raise ConfigError("AUTH_MODE=oidc needs AUTH_ISSUER (the token issuer, as in the iss claim)")
        if not settings.audiences:
            raise ConfigError("AUTH_MODE=oidc needs AUTH_AUDIENCE (this service's aud value)")
    return settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: AuthSettings, *, insecure_no_auth: bool) -> None:
    """Refuse to serve without auth beyond this machine unless told so on purpose."""
    if settings.enabled or is_loopback(host) or insecure_no_auth or settings.mode_explicit:
        return
    raise ConfigError(
        f"refusing to listen on {host} without access control: set AUTH_MODE=oidc (with AUTH_ISSUER and "
        "AUTH_AUDIENCE), or AUTH_MODE=none / --insecure-no-auth to serve without it on purpose"
    )
