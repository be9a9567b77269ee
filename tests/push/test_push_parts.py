"""The pure parts of ``dicomweb push``: options, STOW answers, the body's exact length, sources."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from dicomweb_core.push.answer import describe, is_transient, parse_answer, reason_from_body
from dicomweb_core.push.body import Framing, stream_body
from dicomweb_core.push.command import _without_token
from dicomweb_core.push.options import MIB, OptionError, parse_batch, stow_url
from dicomweb_core.push.sources import walk
from tests.dicomfiles import make_instance


def test_batch_is_a_count_or_a_size() -> None:
    assert parse_batch("10") == parse_batch(" 10 ")
    assert parse_batch("10").files == 10
    assert parse_batch("16MiB").nbytes == 16 * MIB and parse_batch("16MiB").files > 10
    assert parse_batch("0.5M").nbytes == MIB // 2
    for bad in ("0", "-1", "1.5", "lots", "10GB", "100000"):
        with pytest.raises(OptionError):
            parse_batch(bad)


def test_stow_url_from_a_dicomweb_root() -> None:
    assert stow_url("http://h:1/dicomweb", None) == "http://h:1/dicomweb/studies"
    assert stow_url("http://h:1/dicomweb/studies/", None) == "http://h:1/dicomweb/studies"
    assert stow_url("https://h/dicom-web/", "1.2.3") == "https://h/dicom-web/studies/1.2.3"
    with pytest.raises(OptionError):
        stow_url("h:1/dicomweb", None)


def test_answer_names_stored_and_failed_instances() -> None:
    body = (
        b'{"00081199":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.3"]}}]},'
        b'"00081198":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.4"]},'
        b'"00081197":{"vr":"US","Value":[49152]}},{"00081155":{"vr":"UI","Value":["1.2.5"]},'
        b'"00081197":{"vr":"US","Value":[42752]}}]}}'
    )
    answer = parse_answer(body)
    assert answer.stored == {"1.2.3"}
    assert answer.failed == {"1.2.4": 0xC000, "1.2.5": 0xA700}
    assert not is_transient(0xC000) and not is_transient(0xA900) and not is_transient(0xC122)
    assert is_transient(0xA700) and is_transient(0xA7FF) and is_transient(0x0110)
    assert describe(0xC000) == "0xC000 cannot understand"
    assert parse_answer(b"").stored == set()
    with pytest.raises(ValueError):
        parse_answer(b"<html>")


def test_reason_from_an_error_body_is_short_and_printable() -> None:
    assert reason_from_body(b'{"detail": "token expired"}') == "token expired"
    assert reason_from_body(b"x" * 1000).endswith("…")
    assert reason_from_body(b"line one\n  line two") == "line one line two"


def test_the_resume_hint_drops_the_token() -> None:
    argv = ["push", "d", "--token", "s3cr3t", "--url", "http://h", "--token=other"]
    assert _without_token(argv) == (["push", "d", "--url", "http://h"], True)
    assert _without_token(["push", "d"]) == (["push", "d"], False)


async def test_the_body_is_exactly_as_long_as_announced(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.dcm").write_bytes(make_instance(pixel_seed=i))
    walked = walk([tmp_path])
    framing = Framing.new()
    body = b"".join([chunk async for chunk in stream_body(framing, walked.items, chunk=1000)])
    assert len(body) == framing.length(walked.items)
    assert body.count(framing.boundary.encode()) == 4
    assert body.endswith(f"--{framing.boundary}--\r\n".encode())


def test_archive_members_read_back_exactly(tmp_path: Path) -> None:
    data = {f"m{i}.dcm": make_instance(pixel_seed=i) for i in range(3)}
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for name, blob in data.items():
            zf.writestr(name, blob)
    for mode, suffix in (("w", ".tar"), ("w:gz", ".tar.gz"), ("w:xz", ".tar.xz")):
        with tarfile.open(tmp_path / f"a{suffix}", mode) as tf:
            for name, blob in data.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    walked = walk([tmp_path])
    try:
        assert len(walked.items) == 12 and not walked.skipped
        for item in walked.items:
            with item.source.open() as f:
                assert f.read() == data[item.key.rsplit("!", 1)[1]]
            item.source.release()
    finally:
        walked.close()


def test_a_broken_archive_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "ok.dcm").write_bytes(make_instance())
    walked = walk([tmp_path, tmp_path / "missing"])
    assert [Path(i.key).name for i in walked.items] == ["ok.dcm"]
    assert {Path(s.key).name: s.reason.split(":")[0] for s in walked.skipped} == {
        "broken.zip": "unreadable archive",
        "missing": "no such file or directory",
    }
