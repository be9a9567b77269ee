"""``dicomweb viewer install``: the OHIF Viewer 3 bundle from the npm registry, version and
integrity pinned, unpacked into the data directory, where ``dicomweb serve`` finds it.

Only the package's ``dist/`` is kept (the prebuilt static site); nothing is executed, nothing
from npm's dependency tree is fetched. The tarball is checked against the pinned SHA-512
(npm's ``integrity``) before a byte is unpacked; members that would land outside the target
(absolute paths, ``..``, links) are refused.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..errors import ConfigError

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
#: ``npm view @ohif/app@3.13.2 dist.integrity`` (the same pin as scripts/test-prereqs).
OHIF_INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
DEFAULT_REGISTRY = "https://registry.npmjs.org"
#: The tarball is ~40 MB; refuse anything far larger than that.
MAX_TARBALL = 512 * 1024 * 1024


class InstallError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def viewer_dir(data_dir: Path, version: str = OHIF_VERSION) -> Path:
    """Where the bundle of ``version`` lives in a data directory (its ``dist/``)."""
    return data_dir / "viewer" / f"ohif-{version}"


def tarball_url(registry: str, version: str) -> str:
    name = OHIF_PACKAGE.split("/")[1]
    return f"{registry.rstrip('/')}/{OHIF_PACKAGE}/-/{name}-{version}.tgz"


def install_viewer(
    data_dir: Path,
    *,
    registry: str = DEFAULT_REGISTRY,
    version: str = OHIF_VERSION,
    integrity: str = OHIF_INTEGRITY,
) -> Path:
    """Download, check and unpack; returns the ``dist/`` folder (already there: left as is)."""
    import httpx

    target = viewer_dir(data_dir, version)
    if (target / "index.html").is_file():
        return target
    if not integrity.startswith("sha512-"):
        raise ConfigError(f"integrity {integrity!r} must be an npm sha512- integrity string")
    url = tarball_url(registry, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ohif-") as tmp:
        tgz = Path(tmp) / "package.tgz"
        digest = hashlib.sha512()
        size = 0
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp, tgz.open("wb") as out:
                if resp.status_code != 200:
                    raise InstallError(f"{url} answered {resp.status_code}")
                for chunk in resp.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > MAX_TARBALL:
                        raise InstallError(f"{url} is larger than {MAX_TARBALL} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except httpx.HTTPError as exc:
            raise InstallError(f"cannot download {url}: {exc}") from None
        got = "sha512-" + base64.b64encode(digest.digest()).decode()
        if got != integrity:
            raise InstallError(f"{url} does not match the pinned integrity (got {got})")
        unpacked = Path(tmp) / "dist"
        _unpack_dist(tgz, unpacked)
        if not (unpacked / "index.html").is_file():
            raise InstallError(f"{url} has no package/dist/index.html")
        shutil.move(str(unpacked), target)
    return target


def _unpack_dist(tgz: Path, into: Path) -> None:
    prefix = "package/dist/"
    into.mkdir()
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar:
                if not member.name.startswith(prefix) or member.name == prefix:
                    continue
                relative = Path(member.name[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise InstallError(f"refusing tarball member {member.name!r}")
                if member.isdir():
                    (into / relative).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    (into / relative).parent.mkdir(parents=True, exist_ok=True)
                    with source, (into / relative).open("wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                else:
                    raise InstallError(f"refusing tarball member {member.name!r} (not a file)")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InstallError(f"cannot unpack the tarball: {exc}") from None
