"""A large instance pushed with bounded client memory: the body is streamed from the file.

The file is sparse (a real header, then a Pixel Data value whose bytes are a hole), so making
it costs no disk writes; the client still reads and sends every byte.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.dicomfiles import make_dataset, to_bytes
from tests.push.helpers import push_command
from tests.servers import ServiceProcess

SIZE = 512 << 20  # 512 MiB of pixel data: large against any plausible client RSS, fast in CI
FRAME = 512 * 512 * 2


def _sparse_instance(path: Path, pixel_bytes: int) -> tuple[str, int]:
    ds = make_dataset(rows=512, cols=512)
    ds.NumberOfFrames = pixel_bytes // FRAME
    del ds.PixelData
    header = to_bytes(ds) + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", pixel_bytes)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + pixel_bytes)
    return str(ds.SOPInstanceUID), len(header) + pixel_bytes


def _peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@pytest.mark.slow
def test_a_512_mib_file_is_streamed_with_bounded_client_memory(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sop, total = _sparse_instance(src / "big.dcm", SIZE)
    cmd = push_command(
        [src], fresh_server.base + "/dicomweb", journal=tmp_path / "j", report=tmp_path / "r.json"
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _peak_rss_kib(proc.pid))
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "stored 1 instances" in out, out
    # A memory bound, not a timing: the client never holds the file (512 MiB) in memory.
    assert 0 < peak < 128 * 1024, f"client peak RSS {peak / 1024:.0f} MiB for a {SIZE >> 20} MiB file"
    data_dir = Path(fresh_server.args[fresh_server.args.index("--data-dir") + 1])
    (obj,) = [p for p in data_dir.rglob("*.dcm")]
    assert obj.stat().st_size == total
    want, got = hashlib.sha256(), hashlib.sha256()
    for path, digest in ((src / "big.dcm", want), (obj, got)):
        with path.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    assert got.hexdigest() == want.hexdigest()
    assert sop
