"""The command line's options reach every worker process: ``--workers`` > 1 re-creates the app
in each worker from the options the command line parsed (not from variables it rewrote)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess


def test_workers_get_the_data_dir_and_cors_options_of_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServiceProcess(
        "serve",
        args=["--workers", "2", "--data-dir", str(data), "--cors", "https://viewer.example"],
        log_path=tmp_path / "server.log",
    ).start()
    try:
        body, ctype = multipart_related([make_instance(), make_instance()])
        # Several requests: uvicorn spreads them over the workers.
        for _ in range(4):
            resp = httpx.get(server.base + "/dicomweb/studies", headers={"origin": "https://viewer.example"})
            assert resp.status_code == 200
            assert resp.headers["access-control-allow-origin"] == "https://viewer.example"
        resp = httpx.post(server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
        assert resp.status_code == 200, resp.text
        assert len(list(data.rglob("*.dcm"))) == 2
    finally:
        server.stop()
