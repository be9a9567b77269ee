"""Crash consistency, proven: the server is killed with SIGKILL at random points while
clients store multi-instance requests, on the embedded default (file store + SQLite) and on
S3 (SeaweedFS) + PostgreSQL.

After each restart: every instance whose 200/202 answer reached a client retrieves
byte-identical with matching metadata; everything listed is retrievable (and is something a
client sent); the store and the catalog agree once the start-up sweep ran (checked with the
same code as ``dicomweb fsck``, polled with a deadline, and by the CLI at the end); and the
outbox delivers an ``ImageStoredEvent`` for every acknowledged instance.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_core.config import load_settings
from dicomweb_core.runtime import build_database_catalog, build_store
from dicomweb_core.sweep import SweepReport, sweep
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import DICOMWEB, ServiceProcess
from tests.sink import EventSink

KILL_POINTS = 20
CLIENTS = 8
TIME_BUDGET = 90.0
RETRIEVE = {"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


#: Each variant of one SOP Instance UID has its own Rows, so metadata tells them apart.
ROWS = (8, 16, 24, 32, 40, 48)


@dataclass
class Sent:
    study: str
    series: str
    sop: str
    blob: bytes
    rows: int


@dataclass
class Ledger:
    """What clients sent (every variant, by SOP Instance UID) and what was acknowledged."""

    sent: dict[str, list[Sent]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    restores: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def study_of(self, sop: str) -> str:
        return self.sent[sop][0].study


@dataclass
class Backend:
    name: str
    args: list[str]
    env: dict[str, str]
    #: ``dicomweb fsck`` arguments (a ``--data-dir`` means the file store there).
    fsck_args: list[str] = field(default_factory=list)


@pytest.fixture(params=["file+sqlite", "s3+postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    data = tmp_path / "data"
    common = {"SWEEP_GRACE_SECONDS": "0", "STARTUP_SWEEP_SECONDS": "30", "PROVIDER_NAME": "crash"}
    if request.param == "file+sqlite":
        args = ["--data-dir", str(data)]
        yield Backend(request.param, args, {**common, "DICOMWEB_DATA_DIR": str(data)}, args)
        return
    s3_admin: Any = request.getfixturevalue("s3_admin")
    s3_env: dict[str, str] = request.getfixturevalue("s3_bucket_env")
    dsn: str = request.getfixturevalue("pg_database")
    bucket = f"crash-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    env = {**s3_env, **common, "BUCKET_NAME": bucket, "CATALOG_URL": dsn, "S3_PART_SIZE": str(5 << 20)}
    yield Backend(request.param, ["--data-dir", str(data)], env)


def _variant(rng: random.Random, study: str, series: str, sop: str, rows: int) -> Sent:
    blob = make_instance(
        study_uid=study, series_uid=series, sop_uid=sop, rows=rows, cols=16, pixel_seed=rng.randint(0, 9999)
    )
    return Sent(study, series, sop, blob, rows)


def _client(base: str, ledger: Ledger, stop: threading.Event, rng: random.Random) -> None:
    """Stores requests of 2-5 new instances; about one request in three also re-stores an
    acknowledged SOP Instance UID with other content (the previous object is superseded)."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            study, series = f"2.25.{uuid.uuid4().int}"[:64], f"2.25.{uuid.uuid4().int}"[:64]
            batch = [
                _variant(rng, study, series, f"2.25.{uuid.uuid4().int}"[:64], rng.choice(ROWS))
                for _ in range(rng.randint(2, 5))
            ]
            with ledger.lock:
                if ledger.acked and rng.random() < 0.35:
                    old = ledger.sent[rng.choice(sorted(ledger.acked))]
                    unused = [r for r in ROWS if r not in {v.rows for v in old}]
                    if unused:
                        batch.append(
                            _variant(rng, old[0].study, old[0].series, old[0].sop, rng.choice(unused))
                        )
                        ledger.restores += 1
                for sent in batch:
                    ledger.sent.setdefault(sent.sop, []).append(sent)
            body, ctype = multipart_related([s.blob for s in batch])
            try:
                resp = http.post(base + "/dicomweb/studies", content=body, headers={"content-type": ctype})
            except httpx.HTTPError:
                return  # the server died under us: nothing of this request was acknowledged
            if resp.status_code in (200, 202):
                refs = resp.json().get("00081199", {}).get("Value", [])
                with ledger.lock:
                    ledger.acked.update(r["00081155"]["Value"][0] for r in refs)


