"""STOW checks each instance's pixel data against its header and its transfer syntax against
the standard's: a refused part is a FailedSOPSequence item with its reason (also in a
``Warning: 299`` header) and leaves no object, no catalog row, no event."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.dicomfiles import make_dataset, multipart_related, to_bytes
from tests.servers import ServiceProcess


def _unknown_syntax() -> tuple[bytes, str]:
    ds = make_dataset()
    blob = to_bytes(ds).replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.1\x00", 1)
    return blob, str(ds.SOPInstanceUID)


def _short_pixels() -> tuple[bytes, str]:
    ds = make_dataset(rows=4, cols=4, bits=16)
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes(32)
    return to_bytes(ds), str(ds.SOPInstanceUID)


def test_refused_parts_carry_their_reason_and_leave_nothing(fresh_server: ServiceProcess) -> None:
    good = make_dataset()
    unknown, unknown_uid = _unknown_syntax()
    short, short_uid = _short_pixels()
    body, ctype = multipart_related([unknown, to_bytes(good), short])
    resp = httpx.post(fresh_server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202, resp.text
    failed = {
        item["00081155"]["Value"][0]: item["00081197"]["Value"][0]
        for item in resp.json()["00081198"]["Value"]
    }
    assert failed == {unknown_uid: 0xC122, short_uid: 0xC000}
    warning = resp.headers["warning"]
    assert "unknown transfer syntax 1.2.3.4.5.6.7.8.9.1" in warning
    assert "pixel data holds 32 bytes" in warning
    data = Path(fresh_server.args[fresh_server.args.index("--data-dir") + 1])
    objects = [p for p in (data / "studies").rglob("*") if p.is_file()]
    assert [p.name for p in objects] == [f"{good.SOPInstanceUID}.dcm"] or len(objects) == 1
    with sqlite3.connect(data / "catalog.db") as db:
        assert db.execute("SELECT count(*) FROM instances").fetchone()[0] == 1
