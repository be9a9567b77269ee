"""The Containerfiles can't be built here (no container engine), so they are linted instead.

Each must use a slim Python base, run as a numeric non-root user, install only
its own packages from paths that exist, and start an entry point that exists.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from k8s_offline import REPO

CONTAINERFILES = {
    "stow": REPO / "packages" / "stow-svc" / "Containerfile",
    "wado": REPO / "packages" / "wado-svc" / "Containerfile",
    "operator": REPO / "packages" / "operator" / "Containerfile",
}
EXPECTED_PACKAGES = {
    "stow": {"dicomweb-core", "dicomweb-stow-svc"},
    "wado": {"dicomweb-core", "dicomweb-wado-svc"},
    "operator": {"dicomweb-operator"},
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and line continuations joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def package_names(path: Path) -> set[str]:
    """Names of the local packages the RUN pip install line installs (default build args)."""
    names = set()
    for keyword, rest in instructions(path):
        if keyword == "RUN" and "pip install" in rest:
            for token in shlex.split(rest.split("pip install", 1)[1].split("&&")[0]):
                if token.startswith("./packages/"):
                    pyproject = REPO / token / "pyproject.toml"
                    assert pyproject.is_file(), f"{path}: {token} is not a package"
                    names.add(tomllib.loads(pyproject.read_text())["project"]["name"])
    return names


@pytest.mark.parametrize("service", sorted(CONTAINERFILES))
def test_slim_python_base_in_every_stage(service: str) -> None:
    bases = [rest.split()[0] for keyword, rest in instructions(CONTAINERFILES[service]) if keyword == "FROM"]
    assert bases and all(re.fullmatch(r"docker\.io/library/python:3\.1[1-9]-slim", b) for b in bases), bases


@pytest.mark.parametrize("service", sorted(CONTAINERFILES))
def test_runs_as_a_numeric_non_root_user(service: str) -> None:
    users = [rest for keyword, rest in final_stage(CONTAINERFILES[service]) if keyword == "USER"]
    assert users, "the final stage must set USER"
    assert users[-1].isdigit() and int(users[-1]) != 0


@pytest.mark.parametrize("service", sorted(CONTAINERFILES))
def test_installs_only_its_own_packages_from_existing_paths(service: str) -> None:
    path = CONTAINERFILES[service]
    assert package_names(path) == EXPECTED_PACKAGES[service]
    for keyword, rest in instructions(path):
        if keyword == "COPY" and not rest.startswith("--from"):
            source = rest.split()[0]
            assert (REPO / source).exists(), f"{path}: COPY source {source} does not exist"


@pytest.mark.parametrize("service", ["stow", "wado"])
def test_service_images_start_their_dicomweb_subcommand_on_port_8080(service: str) -> None:
    stage = dict(final_stage(CONTAINERFILES[service]))
    assert json.loads(stage["ENTRYPOINT"]) == ["dicomweb"]
    command = json.loads(stage["CMD"])
    assert command == [f"{service}-svc"]
    assert "PORT=8080" in stage["ENV"] and stage["EXPOSE"] == "8080"
    core = tomllib.loads((REPO / "packages" / "dicomweb-core" / "pyproject.toml").read_text())
    assert core["project"]["scripts"]["dicomweb"] == "dicomweb_core.cli:main"
    # The subcommand exists in the CLI the image installs.
    code = "from dicomweb_core.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "--port" in run.stdout


def test_operator_image_runs_kopf_with_the_same_arguments_as_the_deployment() -> None:
    stage = dict(final_stage(CONTAINERFILES["operator"]))
    assert json.loads(stage["ENTRYPOINT"]) == ["kopf"]
    command = json.loads(stage["CMD"])
    module = command[command.index("-m") + 1]
    assert find_spec(module) is not None
    deployment = yaml.safe_load((REPO / "kustomize" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == command
    operator = tomllib.loads((REPO / "packages" / "operator" / "pyproject.toml").read_text())
    assert any(dep.startswith("kopf") for dep in operator["project"]["dependencies"])


def test_dev_overlay_image_is_the_stow_image_with_the_wado_package_added() -> None:
    text = CONTAINERFILES["stow"].read_text()
    assert "ARG EXTRA_PACKAGES" in text and "$EXTRA_PACKAGES" in text
    assert "--build-arg EXTRA_PACKAGES=./packages/wado-svc" in text
    assert "localhost/dicomweb-all-in-one:0.1.0" in text
    dev = (REPO / "kustomize" / "overlays" / "dev" / "deployment.yaml").read_text()
    assert "image: localhost/dicomweb-all-in-one:0.1.0" in dev
