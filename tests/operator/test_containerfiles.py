"""The Containerfiles can't be built here (no container engine), so they are linted instead.

The services' Containerfile (repository root) builds the stow, wado and all-in-one images
as targets from one base stage; the operator has its own. Each image must use a slim
Python base, run as a numeric non-root user, install only its own packages from paths
that exist, take every third-party package from a hash-checked lock, and start an entry
point that exists.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from k8s_offline import REPO

SERVICES = REPO / "Containerfile"
OPERATOR = REPO / "packages" / "operator" / "Containerfile"
#: image -> (Containerfile, target stage, local packages it must hold)
IMAGES = {
    "stow": (SERVICES, "stow", {"dicomweb-core", "dicomweb-stow-svc"}),
    "wado": (SERVICES, "wado", {"dicomweb-core", "dicomweb-wado-svc"}),
    "all-in-one": (SERVICES, "all-in-one", {"dicomweb-core", "dicomweb-stow-svc", "dicomweb-wado-svc"}),
    "operator": (OPERATOR, "", {"dicomweb-operator"}),
}
#: The lock that installs each local package's dependencies (requirements/<lock>.txt).
LOCK_OF = {
    "dicomweb-core": "core",
    "dicomweb-stow-svc": "stow",
    "dicomweb-wado-svc": "wado",
    "dicomweb-operator": "operator",
}
SLIM = re.compile(r"docker\.io/library/python:3\.1[1-9]-slim")


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)


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


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))
            result.append(Stage(name, words[0]))
        else:
            assert result, f"{path}: {keyword} before FROM"
            result[-1].steps.append((keyword, rest))
    return result


def chain(path: Path, target: str) -> list[Stage]:
    """The target stage and the stages it is built FROM, base first ('' is the last stage)."""
    by_name = {s.name: s for s in stages(path)}
    stage = by_name[target] if target else stages(path)[-1]
    result = [stage]
    while stage.base in by_name:
        stage = by_name[stage.base]
        result.insert(0, stage)
    return result


def effective_steps(path: Path, target: str) -> list[tuple[str, str]]:
    return [step for stage in chain(path, target) for step in stage.steps]


def pip_installs(steps: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the RUN steps."""
    result = []
    for keyword, rest in steps:
        if keyword == "RUN":
            for command in rest.split("&&"):
                if "pip install" in command:
                    result.append(shlex.split(command.split("pip install", 1)[1]))
    return result


def local_package(token: str) -> str:
    pyproject = REPO / token / "pyproject.toml"
    assert pyproject.is_file(), f"{token} is not a package"
    return str(tomllib.loads(pyproject.read_text())["project"]["name"])


def installed_packages(path: Path, target: str) -> set[str]:
    """Local packages in the virtualenv the target copies from its build stage."""
    names: set[str] = set()
    for keyword, rest in effective_steps(path, target):
        if keyword == "COPY" and rest.startswith("--from="):
            source = rest.split()[0].removeprefix("--from=")
            for args in pip_installs(effective_steps(path, source)):
                names.update(local_package(t) for t in args if t.startswith("./packages/"))
    return names


@pytest.mark.parametrize("path", [SERVICES, OPERATOR], ids=["services", "operator"])
def test_every_stage_starts_from_slim_python_or_an_earlier_stage(path: Path) -> None:
    seen: set[str] = set()
    for stage in stages(path):
        assert stage.base in seen or SLIM.fullmatch(stage.base), f"{path}: FROM {stage.base}"
        seen.add(stage.name)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    path, target, _ = IMAGES[image]
    users = [rest for keyword, rest in effective_steps(path, target) if keyword == "USER"]
    assert users, "the final stage must set USER"
    assert users[-1].isdigit() and int(users[-1]) != 0


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_installs_only_its_own_packages_from_existing_paths(image: str) -> None:
    path, target, expected = IMAGES[image]
    assert installed_packages(path, target) == expected
    for stage in stages(path):
        for keyword, rest in stage.steps:
            if keyword == "COPY" and not rest.startswith("--from"):
                for source in rest.split()[:-1]:
                    assert (REPO / source).exists(), f"{path}: COPY source {source} does not exist"


@pytest.mark.parametrize("path", [SERVICES, OPERATOR], ids=["services", "operator"])
def test_third_party_packages_come_only_from_the_hash_checked_lock_of_each_package(path: Path) -> None:
    for stage in stages(path):
        for args in pip_installs(stage.steps):
            local = [local_package(t) for t in args if t.startswith("./packages/")]
            locks = [args[i + 1] for i, t in enumerate(args) if t == "-r"]
            others = [t for t in args if t.startswith("--") or t in locks or t == "-r"]
            if local:
                # The package itself, with nothing resolved: its dependencies are in the lock.
                assert "--no-deps" in args and "--no-build-isolation" in args, args
                assert not locks, args
                assert len(local) + len(others) == len(args), f"unexpected requirement in {args}"
                previous = pip_installs(stage.steps)[pip_installs(stage.steps).index(args) - 1]
                assert previous[previous.index("-r") + 1] in {
                    f"requirements/{LOCK_OF[name]}.txt" for name in local
                }, f"{local} installed without its lock"
            else:
                assert "--require-hashes" in args and locks, args
                assert len(others) == len(args), f"unexpected requirement in {args}"
                for lock in locks:
                    assert (REPO / lock).is_file(), lock


def test_stow_and_wado_share_one_base_stage_and_one_runtime_stage() -> None:
    def build_chain(target: str) -> list[str]:
        copies = [r for k, r in effective_steps(SERVICES, target) if k == "COPY" and r.startswith("--from=")]
        return [s.name for s in chain(SERVICES, copies[-1].split()[0].removeprefix("--from="))]

    stow, wado = build_chain("stow"), build_chain("wado")
    assert stow[0] == wado[0] == "base" and stow[1:] != wado[1:]
    assert [s.name for s in chain(SERVICES, "stow")][:-1] == [s.name for s in chain(SERVICES, "wado")][:-1]
    assert stages(SERVICES)[-1].name == "stow", "a build without --target gives the stow image"


@pytest.mark.parametrize("service", ["stow", "wado"])
def test_service_images_start_their_dicomweb_subcommand_on_port_8080(service: str) -> None:
    stage = dict(effective_steps(SERVICES, service))
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
    stage = dict(effective_steps(OPERATOR, ""))
    assert json.loads(stage["ENTRYPOINT"]) == ["kopf"]
    command = json.loads(stage["CMD"])
    module = command[command.index("-m") + 1]
    assert find_spec(module) is not None
    deployment = yaml.safe_load((REPO / "kustomize" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == command
    operator = tomllib.loads((REPO / "packages" / "operator" / "pyproject.toml").read_text())
    assert any(dep.startswith("kopf") for dep in operator["project"]["dependencies"])


def test_dev_overlay_image_is_the_all_in_one_target_running_dicomweb_serve() -> None:
    text = SERVICES.read_text()
    assert "podman build --target all-in-one -t localhost/dicomweb-all-in-one:0.1.0 ." in text
    dev = yaml.safe_load((REPO / "kustomize" / "overlays" / "dev" / "deployment.yaml").read_text())
    container = dev["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/dicomweb-all-in-one:0.1.0"
    assert container["command"] == ["dicomweb"] and container["args"][0] == "serve"
    stage = dict(effective_steps(SERVICES, "all-in-one"))
    command = json.loads(stage["CMD"])
    assert command[0] == "serve"
    code = "from dicomweb_core.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
