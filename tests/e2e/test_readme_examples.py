"""The README's examples run as written, and its configuration table names every variable
the code reads or mentions in a configuration error."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.servers import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


def _blocks(language: str, section: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(section), flags=re.S)


def _as_run_here(code: str, server: ServiceProcess) -> str:
    """The example pointed at the test's server and this interpreter; nothing else changes."""
    return code.replace("http://127.0.0.1:8080", server.base).replace(".venv/bin/python", sys.executable)


def test_the_curl_example_builds_its_body_stores_searches_and_fetches(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    [script] = _blocks("sh", "Using it")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _as_run_here(script, fresh_server)],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    stored, found, metadata = _json_documents(out)
    assert "00081199" in stored and "00081198" not in stored  # ReferencedSOPSequence, no failures
    assert [s["0020000D"]["Value"][0] for s in found] == [CT_SMALL_STUDY]
    assert metadata[0]["7FE00010"]["BulkDataURI"].startswith(fresh_server.base)


def _json_documents(text: str) -> list[Any]:
    """The JSON documents curl printed one after another (no newline between them)."""
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def test_the_python_example_defines_its_dataset_and_runs(fresh_server: ServiceProcess) -> None:
    [code] = _blocks("python", "Using it")
    done = subprocess.run(
        [sys.executable, "-c", _as_run_here(code, fresh_server)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == CT_SMALL_STUDY


def _variables_in_code() -> dict[str, str]:
    """Environment variables the packages read, or name in a ConfigError, -> where."""
    found: dict[str, str] = {}
    name = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
    for path in sorted(REPO.glob("packages/*/src/**/*.py")):
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            texts: list[str] = []
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
                if called == "ConfigError":
                    texts = [str(c.value) for c in ast.walk(node) if isinstance(c, ast.Constant)]
                elif called == "get" and "env" in receiver and node.args:
                    texts = [ast.unparse(node.args[0])]
                elif called in ("_int", "_float") and len(node.args) > 1:
                    texts = [ast.unparse(node.args[1])]
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.endswith("_KEYS") for t in node.targets
            ):
                texts = [str(c.value) for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
            for text in texts:
                for var in name.findall(str(text)):
                    found.setdefault(var, where)
    return found


def test_every_variable_the_code_reads_or_names_in_an_error_is_in_the_configuration_table() -> None:
    # The configuration tables: the services' under "Configuration", access control's own.
    rows = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", rows))
    variables = _variables_in_code()
    assert {"DICOMWEB_DATA_DIR", "CATALOG_URL", "BUCKET_HOST", "QIDO_MAX_LIMIT"} <= set(variables)
    missing = {var: where for var, where in variables.items() if var not in documented}
    assert not missing, f"not in a configuration table of the README: {missing}"
