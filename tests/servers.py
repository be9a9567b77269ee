"""Starts the real service (``dicomweb ...`` under uvicorn) as a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

DICOMWEB = str(Path(sys.executable).with_name("dicomweb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    def __init__(
        self,
        command: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.command = command
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        cmd = [
            DICOMWEB,
            self.command,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        # A session of its own: kill() takes down the worker processes with their supervisor,
        # as a crash of the machine would (``serve`` runs one worker per core by default).
        self.proc = subprocess.Popen(
            cmd + self.args, env=self.env, stdout=out, stderr=out, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.command} not ready in {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def kill(self) -> None:
        """kill -9 of the server and its workers: no shutdown hooks run."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def _serving_pids(self) -> list[int]:
        """The processes that serve requests: the worker processes, or the server itself."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [int(c) for c in children] or [pid]

    def _status_kib(self, key: str) -> dict[int, int]:
        out = {}
        for pid in self._serving_pids():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            out[pid] = next((int(line.split()[1]) for line in lines if line.startswith(key)), 0)
        return out

    def rss_kib(self) -> dict[int, int]:
        """Current RSS of each serving process."""
        return self._status_kib("VmRSS:")

    def peak_rss_kib(self) -> dict[int, int]:
        """Peak RSS of each serving process."""
        return self._status_kib("VmHWM:")

    def peak_growth_mib(self, before: dict[int, int]) -> float:
        """The largest growth of any serving process's peak RSS over its RSS in ``before``."""
        peaks = self.peak_rss_kib()
        return max((peak - before.get(pid, peak) for pid, peak in peaks.items()), default=0) / 1024


def stow_streamed_instance(
    server: ServiceProcess, pixel_bytes: int
) -> tuple[httpx.Response, int, str, float]:
    """POST one generated instance with ``pixel_bytes`` of pixel data to ``/stow-rs/studies``
    as a streamed body (nothing held in the client's memory). Returns the response, the
    object's size, the SHA-256 of its bytes and the server's peak-RSS growth in MiB."""
    import hashlib

    from tests.dicomfiles import big_instance_stream, streamed_multipart

    header, pixels, total = big_instance_stream(pixel_bytes)
    digest = hashlib.sha256(header)

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk

    rss_before = server.rss_kib()
    resp = httpx.post(
        server.base + "/stow-rs/studies",
        content=streamed_multipart(header, hashed(pixels), boundary="big"),
        headers={"content-type": 'multipart/related; type="application/dicom"; boundary=big'},
        timeout=900,
    )
    return resp, total, digest.hexdigest(), server.peak_growth_mib(rss_before)
