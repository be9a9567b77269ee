"""Each package declares what it imports, and the locks pin every declared dependency.

``make install`` installs the third-party dependencies only from ``requirements/dev.txt``
(hash-checked) and the packages with ``--no-deps``; the images install from their own
locks. A dependency that a pyproject.toml gains without ``make lock`` would be missing
there, and an import that no pyproject.toml declares works only by accident (it came with
something else). Both are checked here, without the network.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "dicomweb-core": REPO / "packages" / "dicomweb-core",
    "dicomweb-stow-svc": REPO / "packages" / "stow-svc",
    "dicomweb-wado-svc": REPO / "packages" / "wado-svc",
    "dicomweb-operator": REPO / "packages" / "operator",
}
MODULES = {
    "dicomweb-core": "dicomweb_core",
    "dicomweb-stow-svc": "dicomweb_stow",
    "dicomweb-wado-svc": "dicomweb_wado",
    "dicomweb-operator": "dicomweb_operator",
}
# Declared but never imported, on purpose: pydicom loads these as pixel-data decoder plugins.
PLUGINS = {"dicomweb-wado-svc": {"pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg"}}
IMAGE_LOCKS = {
    "core": ["dicomweb-core"],
    "stow": ["dicomweb-core", "dicomweb-stow-svc"],
    "wado": ["dicomweb-core", "dicomweb-wado-svc"],
    "operator": ["dicomweb-operator"],
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return canonical(match.group(1))


def declared(package: str, *, extras: bool = True) -> set[str]:
    """Its dependencies, and with ``extras`` its extras' (an optional import, e.g. tracing, is
    declared there; the images install without extras)."""
    project = tomllib.loads((PACKAGES[package] / "pyproject.toml").read_text())["project"]
    optional = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return {requirement_name(r) for r in [*project["dependencies"], *(optional if extras else [])]}


def imported_modules(package: str) -> set[str]:
    """Dotted names of every import in the package's sources (lazy imports included)."""
    names: set[str] = set()
    for path in (PACKAGES[package] / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"}


def owner(module: str, candidates: list[str]) -> str:
    """The distribution that ships ``module`` (a namespace such as ``lightkube`` is shared by
    several: ``lightkube.resources`` comes with lightkube-models)."""
    if len(candidates) == 1:
        return canonical(candidates[0])
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        stem = "/".join(parts[:depth])
        found = [
            c
            for c in candidates
            if any(str(f) in (f"{stem}.py", f"{stem}/__init__.py") for f in distribution(c).files or [])
        ]
        if len(found) == 1:
            return canonical(found[0])
    raise AssertionError(f"{module} is shipped by several distributions: {candidates}")


def imported_distributions(package: str) -> set[str]:
    owners = packages_distributions()
    local = {module: dist for dist, module in MODULES.items()}
    result = set()
    for module in imported_modules(package):
        top = module.split(".")[0]
        if top == MODULES[package]:
            continue
        if top in local:
            result.add(local[top])
            continue
        assert top in owners, f"{package} imports {module}, which no installed distribution provides"
        result.add(owner(module, owners[top]))
    return result


def lock_pins(name: str) -> dict[str, set[str]]:
    """{distribution: {versions}} of requirements/<name>.txt, each pin carrying a hash."""
    text = (REPO / "requirements" / f"{name}.txt").read_text()
    pins: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=\S)", text):
        first = block.splitlines()[0]
        if not first or first.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", first)
        assert match, f"requirements/{name}.txt: not a pin: {first}"
        assert "--hash=sha256:" in block, f"requirements/{name}.txt: {first} has no hash"
        pins.setdefault(canonical(match.group(1)), set()).add(match.group(2))
    return pins


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_import_is_a_declared_dependency(package: str) -> None:
    missing = imported_distributions(package) - declared(package)
    assert not missing, f"{package} imports {sorted(missing)} without declaring them"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_declared_dependency_is_imported_or_a_named_plugin(package: str) -> None:
    unused = declared(package) - imported_distributions(package) - PLUGINS.get(package, set())
    assert not unused, f"{package} declares {sorted(unused)} but never imports them"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_license_is_an_spdx_expression_with_its_file(package: str) -> None:
    project = tomllib.loads((PACKAGES[package] / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    for pattern in project["license-files"]:
        assert list(PACKAGES[package].glob(pattern)), f"{package}: no file matches {pattern}"


def test_dev_lock_pins_every_declared_dependency_and_test_tool_with_hashes() -> None:
    pins = lock_pins("dev")
    wanted = set().union(*(declared(p) for p in PACKAGES)) - set(PACKAGES)
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            wanted.add(requirement_name(line))
    assert wanted <= set(pins), f"not in requirements/dev.txt (run make lock): {sorted(wanted - set(pins))}"
    assert not set(PACKAGES) & set(pins), "the local packages are installed from the tree, not the lock"


@pytest.mark.parametrize("image", sorted(IMAGE_LOCKS))
def test_image_lock_covers_its_packages_and_agrees_with_the_dev_lock(image: str) -> None:
    pins, dev = lock_pins(image), lock_pins("dev")
    wanted = set().union(*(declared(p, extras=False) for p in IMAGE_LOCKS[image])) - set(PACKAGES)
    assert wanted <= set(pins), f"requirements/{image}.txt lacks {sorted(wanted - set(pins))}"
    assert "setuptools" in pins, "the packages are built with --no-build-isolation from the lock"
    disagree = {
        name: (versions, dev.get(name)) for name, versions in pins.items() if versions != dev.get(name)
    }
    assert not disagree, f"requirements/{image}.txt and dev.txt pin different versions: {disagree}"
