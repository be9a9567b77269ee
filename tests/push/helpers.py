"""What the ``dicomweb push`` tests share: a folder tree of real DICOM files (plain, in nested
folders, in .zip / .tar / .tar.gz archives, an archive inside an archive) with junk beside
them; running the real ``dicomweb push`` command; listing what a server holds."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.dicomfiles import make_instance, uid

DICOMWEB = str(Path(sys.executable).with_name("dicomweb"))


@dataclass
class Tree:
    root: Path
    sops: dict[str, bytes] = field(default_factory=dict)  # SOP Instance UID -> file bytes
    junk: list[str] = field(default_factory=list)  # journal keys of the non-DICOM files

    @property
    def count(self) -> int:
        return len(self.sops)


def _instance(tree: Tree, study: str, *, rows: int = 16) -> tuple[str, bytes]:
    sop = uid()
    data = make_instance(study_uid=study, sop_uid=sop, rows=rows, cols=rows, pixel_seed=len(tree.sops))
    tree.sops[sop] = data
    return sop, data


def _tar(path: Path, members: Mapping[str, bytes], mode: str) -> None:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tf.addfile(info, io.BytesIO(data))


def _zip(path: Path, members: Mapping[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def build_tree(root: Path, *, plain: int = 6, per_archive: int = 3, rows: int = 16) -> Tree:
    """``plain`` files in nested folders, ``per_archive`` instances in each of a .zip, a .tar,
    a .tar.gz and a .zip inside a .tar.gz; junk: a text file, a PNG-like file named .dcm, an
    empty file, and a text file inside the zip."""
    tree = Tree(root)
    study = uid()
    for i in range(plain):
        folder = root / "plain" / f"series{i % 2}" / ("deep" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        _sop, data = _instance(tree, study, rows=rows)
        (folder / f"IM{i:04d}").write_bytes(data)  # no extension, as scanners write them
    archives = root / "archives" / "2024"
    archives.mkdir(parents=True)
    members = {f"zip/IM{i}.dcm": _instance(tree, study, rows=rows)[1] for i in range(per_archive)}
    _zip(archives / "batch.zip", {**members, "zip/README.txt": b"not DICOM\n"})
    tree.junk.append(f"{archives / 'batch.zip'}!zip/README.txt")
    _tar(
        archives / "plain.tar",
        {f"t/IM{i}": _instance(tree, study, rows=rows)[1] for i in range(per_archive)},
        "w",
    )
    _tar(
        archives / "gz.tar.gz",
        {f"g/IM{i}.dcm": _instance(tree, study, rows=rows)[1] for i in range(per_archive)},
        "w:gz",
    )
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for i in range(per_archive):
            zf.writestr(f"IN{i}.dcm", _instance(tree, study, rows=rows)[1])
    _tar(archives / "outer.tgz", {"nested/inner.zip": inner.getvalue()}, "w:gz")
    (root / "notes.txt").write_text("a text file among the images\n")
    (root / "plain" / "picture.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 300)
    (root / "plain" / "empty").write_bytes(b"")
    tree.junk += [str(root / "notes.txt"), str(root / "plain" / "picture.dcm"), str(root / "plain" / "empty")]
    return tree


@dataclass
class PushRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]


def push_command(paths: Sequence[Path], url: str, *extra: str, journal: Path, report: Path) -> list[str]:
    return [
        DICOMWEB,
        "push",
        *map(str, paths),
        "--url",
        url,
        "--journal",
        str(journal),
        "--report",
        str(report),
        "--progress-interval",
        "0.2",
        *extra,
    ]


def run_push(
    paths: Sequence[Path],
    url: str,
    *extra: str,
    journal: Path,
    report: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> PushRun:
    report.unlink(missing_ok=True)
    proc = subprocess.run(
        push_command(paths, url, *extra, journal=journal, report=report),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return PushRun(proc.returncode, proc.stdout, proc.stderr, data)


def server_sops(qido_root: str, study: str | None = None) -> set[str]:
    """Every SOP Instance UID a DICOMweb server lists (QIDO, paged)."""
    found: set[str] = set()
    offset = 0
    path = f"/studies/{study}/instances" if study else "/instances"
    while True:
        resp = httpx.get(
            qido_root + path,
            params={"limit": "500", "offset": str(offset)},
            headers={"Accept": "application/dicom+json"},
            timeout=60,
        )
        if resp.status_code == 204 or not resp.content:
            return found
        resp.raise_for_status()
        page = resp.json()
        found |= {row["00080018"]["Value"][0] for row in page}
        if len(page) < 500:
            return found
        offset += len(page)
