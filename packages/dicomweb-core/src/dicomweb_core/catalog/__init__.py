"""Catalogs: SQLite (embedded default), PostgreSQL, and the remote query endpoint."""

from __future__ import annotations

from .base import Catalog, OutboxEvent

__all__ = ["Catalog", "OutboxEvent"]
