"""Object stores: the filesystem (embedded default) and S3, behind :class:`ObjectStore`."""

from __future__ import annotations

from .base import ObjectStore, ObjectWriter, StoredObject, instance_key

__all__ = ["ObjectStore", "ObjectWriter", "StoredObject", "instance_key"]
