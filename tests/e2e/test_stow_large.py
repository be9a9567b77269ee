"""A 1 GiB instance streamed through STOW: constant server memory, stored byte for byte."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dicomfiles import big_instance_stream, streamed_multipart
from tests.servers import ServiceProcess

GiB = 1 << 30


@pytest.mark.slow
def test_one_gib_upload_streams_in_bounded_memory(fresh_server: ServiceProcess, tmp_path: Path) -> None:
    header, pixels, total = big_instance_stream(GiB)
    digest = hashlib.sha256(header)

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk

    rss_before = fresh_server.rss_kib()
    resp = httpx.post(
        fresh_server.base + "/stow-rs/studies",
        content=streamed_multipart(header, hashed(pixels), boundary="b1"),
        headers={"content-type": 'multipart/related; type="application/dicom"; boundary=b1'},
        timeout=600,
    )
    assert resp.status_code == 200, resp.text
    growth_mib = (fresh_server.peak_rss_kib() - rss_before) / 1024
    # A memory bound, not a timing: the whole upload must never be held in memory.
    assert growth_mib < 96, f"server RSS grew by {growth_mib:.0f} MiB for a 1 GiB upload"
    data_dir = Path(fresh_server.args[fresh_server.args.index("--data-dir") + 1])
    (obj,) = [p for p in data_dir.rglob("*.dcm")]
    assert obj.stat().st_size == total
    check = hashlib.sha256()
    with obj.open("rb") as f:
        while block := f.read(1 << 22):
            check.update(block)
    assert check.hexdigest() == digest.hexdigest()
