"""QIDO-RS study searches over 1,000,000 catalogued instances in PostgreSQL.

Creates a fresh database (``dicomweb_bench_qido`` on the server of ``--admin-dsn``),
inserts synthetic instances through the catalog API (``upsert_instances``, in batches),
runs ANALYZE, then times the usual study searches through ``Catalog.search`` (SQL plus
building the DICOM JSON results), each with varying values, and prints a markdown table
of p50/p95 latencies.

    .venv/bin/python benchmarks/bench_qido_1m.py [--instances 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import orjson
import psycopg

from dicomweb_core.catalog.postgres import PostgresCatalog
from dicomweb_core.catalog.qido import parse_qido
from dicomweb_core.models import InstanceRecord

FAMILY = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez",
    "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen",
    "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
]  # fmt: skip
GIVEN = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Chris", "Nancy", "Daniel", "Lisa", "Matthew", "Betty", "Anthony", "Margaret",
]  # fmt: skip
MODALITIES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
              "CR": "1.2.840.10008.5.1.4.1.1.1", "US": "1.2.840.10008.5.1.4.1.1.6.1",
              "DX": "1.2.840.10008.5.1.4.1.1.1.1", "PT": "1.2.840.10008.5.1.4.1.1.128",
              "SR": "1.2.840.10008.5.1.4.1.1.88.22"}  # fmt: skip
ROOT = "1.2.826.0.1.3680043.10.1234"


def _el(vr: str, *values: object) -> dict[str, object]:
    return {"vr": vr, "Value": list(values)}


def synthetic_studies(total: int, seed: int = 7) -> Iterator[list[InstanceRecord]]:
    """Yields one study's records at a time until ``total`` instances: 1-5 series of 1-40
    instances, 12,000 patients, dates over 15 years."""
    rng = random.Random(seed)
    n = 0
    study_no = 0
    while n < total:
        study_no += 1
        pid = rng.randrange(12000)
        prng = random.Random(pid)
        name = f"{prng.choice(FAMILY)}^{prng.choice(GIVEN)}"
        birth = f"{prng.randrange(1930, 2015)}{prng.randrange(1, 13):02d}{prng.randrange(1, 29):02d}"
        date = f"{rng.randrange(2010, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        study_uid = f"{ROOT}.{study_no}"
        common = {
            "00080005": _el("CS", "ISO_IR 100"),
            "00080020": _el("DA", date),
            "00080030": _el("TM", f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}00"),
            "00080050": _el("SH", f"ACC{study_no:08d}"),
            "00080090": _el("PN", {"Alphabetic": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"}),
            "00100010": _el("PN", {"Alphabetic": name}),
            "00100020": _el("LO", f"PID{pid:06d}"),
            "00100030": _el("DA", birth),
            "00100040": _el("CS", prng.choice("MF")),
            "0020000D": _el("UI", study_uid),
            "00200010": _el("SH", str(study_no)),
            "00081030": _el("LO", "Synthetic study"),
        }
        records: list[InstanceRecord] = []
        for se in range(1, rng.randrange(2, 7)):
            modality = rng.choice(list(MODALITIES))
            series_uid = f"{study_uid}.{se}"
            for i in range(1, rng.randrange(2, 42)):
                sop_uid = f"{series_uid}.{i}"
                meta = dict(common)
                meta.update(
                    {
                        "00080016": _el("UI", MODALITIES[modality]),
                        "00080018": _el("UI", sop_uid),
                        "00080060": _el("CS", modality),
                        "0008103E": _el("LO", f"{modality} series {se}"),
                        "0020000E": _el("UI", series_uid),
                        "00200011": _el("IS", se),
                        "00200013": _el("IS", i),
                        "00280010": _el("US", 512),
                        "00280011": _el("US", 512),
                        "7FE00010": {"vr": "OW", "BulkDataURI": f"bulk/{sop_uid}"},
                    }
                )
                records.append(
                    InstanceRecord(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_instance_uid=sop_uid,
                        sop_class_uid=MODALITIES[modality],
                        transfer_syntax_uid="1.2.840.10008.1.2.1",
                        object_key=f"{study_uid}/{series_uid}/{sop_uid}.dcm",
                        size=524_288,
                        metadata=orjson.dumps(meta),
                        instance_number=i,
                    )
                )
                n += 1
                if n >= total:
                    break
            if n >= total:
                break
        yield records


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--db", default="dicomweb_bench_qido")
    ap.add_argument("--instances", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--keep", action="store_true", help="reuse the database if it is already filled")
    args = ap.parse_args()
    out = sys.stdout
    dsn = args.admin_dsn.rsplit("/", 1)[0] + "/" + args.db

    with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.db,)).fetchone()
        if exists and not args.keep:
            conn.execute(f'DROP DATABASE "{args.db}" WITH (FORCE)')  # type: ignore[arg-type]
        if not exists or not args.keep:
            conn.execute(f'CREATE DATABASE "{args.db}"')  # type: ignore[arg-type]

    cat = PostgresCatalog(dsn)
    await cat.open()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM instances").fetchone()
        have = row[0] if row else 0
    if have < args.instances:
        t0 = time.perf_counter()
        batch: list[InstanceRecord] = []
        done = 0
        for study in synthetic_studies(args.instances):
            batch.extend(study)
            if len(batch) >= args.batch:
                await cat.upsert_instances(batch)
                done += len(batch)
                batch = []
                if done % 100_000 < args.batch:
                    rate = done / (time.perf_counter() - t0)
                    out.write(f"inserted {done:,} instances ({rate:,.0f}/s)\n")
                    out.flush()
        if batch:
            await cat.upsert_instances(batch)
            done += len(batch)
        elapsed = time.perf_counter() - t0
        out.write(f"inserted {done:,} instances in {elapsed:.0f} s ({done / elapsed:,.0f} instances/s)\n")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM series),"
            " (SELECT count(*) FROM instances), pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
        assert counts is not None
        study_ids = [r[0] for r in conn.execute("SELECT study_uid FROM studies ORDER BY random() LIMIT 200")]
    out.write(
        f"\n{counts[0]:,} studies, {counts[1]:,} series, {counts[2]:,} instances, database {counts[3]}\n\n"
    )

    rng = random.Random(1)
    n_studies = counts[0]
    mods = list(MODALITIES)
    month = lambda: f"{rng.randrange(2010, 2025)}{rng.randrange(1, 13):02d}"  # noqa: E731
    searches: list[tuple[str, str, Callable[[], list[tuple[str, str]]]]] = [
        ("study", "PatientID=PID…", lambda: [("PatientID", f"PID{rng.randrange(12000):06d}")]),
        ("study", "PatientName=Fam* limit 100", lambda: [("PatientName", f"{rng.choice(FAMILY)[:4]}*"),
                                                         ("limit", "100")]),
        ("study", "PatientName=fam fuzzy limit 100", lambda: [("PatientName", rng.choice(FAMILY)[:3].lower()),
                                                              ("fuzzymatching", "true"), ("limit", "100")]),
        ("study", "StudyDate=one month", lambda: [("StudyDate", (m := month()) + "01-" + m + "28"),
                                                  ("limit", "100")]),
        ("study", "ModalitiesInStudy=X limit 100", lambda: [("ModalitiesInStudy", rng.choice(mods)),
                                                            ("limit", "100")]),
        ("study", "AccessionNumber=ACC…", lambda: [("AccessionNumber",
                                                    f"ACC{rng.randrange(1, n_studies + 1):08d}")]),
        ("study", "all studies limit 100", lambda: [("limit", "100")]),
        ("study", "all studies limit 100 offset 5000", lambda: [("limit", "100"), ("offset", "5000")]),
        ("study", "Name* + date range + modality", lambda: [("PatientName", f"{rng.choice(FAMILY)[0]}*"),
                                                            ("StudyDate", "20150101-20191231"),
                                                            ("ModalitiesInStudy", "MR"), ("limit", "100")]),
        ("series", "/studies/{s}/series", lambda: [("__study", rng.choice(study_ids))]),
        ("instance", "/studies/{s}/instances", lambda: [("__study", rng.choice(study_ids))]),
    ]  # fmt: skip
    out.write("| search | results (median) | p50 ms | p95 ms |\n|---|---:|---:|---:|\n")
    for level, label, make in searches:
        times: list[float] = []
        sizes: list[int] = []
        for run in range(args.runs + 5):
            params = make()
            study = None
            if params and params[0][0] == "__study":
                study = params.pop(0)[1]
            query = parse_qido(level, params, study_uid=study)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            res = await cat.search(query, base_url="http://127.0.0.1:8080/dicomweb")
            dt = (time.perf_counter() - t0) * 1000
            if run >= 5:  # the first runs warm caches and prepared statements
                times.append(dt)
                sizes.append(len(res))
        out.write(
            f"| {label} | {statistics.median(sizes):.0f} | {pct(times, 50):.1f} | {pct(times, 95):.1f} |\n"
        )
    out.flush()
    await cat.close()


if __name__ == "__main__":
    asyncio.run(main())