class Checker:
    """The ``dicomweb fsck`` check (same code), in-process against the live backend; the
    store and the catalog stay open between rounds (an S3 client costs a second to make)."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = load_settings(env)
        self.loop = asyncio.new_event_loop()
        self.store = build_store(settings)
        self.catalog = build_database_catalog(settings)
        self.loop.run_until_complete(self.catalog.open())

    def report(self) -> SweepReport:
        check = sweep(self.store, self.catalog, cutoff=time.time(), repair=False, check_rows=True)
        return self.loop.run_until_complete(check)

    def _snapshot(self) -> tuple[list[str], int]:
        async def listing() -> tuple[list[str], int]:
            keys = sorted([o.key async for o in self.store.list_objects()])
            leftovers = len([x async for x in self.store.list_leftovers()])
            return keys, leftovers

        return self.loop.run_until_complete(listing())

    def settle(self, quiet: float = 0.5, timeout: float = 15.0) -> None:
        """Wait until the store stops changing: an S3 server finishes a killed process's
        in-flight requests (an upload's completion) after the process is gone, and a restart
        whose start-up sweep ran before that would leave the object it completes unswept."""
        deadline = time.monotonic() + timeout
        last = self._snapshot()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self._snapshot()
            if now == last:
                return
            last = now

    def close(self) -> None:
        self.loop.run_until_complete(self.catalog.close())
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


def _verify(base: str, ledger: Ledger, studies: set[str]) -> int:
    """Every acknowledged instance of ``studies`` retrieves byte-identical with matching
    metadata; everything listed there retrieves and was sent by a client. Returns how many
    acknowledged instances were verified."""
    verified = 0
    with httpx.Client(timeout=30) as http:
        for study in sorted(studies):
            meta = http.get(f"{base}/dicomweb/studies/{study}/metadata")
            acked = {s for s in ledger.acked if ledger.study_of(s) == study}
            if meta.status_code == 404:
                assert not acked, f"study {study} lost acknowledged instances {acked}"
                continue
            assert meta.status_code == 200, meta.text
            listed = {m["00080018"]["Value"][0]: m for m in meta.json()}
            assert acked <= set(listed), f"acknowledged but not listed: {acked - set(listed)}"
            got = http.get(f"{base}/dicomweb/studies/{study}", headers=RETRIEVE)
            assert got.status_code == 200, got.text[:300]
            for sop, m in listed.items():
                variants = ledger.sent.get(sop)
                assert variants is not None, f"listed instance {sop} was never sent"
                # Row, metadata and bytes of one and the same upload (whichever won).
                served = [v for v in variants if v.blob in got.content]
                assert len(served) == 1, f"bytes of {sop} are none of what was stored"
                assert m["00280010"]["Value"] == [served[0].rows], f"metadata of {sop} is not its bytes'"
                verified += sop in acked
            boundary = got.headers["content-type"].split("boundary=")[1].strip('"').encode()
            assert got.content.count(b"--" + boundary + b"\r\n") == len(listed), "listed but not retrievable"
    return verified


def _wait_consistent(checker: Checker, timeout: float = 30.0) -> SweepReport:
    deadline = time.monotonic() + timeout
    while True:
        report = checker.report()
        if not report.problems and not report.young and not report.young_leftovers:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"store and catalog still disagree after the start-up sweep: {report}")
        time.sleep(0.2)


def test_sigkill_at_random_points_loses_nothing_acknowledged(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random()
    sink = EventSink().start()
    env = {**backend.env, "K_SINK": sink.url}
    server = ServiceProcess("serve", args=backend.args, env=env, log_path=tmp_path / "server.log")
    ledger = Ledger()
    kills = verified = 0
    started = time.monotonic()
    checker: Checker | None = None
    try:
        server.start(timeout=30)
        checker = Checker(env)  # after the first start: the catalog exists and is migrated
        for _ in range(KILL_POINTS):
            stop = threading.Event()
            before = {s: len(v) for s, v in ledger.sent.items()}
            threads = [
                threading.Thread(
                    target=_client, args=(server.base, ledger, stop, random.Random(rng.random()))
                )
                for _ in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 1.0))
            server.kill()
            kills += 1
            stop.set()
            for t in threads:
                t.join(30)
            checker.settle()
            server.start(timeout=30)
            # Studies with anything sent this round: new instances and re-stored ones.
            touched = {ledger.study_of(s) for s, v in ledger.sent.items() if len(v) != before.get(s)}
            verified += _verify(server.base, ledger, touched)
            _wait_consistent(checker)
        # Everything once more at the end, the CLI fsck included, and the events.
        all_studies = {v[0].study for v in ledger.sent.values()}
        final = _verify(server.base, ledger, all_studies)
        fsck = subprocess.run(
            [DICOMWEB, "fsck", *backend.fsck_args], env={**env}, capture_output=True, text=True, timeout=120
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        delivered: set[str] = set()
        deadline = time.monotonic() + 60
        while not ledger.acked <= delivered and time.monotonic() < deadline:
            for event in list(sink.events):
                if len(event.body) != int(event.headers.get("content-length", -1)):
                    continue  # cut off by a kill: not delivered (the outbox sends it again)
                body = event.json()
                for e in body["image"]["elements"]:
                    if (e["group"], e["element"]) == ("0008", "0018"):
                        delivered.add(e["value"])
            time.sleep(0.2)
        assert ledger.acked <= delivered, f"{len(ledger.acked - delivered)} acknowledged without an event"
    finally:
        if checker is not None:
            checker.close()
        server.stop()
        sink.stop()
    elapsed = time.monotonic() - started
    assert kills >= KILL_POINTS
    assert ledger.acked, "no store was acknowledged: the kill points came too early"
    with capsys.disabled():
        print(
            f"\n[crash {backend.name}] kill points: {kills}, requests' instances sent: "
            f"{len(ledger.sent)}, re-stores of acknowledged UIDs with other content: {ledger.restores}, "
            f"acknowledged: {len(ledger.acked)}, acknowledged-instance checks after restarts: {verified}, "
            f"verified at the end: {final}, events delivered for acknowledged: {len(ledger.acked)}, "
            f"{elapsed:.0f} s"
        )
    assert final == len(ledger.acked)
