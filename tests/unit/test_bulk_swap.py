"""Big Endian bulk data to little endian while streaming: any chunking, any byte range."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomweb_core.wado.pixels import _swapped, _trimmed


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > prev:
            yield data[prev:cut]
            prev = cut


async def _collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([2, 4, 8]),
    st.integers(1, 200),
    st.data(),
)
def test_any_chunking_and_range_gives_the_swapped_slice(width: int, words: int, data: st.DataObject) -> None:
    value = data.draw(st.binary(min_size=words * width, max_size=words * width))
    total = len(value)
    little = np.frombuffer(value, dtype=f">u{width}").astype(f"<u{width}").tobytes()
    start = data.draw(st.integers(0, total - 1))
    end = data.draw(st.integers(start + 1, total))
    lo, hi = start - start % width, min(total, end + (-end) % width)
    cuts = data.draw(st.lists(st.integers(0, hi - lo), max_size=8))
    stream = _trimmed(_swapped(_chunks(value[lo:hi], cuts), width), start - lo, end - start)
    assert asyncio.run(_collect(stream)) == little[start:end]


def test_an_odd_trailing_byte_stays_as_stored() -> None:
    stream = _swapped(_chunks(b"\x01\x02\x03", [1]), 2)
    assert asyncio.run(_collect(stream)) == b"\x02\x01\x03"
