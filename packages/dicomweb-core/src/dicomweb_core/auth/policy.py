"""Which permission a request needs, and which permissions a token grants.

Both are decided from precomputed tables: the route table maps a method under a DICOMweb root
to its permission; the grant table maps scope or role names to permissions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .settings import AuthSettings, Permission, PermissionSource

#: Transactions by method (anything else under a DICOMweb root needs ``write``: such requests
#: are answered 405, but never to a caller who could not write anyway).
METHOD_PERMISSIONS = {
    "GET": Permission.READ,
    "HEAD": Permission.READ,
    "POST": Permission.WRITE,
    "DELETE": Permission.DELETE,
}


def required_permission(method: str) -> Permission:
    return METHOD_PERMISSIONS.get(method, Permission.WRITE)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return ()


class Grants:
    """Claims -> permissions, per ``AUTH_PERMISSIONS_FROM``."""

    def __init__(self, settings: AuthSettings) -> None:
        self._source = settings.permissions_from
        self._client = settings.roles_client
        self._by_name: dict[str, set[Permission]] = {}
        for permission, names in settings.grants:
            for name in names:
                self._by_name.setdefault(name, set()).add(permission)

    def names(self, claims: dict[str, Any]) -> Iterable[str]:
        if self._source is PermissionSource.SCOPE:
            return _strings(claims.get("scope", claims.get("scp")))
        if self._source is PermissionSource.ENTRA:
            return _strings(claims.get("roles"))
        names: list[str] = []
        realm = claims.get("realm_access")
        if isinstance(realm, dict):
            names.extend(_strings(realm.get("roles")))
        resources = claims.get("resource_access")
        if self._client and isinstance(resources, dict):
            client = resources.get(self._client)
            if isinstance(client, dict):
                names.extend(_strings(client.get("roles")))
        return names

    def permissions(self, claims: dict[str, Any]) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for name in self.names(claims):
            granted |= self._by_name.get(name, set())
        return frozenset(granted)

    def names_for(self, permission: Permission) -> str:
        return " ".join(n for n, perms in self._by_name.items() if permission in perms)
