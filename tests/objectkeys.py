"""Object keys as the stores write them: the UID path plus a never-reused revision."""

from __future__ import annotations

import re

_REVISION = r"\.[0-9a-f]{24}\.dcm"


def is_instance_object(name: str, sop_instance_uid: str) -> bool:
    """True when ``name`` (a key, or its last component) is a stored revision of the instance."""
    return re.search(rf"(^|/){re.escape(sop_instance_uid)}{_REVISION}$", name) is not None


def sop_of_key(key: str) -> str:
    """The SOP Instance UID of an instance object key."""
    match = re.search(rf"([0-9.]+?){_REVISION}$", key.rsplit("/", 1)[-1])
    assert match is not None, key
    return match.group(1)
