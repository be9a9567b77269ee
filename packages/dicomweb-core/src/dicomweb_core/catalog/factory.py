"""Open a catalog from its URL (``CATALOG_URL``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Catalog

_SCHEMES = "sqlite:///abs/path/catalog.db, sqlite:///:memory: or postgresql://user@host:port/db"


def open_catalog(url: str) -> Catalog:
    """The catalog for ``url`` (not opened yet: call ``await catalog.open()``).

    ``sqlite:///abs/path/catalog.db`` (three slashes, then an absolute path),
    ``sqlite:///:memory:``, ``postgresql://user@host:port/db`` or ``postgres://...``.
    Raises :class:`ConfigError` with one line naming the problem.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"CATALOG_URL {url!r} is not a URL ({exc}); expected {_SCHEMES}") from exc
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(f"CATALOG_URL {url!r}: sqlite URLs take no host; expected {_SCHEMES}")
        path = parts.path
        if path == "/:memory:":
            path = ":memory:"
        elif not path.startswith("/") or path == "/" or path.endswith("/"):
            raise ConfigError(f"CATALOG_URL {url!r}: sqlite needs an absolute file path; expected {_SCHEMES}")
        from .sqlite import SQLiteCatalog

        return SQLiteCatalog(path)
    if scheme in ("postgresql", "postgres"):
        if not parts.path.strip("/"):
            raise ConfigError(f"CATALOG_URL {url!r}: no database name; expected {_SCHEMES}")
        try:
            parts.port  # noqa: B018 -- validates the port
        except ValueError as exc:
            raise ConfigError(f"CATALOG_URL {url!r}: bad port ({exc})") from exc
        from .postgres import PostgresCatalog

        return PostgresCatalog("postgresql" + url[len(parts.scheme) :])
    raise ConfigError(f"CATALOG_URL {url!r}: unsupported scheme {parts.scheme!r}; expected {_SCHEMES}")
