"""STOW-RS scenarios: throughput at c=1/8 x 1/10 instances per request, and the big instances."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from functools import partial

import httpx
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from benchmarks.client import (
    ACCEPT_JSON,
    ACCEPT_OCTETS,
    SOP_INSTANCE_UID,
    STOW_CONTENT_TYPE,
    check_stow,
    multipart_body,
    multipart_prefix,
    multipart_suffix,
    new_client,
    run_concurrently,
    split_multipart,
    stow_referenced,
)
from benchmarks.context import RoundContext
from benchmarks.dataset import MF_WORD_SC, Instance
from benchmarks.procstat import ProcessProbe, process_tree

# (concurrency, instances per request); each configuration stores its own quarter of the slices.
STOW_CONFIGS = ((1, 1), (1, 10), (8, 1), (8, 10))
MIB = 1024 * 1024


def stow_parts(slices: Sequence[Instance], rounds: int) -> list[list[Instance]]:
    """One part per (round, configuration): slice i goes to part i % (4 x rounds).

    Each instance is stored once per server over the whole run, and every part
    spans every study, so the parts are alike.
    """
    n = len(STOW_CONFIGS) * rounds
    return [list(slices[k::n]) for k in range(n)]


def renamed_copy(data: bytes, inst: Instance, round_no: int) -> tuple[bytes, Instance]:
    """``inst`` under another SOP Instance UID of the same length (a new instance per round)."""
    if round_no == 0:
        return data, inst
    old = inst.sop
    if not old.rsplit(".", 1)[-1][-4:].isdigit():
        raise ValueError(f"cannot derive a same-length UID from {old}")
    new = old[:-3] + f"{(int(old[-3:]) + round_no) % 1000:03d}"
    copy = data.replace(old.encode(), new.encode())
    return copy, replace(inst, sop=new, body_sha256=hashlib.sha256(copy[inst.body_offset :]).hexdigest())


async def post_batches(
    ctx: RoundContext, batches: Sequence[Sequence[Instance]], concurrency: int, metric: str
) -> tuple[float, float]:
    """POST prebuilt bodies; returns (wall seconds, server CPU seconds). Checks every answer."""
    bodies = [multipart_body(ctx.data.read(i) for i in batch) for batch in batches]
    headers = {"Content-Type": STOW_CONTENT_TYPE, "Accept": ACCEPT_JSON}
    probe = ctx.probe
    async with new_client(concurrency) as client:
        jobs = [partial(client.post, ctx.server.stow_url, content=b, headers=headers) for b in bodies]
        before = probe.snapshot()
        wall, answers = await run_concurrently(jobs, concurrency)
        cpu = probe.snapshot().cpu_s - before.cpu_s
    checks = ctx.checks_for(metric)
    for answer, batch in zip(answers, batches, strict=True):
        for sop in check_stow(checks, answer.response, batch):
            ctx.stored[sop] = next(i for i in batch if i.sop == sop)
    return wall, cpu


async def run_stow(ctx: RoundContext) -> None:
    """Throughput per configuration on this round's parts; the test files in round 0 (not timed)."""
    parts = stow_parts(ctx.data.slices, ctx.rounds)[len(STOW_CONFIGS) * ctx.round_no :]
    for (concurrency, per_request), part in zip(STOW_CONFIGS, parts, strict=False):
        key = f"stow_c{concurrency}_x{per_request}"
        batches = [part[k : k + per_request] for k in range(0, len(part), per_request)]
        wall, cpu = await post_batches(ctx, batches, concurrency, key)
        ctx.record(f"{key}_inst_s", len(part) / wall)
        ctx.record(f"{key}_mb_s", sum(i.size for i in part) / wall / 1e6)
        ctx.record(f"{key}_cpu_ms", cpu * 1000 / len(part))
    if ctx.round_no == 0:
        await store_testfiles(ctx)


