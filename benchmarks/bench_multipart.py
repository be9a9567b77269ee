"""Throughput of the streaming multipart/related reader.

Builds a body of large pseudo-random parts (default: 2 x 100 MiB), splits it into
``bytes`` chunks the way an ASGI server hands them over (64 KiB, 256 KiB, 1 MiB), and
times ``feed()`` over all chunks, consuming every event. Chunks are made before the clock
starts, so only the parser is measured.

Run: ``.venv/bin/python benchmarks/bench_multipart.py [--parts N] [--part-mib M] [--repeat R]
[--boundary-length L]`` (L = 73 is what Orthanc's DICOMweb client sends).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dicomweb_core.multipart import MultipartRelatedReader, PartData, PartEnd, PartStart

BOUNDARY = b"dicomweb-bench-7d9f3c2a1b"
CHUNK_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024)
MIB = 1024 * 1024


def make_body(parts: int, part_size: int, *, adversarial: bool, boundary: bytes = BOUNDARY) -> bytes:
    """A multipart/related body; ``adversarial`` parts are dense with near-delimiters."""
    BOUNDARY = boundary
    pieces = [b"preamble\r\n"]
    for _ in range(parts):
        pieces.append(b"\r\n--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n")
        if adversarial:
            # "\r\n--<boundary>X" is not a delimiter but matches the search every 64 bytes.
            unit = b"\r\n--" + BOUNDARY + b"X" + os.urandom(max(0, 64 - len(BOUNDARY) - 5))
            pieces.append(unit * (part_size // len(unit)))
        else:
            pieces.append(os.urandom(part_size))
    pieces.append(b"\r\n--" + BOUNDARY + b"--\r\n")
    return b"".join(pieces)


def run_once(chunks: list[bytes], boundary: bytes = BOUNDARY) -> tuple[float, int, int]:
    reader = MultipartRelatedReader(boundary)
    body_bytes = 0
    parts = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        for event in reader.feed(chunk):
            if isinstance(event, PartData):
                body_bytes += len(event.data)
            elif isinstance(event, PartStart | PartEnd):
                parts += isinstance(event, PartEnd)
    reader.close()
    return time.perf_counter() - t0, body_bytes, parts


def bench(label: str, body: bytes, repeat: int, out: list[str], boundary: bytes = BOUNDARY) -> None:
    for size in CHUNK_SIZES:
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        best = min(run_once(chunks, boundary)[0] for _ in range(repeat))
        _, body_bytes, parts = run_once(chunks, boundary)
        out.append(
            f"{label:<12} chunk {size // 1024:>5} KiB: {len(body) / best / 1e6:>8.0f} MB/s "
            f"({best * 1e3:.1f} ms for {len(body) / MIB:.0f} MiB, {parts} parts, "
            f"{body_bytes / MIB:.0f} MiB of body)"
        )
        del chunks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--part-mib", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-adversarial", action="store_true", help="skip the near-delimiter body")
    ap.add_argument("--boundary-length", type=int, default=len(BOUNDARY), help="boundary characters")
    args = ap.parse_args()
    boundary = (BOUNDARY * (args.boundary_length // len(BOUNDARY) + 1))[: args.boundary_length]
    lines = [
        f"Python {sys.version.split()[0]}, {args.parts} parts x {args.part_mib} MiB,"
        f" {len(boundary)}-character boundary"
    ]
    body = make_body(args.parts, args.part_mib * MIB, adversarial=False, boundary=boundary)
    bench("random", body, args.repeat, lines, boundary)
    if not args.no_adversarial:
        body = make_body(1, args.part_mib * MIB, adversarial=True, boundary=boundary)
        bench("adversarial", body, args.repeat, lines, boundary)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
