"""A 1 GiB instance streamed through STOW: constant server memory, stored byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.servers import ServiceProcess, stow_streamed_instance

GiB = 1 << 30


@pytest.mark.slow
def test_one_gib_upload_streams_in_bounded_memory(fresh_server: ServiceProcess, tmp_path: Path) -> None:
    resp, total, sha256, growth_mib = stow_streamed_instance(fresh_server, GiB)
    assert resp.status_code == 200, resp.text
    # A memory bound, not a timing: the whole upload must never be held in memory.
    assert growth_mib < 96, f"server RSS grew by {growth_mib:.0f} MiB for a 1 GiB upload"
    data_dir = Path(fresh_server.args[fresh_server.args.index("--data-dir") + 1])
    (obj,) = [p for p in data_dir.rglob("*.dcm")]
    assert obj.stat().st_size == total
    check = hashlib.sha256()
    with obj.open("rb") as f:
        while block := f.read(1 << 22):
            check.update(block)
    assert check.hexdigest() == sha256
