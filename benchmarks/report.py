"""Medians over rounds, ratios ours/Orthanc, the targets, and the markdown table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    checks: str = ""  # the Checks group whose failures invalidate this number
    target: str = ""  # the goal for ours, as text
    limit: float | None = None  # the goal as a number (checked against ours' median)


def _stow_metrics() -> list[Metric]:
    out = []
    for c, x in ((1, 1), (1, 10), (8, 1), (8, 10)):
        key, name = f"stow_c{c}_x{x}", f"STOW c={c}, {x}/request"
        out += [
            Metric(
                f"{key}_inst_s", f"{name}", "inst/s", True, key, "≥ 2x Orthanc" if (c, x) == (8, 10) else ""
            ),
            Metric(f"{key}_mb_s", f"{name}", "MB/s", True, key),
            Metric(
                f"{key}_cpu_ms",
                f"{name}: server CPU per instance",
                "ms",
                False,
                key,
                "≤ 1.2" if (c, x) == (8, 10) else "",
                1.2 if (c, x) == (8, 10) else None,
            ),
        ]
    return out


QIDO_LABELS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName wildcard",
    "study_date": "StudyDate range",
    "modalities": "ModalitiesInStudy",
    "accession": "AccessionNumber",
    "combined": "combined (name*, date range, modality)",
    "all_studies": "all studies",
    "walk": "limit/offset walk (per page)",
}


def _qido_metrics() -> list[Metric]:
    out = []
    for kind, label in QIDO_LABELS.items():
        out.append(Metric(f"qido_{kind}_p50_ms", f"QIDO {label} p50", "ms", False, f"qido_{kind}"))
        out.append(
            Metric(f"qido_{kind}_p95_ms", f"QIDO {label} p95", "ms", False, f"qido_{kind}", "≤ 10", 10)
        )
    return out


METRICS: list[Metric] = [
    *_stow_metrics(),
    Metric("testfiles_stored", "pydicom test files acknowledged", "files", True),
    Metric("big_mf_s", "STOW 105 MB multi-frame: time", "s", False, "big_mf", "≤ 0.25", 0.25),
    Metric("big_mf_rss_mib", "STOW 105 MB multi-frame: RSS growth", "MiB", False, "big_mf", "≤ 32", 32),
    Metric("big_stream_s", "STOW streamed 2 GiB instance: time", "s", False, "big_stream"),
    Metric(
        "big_stream_rss_mib",
        "STOW streamed 2 GiB instance: RSS growth",
        "MiB",
        False,
        "big_stream",
        "≤ 64",
        64,
    ),
    Metric("big_stream_last_frame_s", "its last frame, first request", "s", False, "big_stream"),
    Metric("frame_cold_ms", "frame 150/200, cold (restart, page cache dropped)", "ms", False, "frame"),
    Metric("frame_warm_ms", "frame 150/200, warm p50", "ms", False, "frame", "≤ 5", 5),
    Metric("wado_c1_inst_s", "WADO instance retrieve c=1", "inst/s", True, "wado_c1"),
    Metric("wado_c1_p50_ms", "WADO instance retrieve c=1 p50", "ms", False, "wado_c1"),
    Metric("wado_c1_cpu_ms", "WADO c=1: server CPU per instance", "ms", False, "wado_c1"),
    Metric("wado_c8_inst_s", "WADO instance retrieve c=8", "inst/s", True, "wado_c8", "≥ 1.5x Orthanc"),
    Metric("wado_c8_cpu_ms", "WADO c=8: server CPU per instance", "ms", False, "wado_c8", "≤ 0.6", 0.6),
    Metric("study_retrieve_ms", "whole-study retrieve p50 (~20 instances)", "ms", False, "study"),
    Metric("study_retrieve_mb_s", "whole-study retrieve", "MB/s", True, "study"),
    Metric("study_metadata_ms", "study metadata p50", "ms", False, "study_metadata", "≤ 5", 5),
    Metric("study_metadata_instances", "  (instances per study)", "", True),
    Metric(
        "series_metadata_ms",
        "series metadata p50 (largest series)",
        "ms",
        False,
        "series_metadata",
        "≤ 40",
        40,
    ),
    Metric("series_metadata_instances", "  (instances in that series)", "", True),
    *_qido_metrics(),
]
RATIO_TARGETS = {"stow_c8_x10_inst_s": 2.0, "wado_c8_inst_s": 1.5}
LIMITS = {
    "limit_upload_c1_mb_s": "loopback HTTP upload to a do-nothing sink, c=1 (MB/s)",
    "limit_upload_c8_mb_s": "loopback HTTP upload to a do-nothing sink, c=8 (MB/s)",
    "limit_disk_seq_mb_s": "sequential disk write + fsync (MB/s)",
    "limit_disk_files_s": "0.5 MB files written + fsync + rename + dir fsync (files/s)",
}


def summarize(rounds: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """Per metric: each server's median over rounds (None when any timed answer was wrong)."""
    rows = []
    for m in METRICS:
        row: dict[str, Any] = {"key": m.key, "label": m.label, "unit": m.unit, "target": m.target}
        for name in names:
            runs = [r for r in rounds if r["server"] == name]
            values = [r["metrics"][m.key] for r in runs if m.key in r["metrics"]]
            failures = sum(r["checks"].get(m.checks, {}).get("failed", 0) for r in runs) if m.checks else 0
            row[name] = statistics.median(values) if values and not failures else None
            row[f"{name}_rounds"] = values
            row[f"{name}_failures"] = failures
        ours, theirs = row[names[0]], row[names[1]]
        row["ratio"] = ours / theirs if ours is not None and theirs else None
        row["met"] = _met(m, row["ratio"], ours)
        if any(row[f"{n}_rounds"] for n in names):
            rows.append(row)
    return {"rows": rows}


def _met(m: Metric, ratio: float | None, ours: float | None) -> bool | None:
    if m.key in RATIO_TARGETS:
        return None if ratio is None else ratio >= RATIO_TARGETS[m.key]
    if m.limit is not None:
        return None if ours is None else ours <= m.limit
    return None


def _fmt(value: float | None, failures: int = 0) -> str:
    if failures:
        return f"WRONG ({failures})"
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(summary: dict[str, Any], names: tuple[str, str], header: str, limits: dict[str, float]) -> str:
    ours, theirs = names
    lines = [header, ""]
    if limits:
        lines += ["| machine limit | value |", "|---|---:|"]
        lines += [f"| {LIMITS[k]} | {_fmt(v)} |" for k, v in limits.items()]
        lines.append("")
    lines += [
        f"| measurement | unit | {ours} | {theirs} | {ours}/{theirs} | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in summary["rows"]:
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        lines.append(
            f"| {row['label']} | {row['unit']} | {_fmt(row[ours], row[f'{ours}_failures'])} "
            f"| {_fmt(row[theirs], row[f'{theirs}_failures'])} | {_fmt(row['ratio'])} "
            f"| {row['target']} | {met} |"
        )
    return "\n".join(lines) + "\n"
