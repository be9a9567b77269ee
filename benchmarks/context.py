"""What a scenario sees of one server across the run, and what it records per round."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.client import Checks
from benchmarks.dataset import DatasetIndex, Instance
from benchmarks.procstat import ProcessProbe
from benchmarks.servers import BenchServer


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does per round (smaller with ``--small``)."""

    wado_requests: int = 160
    study_retrieves: int = 4
    metadata_requests: int = 10
    series_metadata_requests: int = 3
    frame_warm_requests: int = 20  # a median over enough samples to be past any warm-up
    qido_requests: int = 30  # per query type (p95 of 10 samples would be their maximum)
    stream_bytes: int = 2 * 1024**3  # the streamed "2 GiB" instance's pixel data
    stream_rounds: int = 1  # rounds that store a streamed instance (it dominates the run time)
    # Read back the streamed instance's last frame (Orthanc takes ~30 s for it at 2 GiB);
    # otherwise the check is that an instance-level search lists it.
    stream_frame_check: bool = False
    sink_bytes: int = 512 * 1024**2
    disk_bytes: int = 512 * 1024**2
    disk_files: int = 100

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
            stream_frame_check=True,
            sink_bytes=64 * 1024**2,
            disk_bytes=64 * 1024**2,
            disk_files=20,
        )


@dataclass
class RoundRecord:
    metrics: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Checks] = field(default_factory=dict)


@dataclass
class RoundContext:
    """One server for the whole run. The server starts empty; every instance is stored once.

    ``round_no`` is set by the runner before each scenario round; ``record`` and
    ``checks_for`` write to that round.
    """

    server: BenchServer
    data: DatasetIndex
    sizes: Sizes
    seed: int
    rounds: int
    round_no: int = 0
    stored: dict[str, Instance] = field(default_factory=dict)  # SOP UID -> instance, as acknowledged
    records: dict[int, RoundRecord] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def probe(self) -> ProcessProbe:
        # The pid changes on restart, so the probe is made on demand.
        return ProcessProbe(self.server.pid)

    @property
    def current(self) -> RoundRecord:
        return self.records.setdefault(self.round_no, RoundRecord())

    def checks_for(self, metric: str) -> Checks:
        return self.current.checks.setdefault(metric, Checks())

    def record(self, metric: str, value: float) -> None:
        self.current.metrics[metric] = value
