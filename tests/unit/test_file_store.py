"""The file object store under concurrent stores and removals in one directory (real files)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dicomweb_core.errors import StoreError
from dicomweb_core.stores.file import FileObjectStore


def test_a_write_survives_a_concurrent_removal_emptying_its_directory(tmp_path: Path) -> None:
    """Removing an instance's last object prunes its emptied directories; a store into the same
    series at that moment (the loser of two studies claiming one SOP Instance UID, a superseded
    copy) must re-create them, not fail with ENOENT (it made one STOW part fail: 409)."""
    store = FileObjectStore(tmp_path)
    failures: list[str] = []

    async def store_and_remove(i: int) -> None:
        key = f"studies/1.2/series/1.3/instances/1.4.{i}.dcm"
        writer = await store.open_writer(key)
        await writer.write(b"x" * 100)
        (result,) = await store.commit_all([writer])
        if isinstance(result, StoreError):
            failures.append(result.reason)
            return
        await store.delete(key)  # the directories go with the last object

    async def rounds() -> None:
        for r in range(300):
            await asyncio.gather(*(store_and_remove(r * 8 + i) for i in range(8)))

    asyncio.run(rounds())
    assert failures == []
    assert not (tmp_path / "studies").exists()  # every emptied directory went