async def store_testfiles(ctx: RoundContext) -> None:
    """Test files one per request: a server may refuse some; QIDO expects what it acknowledged."""
    headers = {"Content-Type": STOW_CONTENT_TYPE, "Accept": ACCEPT_JSON}
    refused = []
    async with new_client(1) as client:
        for inst in ctx.data.testfiles:
            r = await client.post(
                ctx.server.stow_url, content=multipart_body([ctx.data.read(inst)]), headers=headers
            )
            try:
                stored, _failed = stow_referenced(r.content)
            except (ValueError, KeyError, IndexError, TypeError):
                stored = []
            if inst.sop in stored:
                ctx.stored[inst.sop] = inst
            else:
                refused.append(f"{inst.path} ({r.status_code})")
    if refused:
        ctx.notes.append(f"test files refused: {', '.join(refused)}")
    ctx.record("testfiles_stored", len(ctx.data.testfiles) - len(refused))


async def load_untimed(ctx: RoundContext, instances: Sequence[Instance]) -> None:
    """Store whatever a later scenario needs when the STOW scenarios were not selected."""
    todo = [i for i in instances if i.sop not in ctx.stored]
    if todo:
        await post_batches(ctx, [todo[k : k + 10] for k in range(0, len(todo), 10)], 8, "load")


class _PeakSampler:
    """RSS high-water mark of a process tree: VmHWM when resettable, else 10 ms sampling.

    The sampling fallback reads a fixed list of processes, not the whole of /proc,
    so it costs the machine little while the server works.
    """

    def __init__(self, probe: ProcessProbe) -> None:
        self._probe = probe
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PeakSampler:
        self.baseline = self._probe.snapshot().rss
        self._peak = self.baseline
        self._hwm = self._probe.reset_peak()
        if not self._hwm:
            self._thread = threading.Thread(target=self._sample, args=(process_tree(self._probe.pid),))
            self._thread.start()
        return self

    def _sample(self, pids: list[int]) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._probe.snapshot(pids).rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._hwm:
            self._peak = max(self._peak, self._probe.peak_rss())

    @property
    def growth(self) -> int:
        return max(0, self._peak - self.baseline)


async def run_big(ctx: RoundContext) -> None:
    """The ~105 MB multi-frame instance (a new copy each round) and the streamed multi-GiB one."""
    data, mf = renamed_copy(ctx.data.read(ctx.data.multiframe), ctx.data.multiframe, ctx.round_no)
    body = multipart_body([data])
    del data
    headers = {"Content-Type": STOW_CONTENT_TYPE, "Accept": ACCEPT_JSON}
    async with new_client(1) as client:
        with _PeakSampler(ctx.probe) as peak:
            start = time.perf_counter()
            r = await client.post(ctx.server.stow_url, content=body, headers=headers)
            elapsed = time.perf_counter() - start
        del body
        if check_stow(ctx.checks_for("big_mf"), r, [mf]):
            ctx.stored[mf.sop] = mf
        ctx.record("big_mf_s", elapsed)
        ctx.record("big_mf_rss_mib", peak.growth / MIB)
        if ctx.round_no >= ctx.sizes.stream_rounds:
            return

        stream = StreamedInstance(ctx.sizes.stream_bytes, ctx.seed)
        headers = {**headers, "Content-Length": str(stream.content_length)}
        with _PeakSampler(ctx.probe) as peak:
            start = time.perf_counter()
            r = await client.post(ctx.server.stow_url, content=stream.body(), headers=headers)
            elapsed = time.perf_counter() - start
        ok = check_stow(ctx.checks_for("big_stream"), r, [stream.instance])
        ctx.record("big_stream_s", elapsed)
        ctx.record("big_stream_rss_mib", peak.growth / MIB)
        if ok:
            ctx.stored[stream.instance.sop] = stream.instance
            if ctx.sizes.stream_frame_check:
                # The last frame is the one most likely to be wrong (an offset overflow, a short write).
                await check_stream_frame(ctx, client, stream)
            else:
                await check_stream_listed(ctx, client, stream)


