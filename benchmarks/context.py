"""What one scenario sees of one round on one server, and what it records."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.client import Checks
from benchmarks.dataset import DatasetIndex, Instance
from benchmarks.procstat import ProcessProbe
from benchmarks.servers import BenchServer


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does per round (smaller with ``--small``)."""

    wado_requests: int = 200
    study_retrieves: int = 5
    metadata_requests: int = 20
    series_metadata_requests: int = 5
    frame_warm_requests: int = 20
    qido_requests: int = 20  # per query type
    stream_bytes: int = 2 * 1024**3  # the streamed "2 GiB" instance's pixel data
    sink_bytes: int = 1024**3
    disk_bytes: int = 1024**3
    disk_files: int = 200

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            wado_requests=16,
            study_retrieves=2,
            metadata_requests=4,
            series_metadata_requests=2,
            frame_warm_requests=4,
            qido_requests=3,
            stream_bytes=32 * 1024**2,
            sink_bytes=64 * 1024**2,
            disk_bytes=64 * 1024**2,
            disk_files=20,
        )


@dataclass
class RoundContext:
    server: BenchServer
    data: DatasetIndex
    sizes: Sizes
    seed: int
    stored: dict[str, Instance] = field(default_factory=dict)  # SOP UID -> instance, as acknowledged
    metrics: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Checks] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def probe(self) -> ProcessProbe:
        # The pid changes on restart, so the probe is made on demand.
        return ProcessProbe(self.server.pid)

    def checks_for(self, metric: str) -> Checks:
        return self.checks.setdefault(metric, Checks())

    def record(self, metric: str, value: float) -> None:
        self.metrics[metric] = value
