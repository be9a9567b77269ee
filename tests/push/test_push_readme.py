"""The README's ``dicomweb push`` example runs as written (against a test server), and its
default journal lands under ``$XDG_CACHE_HOME``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.push.helpers import build_tree
from tests.servers import ServiceProcess

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_push_example_stores_everything_then_resumes_with_nothing_to_send(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    start = README.index("\n## Bulk upload: `dicomweb push`\n")
    section = README[start : README.index("\n## ", start + 1)]
    [script] = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    tree = build_tree(tmp_path / "scans", plain=3, per_archive=1)
    (tmp_path / "more").mkdir()
    with zipfile.ZipFile(tmp_path / "more" / "day-42.zip", "w") as zf:
        zf.write(next((tmp_path / "scans" / "plain").rglob("IM*")), "copy-of-one.dcm")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8080", fresh_server.base)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "push-report.json").read_text())
    assert report["stored"] == tree.count + 1 and report["ok"]
    # The second command (--resume) found everything in the default journal.
    assert done.stdout.count("stored 0 instances") == 1
    assert list((tmp_path / "cache" / "dicomweb" / "push").glob("*.sqlite"))