async def check_stream_frame(ctx: RoundContext, client: httpx.AsyncClient, stream: StreamedInstance) -> None:
    inst = stream.instance
    url = (
        f"{ctx.server.base_url}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
        f"/frames/{stream.frames}"
    )
    start = time.perf_counter()
    r = await client.get(url, headers={"Accept": ACCEPT_OCTETS})
    ctx.record("big_stream_last_frame_s", time.perf_counter() - start)
    parts = split_multipart(r.headers.get("content-type", ""), r.content) if r.status_code == 200 else []
    ctx.checks_for("big_stream").expect(
        parts == [stream.frame(stream.frames)], f"last frame of the streamed instance: HTTP {r.status_code}"
    )


async def check_stream_listed(ctx: RoundContext, client: httpx.AsyncClient, stream: StreamedInstance) -> None:
    inst = stream.instance
    r = await client.get(
        f"{ctx.server.base_url}/studies/{inst.study}/series/{inst.series}/instances",
        headers={"Accept": ACCEPT_JSON},
    )
    try:
        listed = (
            [d[SOP_INSTANCE_UID]["Value"][0] for d in json.loads(r.content)] if r.status_code == 200 else []
        )
    except (ValueError, KeyError, IndexError, TypeError):
        listed = []
    ctx.checks_for("big_stream").expect(
        listed == [inst.sop], f"streamed instance listed: HTTP {r.status_code}"
    )


class StreamedInstance:
    """A multi-frame instance of ``pixel_bytes`` generated while it is sent (never held in memory)."""

    ROWS = 512
    CHUNK_FRAMES = 4

    def __init__(self, pixel_bytes: int, seed: int) -> None:
        self.frame_size = self.ROWS * self.ROWS * 2
        self.frames = pixel_bytes // self.frame_size
        self._block = np.random.default_rng(seed).integers(0, 4096, self.ROWS * self.ROWS, dtype=np.uint16)
        sop = generate_uid(prefix=None, entropy_srcs=[str(seed), "stream", str(pixel_bytes)])
        study = generate_uid(prefix=None, entropy_srcs=[str(seed), "stream-study", str(pixel_bytes)])
        series = generate_uid(prefix=None, entropy_srcs=[str(seed), "stream-series", str(pixel_bytes)])
        self.header = self._header(sop, study, series)
        pixel_len = self.frames * self.frame_size
        self.content_length = len(multipart_prefix()) + len(self.header) + pixel_len + len(multipart_suffix())
        self.instance = Instance(
            path="",
            kind="stream",
            study=study,
            series=series,
            sop=sop,
            size=len(self.header) + pixel_len,
            body_offset=0,
            body_sha256="",
            patient_id="BMSTREAM",
            patient_name="STREAM^BIG",
            study_date="20240101",
            accession="ASTREAM",
            modality="OT",
            frames=self.frames,
            frame_size=self.frame_size,
            pixel_offset=len(self.header),
        )

    def _header(self, sop: str, study: str, series: str) -> bytes:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = UID(MF_WORD_SC)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MF_WORD_SC, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = "BMSTREAM", "STREAM^BIG"
        ds.StudyDate, ds.AccessionNumber, ds.Modality = "20240101", "ASTREAM", "OT"
        ds.SeriesNumber, ds.InstanceNumber = 1, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = self.ROWS
        ds.NumberOfFrames = self.frames
        ds.FrameTime, ds.FrameIncrementPointer = "33.3", (0x0018, 0x1063)
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        # Pixel Data, OW, explicit 32-bit length (the value follows as the stream).
        pixel_len = self.frames * self.frame_size
        return buf.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_len.to_bytes(4, "little")

    def frame(self, number: int) -> bytes:
        """Frame ``number`` (1-based): the block with the number stamped into its first pixels."""
        block = self._block.copy()
        block[:4] = np.frombuffer(number.to_bytes(8, "little"), dtype=np.uint16)
        return block.tobytes()

    async def body(self) -> AsyncIterator[bytes]:
        yield multipart_prefix() + self.header
        base = self._block.tobytes()
        tail = base[8:]
        for first in range(1, self.frames + 1, self.CHUNK_FRAMES):
            last = min(first + self.CHUNK_FRAMES, self.frames + 1)
            yield b"".join(n.to_bytes(8, "little") + tail for n in range(first, last))
        yield multipart_suffix()
