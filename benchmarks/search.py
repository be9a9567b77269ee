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
from collections.abc import Callable
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


def _matching(studies: list[Study], predicate: Callable[[Study], bool]) -> frozenset[str]:
    return frozenset(s.uid for s in studies if predicate(s))


def _in_range(date: str, lo: str, hi: str) -> bool:
    return bool(date) and lo <= date <= hi


def _name_match(pattern: str, name: str, case_sensitive: bool) -> bool:
    if case_sensitive:
        return fnmatch.fnmatchcase(name, pattern)
    return fnmatch.fnmatchcase(name.upper(), pattern.upper())


def build_queries(stored: dict[str, Instance], per_kind: int) -> dict[str, list[Query]]:
    """Up to ``per_kind`` distinct queries of each kind (the walk is built separately)."""
    studies = studies_of(stored)
    generated = [s for s in studies if s.patient_id.startswith("BM")]
    q: dict[str, list[Query]] = defaultdict(list)

    counts = Counter(s.patient_id for s in generated)
    for pid, _n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:per_kind]:
        q["patient_id"].append(
            Query("patient_id", f"PatientID={pid}", _matching(studies, lambda s, p=pid: s.patient_id == p))
        )

    prefixes = sorted({s.patient_name[:3] for s in generated})
    for prefix in prefixes:
        pattern = f"{prefix}*"
        sensitive = _matching(studies, lambda s, p=pattern: _name_match(p, s.patient_name, True))
        insensitive = _matching(studies, lambda s, p=pattern: _name_match(p, s.patient_name, False))
        if sensitive == insensitive and len(q["patient_name"]) < per_kind:
            q["patient_name"].append(Query("patient_name", f"PatientName={pattern}", sensitive))

    years = sorted({s.date[:4] for s in generated})
    for year in years[:per_kind]:
        lo, hi = f"{year}0101", f"{int(year) + 1}0630"
        q["study_date"].append(
            Query(
                "study_date",
                f"StudyDate={lo}-{hi}",
                _matching(studies, lambda s, a=lo, b=hi: _in_range(s.date, a, b)),
            )
        )

    for k in range(per_kind):
        modality = ("CT", "MR")[k % 2]
        q["modalities"].append(
            Query(
                "modalities",
                f"ModalitiesInStudy={modality}",
                _matching(studies, lambda s, m=modality: m in s.modalities),
            )
        )

    for study in generated[:per_kind]:
        q["accession"].append(
            Query(
                "accession",
                f"AccessionNumber={study.accession}",
                _matching(studies, lambda s, a=study.accession: s.accession == a),
            )
        )

    for study in generated:
        if len(q["combined"]) >= per_kind:
            break
        pattern = f"{study.patient_name[:2]}*"
        year = int(study.date[:4])
        lo, hi = f"{year - 1}0101", f"{year + 1}1231"
        modality = sorted(study.modalities)[0]

        def combined(
            s: Study, p: str = pattern, a: str = lo, b: str = hi, m: str = modality, case: bool = True
        ) -> bool:
            return _name_match(p, s.patient_name, case) and _in_range(s.date, a, b) and m in s.modalities

        want = _matching(studies, combined)
        if want == _matching(studies, lambda s, c=combined: c(s, case=False)):
            q["combined"].append(
                Query(
                    "combined",
                    f"PatientName={pattern}&StudyDate={lo}-{hi}&ModalitiesInStudy={modality}",
                    want,
                )
            )

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
