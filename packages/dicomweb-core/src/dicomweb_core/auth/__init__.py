"""Access control (OAuth 2 / OpenID Connect bearer tokens), the audit trail, and trusted-proxy
handling of ``X-Forwarded-*`` headers. Wired into the app by :func:`dicomweb_core.server.build_app`.

PyJWT does the JOSE work (JWS parsing, signature and claim checks); this package only decides
which key, which claims and which permission.
"""

from __future__ import annotations

from .settings import AuthSettings, Permission, PermissionSource, check_bind, is_loopback, load_auth_settings

__all__ = [
    "AuthSettings",
    "Permission",
    "PermissionSource",
    "check_bind",
    "is_loopback",
    "load_auth_settings",
]
