"""Object stores: the filesystem (embedded default) and S3, behind :class:`ObjectStore`."""

from __future__ import annotations

from .base import (
    Leftover,
    MaintainedStore,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    StoredObject,
    instance_key,
    new_revision,
)

__all__ = [
    "Leftover",
    "MaintainedStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectWriter",
    "StoredObject",
    "instance_key",
    "new_revision",
]
