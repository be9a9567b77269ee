"""Binary-mode CloudEvents by hand (``dicomweb_core.events.binary_message``) vs the cloudevents
SDK (``cloudevents.core``: ``CloudEvent`` + ``to_binary`` + ``JSONFormat``), for the event
the service sends most: an ``ImageStoredEvent`` from the outbox.

Measures what each costs per event and at first use (the SDK is imported by the first send,
in a service that may just have scaled from zero), what each puts on the wire, and what the
SDK adds to a service image. The SDK is a test/benchmark dependency (requirements-dev.txt).

    .venv/bin/python -m benchmarks.bench_cloudevents [--events 20000] [--imports 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from importlib.metadata import distribution

from packaging.requirements import Requirement

from dicomweb_core.catalog.base import OutboxEvent
from dicomweb_core.events import IMAGE_STORED, StoreInfo, binary_message, image_event_body, new_event

SDK_MODULES = "cloudevents.core.v1.event, cloudevents.core.bindings.http, cloudevents.core.formats.json"


def sample_event() -> OutboxEvent:
    """An ImageStoredEvent as ingest builds it: ~40 top-level attributes of a CT slice."""
    metadata = {
        f"0008{element:04X}": {"vr": "LO", "Value": [f"value {element}"]} for element in range(0x10, 0x38)
    }
    metadata["0020000D"] = {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.1"]}
    store = StoreInfo("provider", "bucket", "http://wado.internal/wado-rs", "https://wado.example/wado-rs")
    body = image_event_body(
        metadata, transfer_syntax_uid="1.2.840.10008.1.2.1", object_name="studies/1/x.dcm", store=store
    )
    return new_event(IMAGE_STORED, "img-ingest-stow.default.svc.cluster.local", body)


def sdk_message(event: OutboxEvent) -> tuple[dict[str, str], bytes]:
    from cloudevents.core.bindings.http import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    attributes = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": "1.0",
        "datacontenttype": "application/json",
    }
    message = to_binary(CloudEvent(attributes=attributes, data=event.body), JSONFormat())
    return message.headers, message.body


def per_event_us(build: object, event: OutboxEvent, count: int) -> float:
    assert callable(build)
    build(event)  # warm (imports)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            build(event)
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def import_ms(modules: str, runs: int) -> float:
    """Median wall time of importing ``modules`` in a fresh interpreter that has already
    imported what a service has loaded by its first send (the events module, httpx)."""
    code = (
        "import dicomweb_core.events, httpx, time; t = time.perf_counter(); "
        f"import {modules}; print(time.perf_counter() - t)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout) * 1000)
    return statistics.median(samples)


def closure(name: str, seen: set[str] | None = None) -> set[str]:
    """The distributions ``name`` installs (its requirements without extras, recursively)."""
    seen = set() if seen is None else seen
    if name.lower() in seen:
        return seen
    seen.add(name.lower())
    for line in distribution(name).requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            closure(requirement.name, seen)
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--imports", type=int, default=7)
    args = parser.parse_args(argv)

    event = sample_event()
    ours_headers, ours_body = binary_message(event)
    sdk_headers, sdk_body = sdk_message(event)
    assert sdk_body == ours_body, "the SDK changed the body"
    added = sorted(set(sdk_headers) - set(ours_headers))
    changed = sorted(k for k in ours_headers if sdk_headers.get(k) != ours_headers[k])

    hand = per_event_us(binary_message, event, args.events)
    sdk = per_event_us(sdk_message, event, args.events)
    sdk_import = import_ms(SDK_MODULES, args.imports)
    footprint = sorted(closure("cloudevents") - closure("dicomweb-core"))

    lines = [
        f"event body: {len(ours_body)} bytes; {args.events} events, best of 3",
        "| measurement | by hand | cloudevents SDK |",
        "|---|---:|---:|",
        f"| headers + body per event (µs) | {hand:.2f} | {sdk:.2f} |",
        f"| extra import at the first send (ms, median of {args.imports} fresh interpreters) "
        f"| 0 | {sdk_import:.1f} |",
        f"| distributions added to a service image | 0 | {len(footprint)}: {', '.join(footprint)} |",
        f"headers the SDK adds: {added or 'none'}; headers it changes: {changed or 'none'}",
        f"SDK ce-time: {sdk_headers.get('ce-time', '-')} (the moment of serialising, not of storing)",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
