"""``dicomweb push``: the bulk STOW-RS client (files, folders, archives; retries; resume journal)."""

from __future__ import annotations

from .options import Batch, PushOptions, parse_batch, stow_url
from .runner import Pusher
from .summary import Tally

__all__ = ["Batch", "PushOptions", "Pusher", "Tally", "parse_batch", "stow_url"]
