"""The benchmark client: httpx (async), multipart/related bodies, answer checks, statistics.

Timing and checking are separate: a phase collects raw answers while the clock runs
and checks every one of them afterwards, so the client's own hashing does not take
CPU from the server during the measurement, and nothing that was timed goes unchecked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.dataset import Instance

BOUNDARY = "BENCHMARK-7d1f0c9a2e4b"
STOW_CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
ACCEPT_DICOM = 'multipart/related; type="application/dicom"'
ACCEPT_OCTETS = 'multipart/related; type="application/octet-stream"'
ACCEPT_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
STUDY_INSTANCE_UID = "0020000D"
SOP_INSTANCE_UID = "00080018"


def new_client(concurrency: int) -> httpx.AsyncClient:
    # Identity encoding: neither server should spend CPU compressing pixel data.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(600.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"Accept-Encoding": "identity"},
    )


def multipart_body(parts: Iterable[bytes]) -> bytes:
    """A multipart/related body with ``BOUNDARY``, built once in memory."""
    chunks: list[bytes] = []
    for part in parts:
        chunks += [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks)


def multipart_prefix() -> bytes:
    return f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()


def multipart_suffix() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The part bodies of a multipart response (headers dropped)."""
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if boundary is None:
        raise ValueError(f"no boundary in {content_type!r}")
    delimiter = b"--" + boundary.encode()
    pieces = body.split(b"\r\n" + delimiter)
    # The first piece starts with the delimiter itself (no CRLF before the first one).
    first = pieces[0]
    if not first.startswith(delimiter):
        raise ValueError("body does not start with the boundary")
    pieces[0] = first[len(delimiter) :]
    parts = []
    for piece in pieces:
        if piece.startswith(b"--"):
            break  # the close delimiter
        _headers, sep, content = piece.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("part without a header/body separator")
        parts.append(content)
    return parts


def dicom_body_digest(data: bytes) -> str:
    """SHA-256 of a DICOM file after its file meta group (servers may rewrite the meta)."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise ValueError("not a DICOM file with a meta group length")
    offset = 144 + int.from_bytes(data[140:144], "little")
    return hashlib.sha256(memoryview(data)[offset:]).hexdigest()


@dataclass
class Checks:
    """How many timed answers were checked, and what was wrong with the others."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def expect(self, condition: bool, message: str) -> bool:
        if condition:
            self.ok += 1
        else:
            self.failures.append(message)
        return condition

    def merge(self, other: Checks) -> None:
        self.ok += other.ok
        self.failures += other.failures


def stow_referenced(body: bytes) -> tuple[list[str], int]:
    """SOP Instance UIDs a STOW response lists as stored, and how many failed."""
    doc: dict[str, Any] = json.loads(body)
    stored = [
        item[REFERENCED_SOP_INSTANCE_UID]["Value"][0]
        for item in doc.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])
    ]
    failed = len(doc.get(FAILED_SOP_SEQUENCE, {}).get("Value", []))
    return stored, failed


def check_stow(checks: Checks, response: httpx.Response, sent: Sequence[Instance]) -> set[str]:
    """Each sent instance must be listed as stored; returns the stored SOP UIDs."""
    want = {i.sop for i in sent}
    try:
        stored, failed = stow_referenced(response.content)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        checks.expect(False, f"STOW {response.status_code}: unreadable response ({exc})")
        return set()
    checks.expect(
        response.status_code == 200 and set(stored) == want and failed == 0,
        f"STOW {response.status_code}: {len(set(stored) & want)}/{len(want)} listed as stored, "
        f"{failed} failed",
    )
    return set(stored) & want


@dataclass
class Timed:
    """One timed request: its latency and the answer to check afterwards."""

    seconds: float
    response: httpx.Response
    tag: Any = None


async def run_concurrently(
    jobs: Sequence[Callable[[], Awaitable[httpx.Response]]], concurrency: int, tags: Sequence[Any] = ()
) -> tuple[float, list[Timed]]:
    """Run ``jobs`` with ``concurrency`` workers; wall time and every timed answer, in job order."""
    results: list[Timed | None] = [None] * len(jobs)
    next_job = iter(range(len(jobs)))

    async def worker() -> None:
        for index in next_job:
            start = time.perf_counter()
            response = await jobs[index]()
            results[index] = Timed(time.perf_counter() - start, response, tags[index] if tags else None)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return wall, [r for r in results if r is not None]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
