"""QIDO-RS scenarios: study searches of each kind, each answer compared with the expected set.

Expected sets come from the instances the server acknowledged, with the matching rules
of PS3.4 C.2.2.2 (exact single value, '*' wildcard over the whole value, inclusive date
range, ModalitiesInStudy = any series of that modality). Wildcard values are chosen so
that case-sensitive and case-insensitive matching agree, because that is a
configuration choice on Orthanc, not a correctness question.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import httpx

from benchmarks.client import ACCEPT_JSON, STUDY_INSTANCE_UID, Checks, new_client, percentile
from benchmarks.context import RoundContext
from benchmarks.dataset import Instance

QUERY_KINDS = (
    "patient_id",
    "patient_name",
    "study_date",
    "modalities",
    "accession",
    "combined",
    "all_studies",
    "walk",
)


@dataclass(frozen=True)
class Study:
    uid: str
    patient_id: str
    patient_name: str
    date: str
    accession: str
    modalities: frozenset[str]


@dataclass(frozen=True)
class Query:
    kind: str
    query: str  # the raw query string (values need no percent-encoding)
    expected: frozenset[str]


def studies_of(stored: dict[str, Instance]) -> list[Study]:
    groups: dict[str, list[Instance]] = defaultdict(list)
    for inst in stored.values():
        groups[inst.study].append(inst)
    out = []
    for uid, insts in sorted(groups.items()):
        first = insts[0]
        out.append(
            Study(
                uid,
                first.patient_id,
                first.patient_name,
                first.study_date,
                first.accession,
                frozenset(i.modality for i in insts if i.modality),
            )
        )
    return out


@dataclass(frozen=True)
class Filter:
    """A study-level search; ``None`` fields do not constrain."""

    patient_id: str | None = None
    name_pattern: str | None = None  # '*' wildcards
    date_range: tuple[str, str] | None = None
    modality: str | None = None
    accession: str | None = None

    def query(self) -> str:
        keys = [
            ("PatientID", self.patient_id),
            ("PatientName", self.name_pattern),
            ("StudyDate", "-".join(self.date_range) if self.date_range else None),
            ("ModalitiesInStudy", self.modality),
            ("AccessionNumber", self.accession),
        ]
        return "&".join(f"{k}={v}" for k, v in keys if v is not None)

    def matches(self, s: Study, case_sensitive: bool = True) -> bool:
        if self.patient_id is not None and s.patient_id != self.patient_id:
            return False
        if self.name_pattern is not None and not _name_match(
            self.name_pattern, s.patient_name, case_sensitive
        ):
            return False
        if self.date_range is not None and not (
            s.date and self.date_range[0] <= s.date <= self.date_range[1]
        ):
            return False
        if self.modality is not None and self.modality not in s.modalities:
            return False
        return self.accession is None or s.accession == self.accession

    def expected(self, studies: list[Study]) -> frozenset[str] | None:
        """The matching study UIDs, or None when the answer would depend on case sensitivity."""
        sensitive = frozenset(s.uid for s in studies if self.matches(s, True))
        insensitive = frozenset(s.uid for s in studies if self.matches(s, False))
        return sensitive if sensitive == insensitive else None


def _name_match(pattern: str, name: str, case_sensitive: bool) -> bool:
    if case_sensitive:
        return fnmatch.fnmatchcase(name, pattern)
    return fnmatch.fnmatchcase(name.upper(), pattern.upper())


def build_queries(stored: dict[str, Instance], per_kind: int) -> dict[str, list[Query]]:
    """Up to ``per_kind`` distinct queries of each kind (the walk is built separately)."""
    studies = studies_of(stored)
    generated = [s for s in studies if s.patient_id.startswith("BM")]
    candidates: dict[str, list[Filter]] = defaultdict(list)

    counts = Counter(s.patient_id for s in generated)
    for pid, _n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        candidates["patient_id"].append(Filter(patient_id=pid))
    for prefix in sorted({s.patient_name[:3] for s in generated}):
        candidates["patient_name"].append(Filter(name_pattern=f"{prefix}*"))
    for year in sorted({int(s.date[:4]) for s in generated}):
        candidates["study_date"].append(Filter(date_range=(f"{year}0101", f"{year + 1}0630")))
    for k in range(per_kind):
        candidates["modalities"].append(Filter(modality=("CT", "MR")[k % 2]))
    for study in generated:
        candidates["accession"].append(Filter(accession=study.accession))
        year = int(study.date[:4])
        candidates["combined"].append(
            Filter(
                name_pattern=f"{study.patient_name[:2]}*",
                date_range=(f"{year - 1}0101", f"{year + 1}1231"),
                modality=sorted(study.modalities)[0],
            )
        )

    q: dict[str, list[Query]] = defaultdict(list)
    for kind, filters in candidates.items():
        for f in filters:
            want = f.expected(studies)
            if want is not None and len(q[kind]) < per_kind:
                q[kind].append(Query(kind, f.query(), want))
    everything = frozenset(s.uid for s in studies)
    q["all_studies"] = [Query("all_studies", "", everything)] * per_kind
    return q


def study_uids(body: bytes) -> list[str]:
    if not body.strip():
        return []
    return [d[STUDY_INSTANCE_UID]["Value"][0] for d in json.loads(body)]


async def run_search(ctx: RoundContext) -> None:
    per_kind = ctx.sizes.qido_requests
    queries = build_queries(ctx.stored, 5)
    base = f"{ctx.server.base_url}/studies"
    headers = {"Accept": ACCEPT_JSON}
    async with new_client(1) as client:
        for kind in QUERY_KINDS[:-1]:
            checks = ctx.checks_for(f"qido_{kind}")
            variants = queries.get(kind, [])
            if not checks.expect(bool(variants), f"{kind}: no query could be built"):
                continue
            times = []
            for k in range(per_kind):
                query = variants[k % len(variants)]
                url = f"{base}?{query.query}" if query.query else base
                start = time.perf_counter()
                r = await client.get(url, headers=headers)
                times.append(time.perf_counter() - start)
                _check(checks, r.status_code, r.content, query)
            ctx.record(f"qido_{kind}_p50_ms", percentile(times, 50) * 1000)
            ctx.record(f"qido_{kind}_p95_ms", percentile(times, 95) * 1000)
        await _walk(ctx, client, base, queries["all_studies"][0].expected)


def _check(checks: Checks, status: int, body: bytes, query: Query) -> None:
    try:
        got = study_uids(body) if status in (200, 204) else None
    except (ValueError, KeyError, IndexError, TypeError):
        got = None
    if got is None:
        checks.expect(False, f"{query.kind} {query.query!r}: HTTP {status}, unreadable")
        return
    checks.expect(
        sorted(got) == sorted(query.expected),
        f"{query.kind} {query.query!r}: {len(got)} studies, want {len(query.expected)}"
        f" ({len(set(got) - query.expected)} extra, {len(query.expected - set(got))} missing)",
    )


async def _walk(ctx: RoundContext, client: httpx.AsyncClient, base: str, everything: frozenset[str]) -> None:
    """limit/offset pages until a short page; their union is every study, each once."""
    limit = 10 if len(everything) > 40 else 3
    checks = ctx.checks_for("qido_walk")
    seen: list[str] = []
    times = []
    offset = 0
    while offset <= len(everything) + limit:
        start = time.perf_counter()
        r = await client.get(f"{base}?limit={limit}&offset={offset}", headers={"Accept": ACCEPT_JSON})
        times.append(time.perf_counter() - start)
        try:
            page = study_uids(r.content) if r.status_code in (200, 204) else []
        except (ValueError, KeyError, IndexError, TypeError):
            page = []
        checks.expect(
            r.status_code in (200, 204) and len(page) <= limit,
            f"walk offset {offset}: HTTP {r.status_code}, {len(page)} results",
        )
        seen += page
        offset += limit
        if len(page) < limit:
            break
    checks.expect(
        len(seen) == len(set(seen)) and set(seen) == everything,
        f"walk: {len(seen)} results, {len(set(seen))} distinct, want {len(everything)}",
    )
    ctx.record("qido_walk_p50_ms", percentile(times, 50) * 1000)
    ctx.record("qido_walk_p95_ms", percentile(times, 95) * 1000)
