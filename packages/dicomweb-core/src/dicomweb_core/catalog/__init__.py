"""Catalogs: SQLite (embedded default), PostgreSQL, and the remote query endpoint."""

from __future__ import annotations

from .base import CatalogReader, CatalogWriter, DatabaseCatalog, Outbox, OutboxEvent

__all__ = ["CatalogReader", "CatalogWriter", "DatabaseCatalog", "Outbox", "OutboxEvent"]
