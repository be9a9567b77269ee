"""Event delivery retries on the one backoff schedule (``dicomweb_core.backoff``), against a real
HTTP sink that refuses for a while."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dicomweb_core.backoff import Backoff
from dicomweb_core.errors import EventDeliveryError
from dicomweb_core.events import IMAGE_STORED, EventSender, new_event
from tests.sink import EventSink


@pytest.fixture
def sink() -> Iterator[EventSink]:
    sink = EventSink().start()
    yield sink
    sink.stop()


def test_backoff_doubles_up_to_the_cap_and_starts_again_after_a_reset() -> None:
    backoff = Backoff(0.2, 1.0)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert [backoff.next() for _ in range(2)] == [0.2, 0.4]


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_a_schedule_that_cannot_work(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial <= maximum"):
        Backoff(initial, maximum)
    with pytest.raises(ValueError):
        EventSender("http://127.0.0.1:1/", backoff=initial, max_backoff=maximum)


async def test_sender_retries_a_refusing_sink_with_growing_delays_until_it_accepts(sink: EventSink) -> None:
    sink.refuse_next = 3
    sender = EventSender(sink.url, attempts=5, backoff=0.05, max_backoff=0.1)
    event = new_event(IMAGE_STORED, "source", b'{"image": {}}')
    started = time.monotonic()
    try:
        await sender.send(event)
    finally:
        await sender.close()
    elapsed = time.monotonic() - started
    assert sink.refused == 3
    assert [e.id for e in sink.events] == [event.id] and sink.events[0].body == event.body
    # Three waits between the four attempts: 0.05, then 0.1 and 0.1 (capped).
    assert elapsed >= 0.25


async def test_sender_gives_up_after_its_attempts_with_the_sinks_answer(sink: EventSink) -> None:
    sink.refusing = True
    sender = EventSender(sink.url, attempts=3, backoff=0.01, max_backoff=0.02)
    try:
        with pytest.raises(EventDeliveryError, match="answered 503"):
            await sender.send(new_event(IMAGE_STORED, "source", b"{}"))
    finally:
        await sender.close()
    assert sink.refused == 3
