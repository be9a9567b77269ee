"""``dicomweb push`` against ``dicomweb serve`` with ``AUTH_MODE=oidc`` and real tokens from a
real OpenID Provider: the bearer token from ``$DICOMWEB_TOKEN`` or ``--token``; 401/403 stop
at once with the server's reason (no retries)."""

from __future__ import annotations

from pathlib import Path

from tests.auth.conftest import issuer_key, oidc, secured, tokens  # noqa: F401 - fixtures
from tests.push.helpers import build_tree, run_push
from tests.servers import ServiceProcess


def test_push_with_a_write_token_from_the_environment_stores_everything(
    secured: ServiceProcess,  # noqa: F811
    tokens: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    tree = build_tree(tmp_path / "src", plain=2, per_archive=1)
    run = run_push(
        [tree.root],
        secured.base + "/dicomweb",
        env={"DICOMWEB_TOKEN": tokens["write"]},
        journal=tmp_path / "j",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == tree.count
    import httpx

    listed = httpx.get(
        secured.base + "/dicomweb/instances",
        params={"limit": "1000"},
        headers={"Authorization": f"Bearer {tokens['read']}", "Accept": "application/dicom+json"},
    ).json()
    assert set(tree.sops) <= {row["00080018"]["Value"][0] for row in listed}


def test_push_without_a_token_or_with_a_read_token_fails_at_once_with_the_reason(
    secured: ServiceProcess,  # noqa: F811
    tokens: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    tree = build_tree(tmp_path / "src", plain=2, per_archive=1)
    anonymous = run_push(
        [tree.root],
        secured.base + "/dicomweb",
        env={"DICOMWEB_TOKEN": ""},
        journal=tmp_path / "j",
        report=tmp_path / "r",
    )
    assert anonymous.returncode == 1
    assert {r["reason"].split(":")[0] for r in anonymous.report["failed"]} == {"HTTP 401"}
    reader = run_push(
        [tree.root],
        secured.base + "/dicomweb",
        "--token",
        tokens["read"],
        journal=tmp_path / "j",
        report=tmp_path / "r",
    )
    assert reader.returncode == 1
    assert {r["reason"].split(":")[0] for r in reader.report["failed"]} == {"HTTP 403"}
    assert "will be retried" not in anonymous.stderr + reader.stderr
