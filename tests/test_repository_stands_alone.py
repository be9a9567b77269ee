"""The repository stands alone: nothing tracked refers to a folder beside the checkout.

A user's clone has no sibling folders; a test, benchmark, script or CI step that reads one
passes here and fails for them. ``.ci/run`` also runs the suite from a fresh clone in an
unrelated temporary folder, which catches such a read at run time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Built from parts so that this file does not match itself.
_SIBLING_PATTERNS = ("../" + "shared", '".." / "' + "shared", "'..' / '" + "shared", "k8s" + "-schemas")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / p for p in out.decode().split("\0") if p]
    return [p for p in paths if p.is_file() and p.suffix not in {".dcm", ".png", ".jpg", ".gz", ".zip"}]


def test_no_tracked_file_refers_to_a_folder_beside_the_repository() -> None:
    offenders = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for pattern in _SIBLING_PATTERNS:
            if pattern in text:
                offenders.append(f"{path.relative_to(REPO)}: {pattern!r}")
    assert offenders == []


def test_vendored_crd_schemas_are_in_the_repository() -> None:
    schemas = REPO / "tests" / "operator" / "schemas"
    for name in ("serving-service", "eventing-broker", "eventing-trigger", "eventing-sinkbindings"):
        assert (schemas / "knative" / f"{name}.yaml").is_file()
