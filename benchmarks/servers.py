"""The servers under test: ours (``dicomweb serve``) and Orthanc + its DICOMweb plugin.

Each server starts empty in its own temporary directory, on free loopback ports,
and is stopped (and its data removed) by ``stop``. ``restart`` keeps the data, which
is how the cold-cache measurements get a fresh process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import httpx

REPO = Path(__file__).resolve().parent.parent
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
OURS_COMMAND = (
    str(REPO / ".venv" / "bin" / "dicomweb"),
    "serve",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--data-dir",
    "{data_dir}",
)
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not start, or died."""


class BenchServer(Protocol):
    """What the harness needs from a server under test."""

    name: str

    @property
    def base_url(self) -> str:
        """The DICOMweb root (no trailing slash): QIDO/WADO live under it."""
        ...

    @property
    def stow_url(self) -> str: ...

    @property
    def pid(self) -> int:
        """The root of the server's process tree (sampled in /proc)."""
        ...

    @property
    def data_dir(self) -> Path: ...

    async def start(self) -> None: ...

    async def restart(self) -> None:
        """Stop and start again on the same data (a cold process)."""
        ...

    async def stop(self) -> None:
        """Stop and delete the data."""
        ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def evict_page_cache(directory: Path) -> int:
    """Drop ``directory``'s files from the page cache (no privileges needed).

    Returns how many files were advised. Only clean pages are dropped, so callers
    make sure the data is on disk first (both servers fsync before answering).
    """
    count = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


class ChildProcess:
    """A child process in its own session, stopped by process group id."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(argv),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise ServerError(f"{self.name} is not running")
        return self.popen.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def wait_ready(self, url: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.popen is not None and self.popen.poll() is not None:
                    raise ServerError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise ServerError(f"{self.name} not ready after {within:.0f} s:\n{self.log_tail()}")

    async def terminate(self, grace: float = 20.0) -> None:
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        try:
            os.killpg(popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while popen.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child
            await asyncio.sleep(0.05)
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()


class _TempDirServer:
    """What both servers share: a temp dir of their own, a child process on a free port."""

    #: The DICOMweb root under the server's address, and its storage under the temp dir.
    ROOT = ""
    DATA_SUBDIR = ""

    def __init__(self, name: str, root: Path | None) -> None:
        self.name = name
        self._root_parent = root
        self._tmp: Path | None = None
        self._port = 0
        self._proc: ChildProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}{self.ROOT}"

    @property
    def stow_url(self) -> str:
        return f"{self.base_url}/studies"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError("not started")
        return self._proc.pid

    @property
    def data_dir(self) -> Path:
        if self._tmp is None:
            raise ServerError("not started")
        return self._tmp / self.DATA_SUBDIR

    def _make_tmp(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir=self._root_parent))

    async def _launch(self) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        if self._proc is not None:
            await self._proc.terminate()
        await self._launch()

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.terminate()
            self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class OursServer(_TempDirServer):
    """``dicomweb serve`` on a data directory (filesystem store, SQLite catalog).

    ``command`` is a template ({host}, {port}, {data_dir}); ``env`` and ``extra_args``
    let a scenario run the same server on another backend (e.g. an S3 store).
    """

    ROOT = "/dicomweb"
    DATA_SUBDIR = "data"

    def __init__(
        self,
        *,
        name: str = "ours",
        command: Sequence[str] = OURS_COMMAND,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        root: Path | None = None,
    ) -> None:
        super().__init__(name, root)
        self._command = tuple(command) + tuple(extra_args)
        self._env = dict(env or {})

    async def start(self) -> None:
        self._make_tmp()
        self.data_dir.mkdir()
        await self._launch()

    async def _launch(self) -> None:
        assert self._tmp is not None
        self._port = free_port()
        argv = [a.format(host=HOST, port=self._port, data_dir=self.data_dir) for a in self._command]
        self._proc = ChildProcess(self.name, self._tmp)
        self._proc.spawn(argv, self._env)
        await self._proc.wait_ready(f"http://{HOST}:{self._port}/healthz")


class OrthancServer(_TempDirServer):
    """Orthanc 1.10 + DICOMweb plugin with its own configuration, storage in a temp dir.

    Durability as shipped (``SyncStorageArea`` true). HTTP compression is off so that
    neither server spends CPU on gzip (the client asks for identity anyway). Orthanc
    cannot choose its listen address; ``RemoteAccessAllowed`` false limits it to
    loopback clients.
    """

    ROOT = "/dicom-web"
    DATA_SUBDIR = "storage"

    def __init__(self, *, name: str = "orthanc", root: Path | None = None) -> None:
        super().__init__(name, root)

    async def start(self) -> None:
        if not ORTHANC_BINARY.exists() or not ORTHANC_DICOMWEB_PLUGIN.exists():
            raise ServerError("Orthanc missing: apt-get install -y orthanc orthanc-dicomweb")
        self._make_tmp()
        await self._launch()

    async def _launch(self) -> None:
        assert self._tmp is not None
        self._port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self._tmp / "storage"),
            "IndexDirectory": str(self._tmp / "index"),
            "HttpPort": self._port,
            "HttpServerEnabled": True,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpCompressionEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "SyncStorageArea": True,
            "StorageCompression": False,
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        config_path = self._tmp / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=1))
        self._proc = ChildProcess(self.name, self._tmp)
        self._proc.spawn([str(ORTHANC_BINARY), str(config_path)])
        await self._proc.wait_ready(f"http://{HOST}:{self._port}/system")


def make_server(kind: str, *, name: str, root: Path | None = None, workers: int = 1) -> BenchServer:
    """``ours`` or ``orthanc`` (``orthanc`` as "ours" checks the harness itself: ratios ~1)."""
    if kind == "ours":
        # Always explicit: ``dicomweb serve`` alone runs one worker per core.
        return OursServer(name=name, root=root, extra_args=("--workers", str(workers)))
    if kind == "orthanc":
        return OrthancServer(name=name, root=root)
    raise ValueError(f"unknown server kind {kind!r}")
