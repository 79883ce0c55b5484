"""The scenario contract: how requests are issued to a backend, and what a cell reports.

A scenario is one module holding one `Scenario` subclass, registered by one line in
bench.scenarios.registry. It owns, from the config to the report:
  - its config table: `table_key` names the [[benchmark]] key it owns (e.g. "server"),
    `parse_table` reads it and `check_table` checks it against the rest of the benchmark; `check`
    refuses a benchmark that lists the scenario but cannot run it;
  - its cells: `axis` gives the concurrency values a benchmark sweeps (None: no such axis);
  - the worker side: `run(session)` issues the requests and returns a ScenarioRun (raw samples
    and the scenario's own detail), on a Session that holds the loaded backend and its call;
  - the parent side: `figures(run, bench, key)` turns that into the cell's figures and records;
  - comparing: `compare_policy()` says how two runs' cells compare (bench.analysis.compare);
  - reporting: `detail_rows(cell)` gives the lines a report shows for its own records.
Nothing outside the scenario's module branches on its name.

Parent-side methods import bench.analysis inside the method: a worker imports its runtime and
the scenario's loop only, not numba (the worker's memory is a reported figure).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench.config.records import BenchmarkSpec, StopSpec, TargetSpec
from bench.measure.timing import BoundCall, DeviceEvents, as_call, synchronized
from bench.results.records import Cell, CellKey, Metrics, Series, Slo, TimingBoundary
from bench.scenarios.loops import Window, measure
from bench.scenarios.stopping import rule_for

if TYPE_CHECKING:
    from bench.analysis.compare import ComparePolicy
    from bench.backends.base import Backend
    from bench.config.reader import Reader


@dataclass(frozen=True)
class ScenarioRun:
    """What a scenario's worker side measured (sent to the parent as is)."""

    latencies_ns: np.ndarray  # int64, one per measured request (or per call)
    window_ns: int  # the measured time the latencies fall in
    warmup_latencies_ns: np.ndarray
    stop_reason: str
    window_calls: int | None = None  # calls inside the telemetry window, where not latencies_ns.size
    detail: Any = None  # the scenario's own payload (a server schedule, per-client samples, LoadGen's summary)
    stride: int = 1  # latencies_ns keeps 1 call in `stride` (the loop's max_samples)
    # a served target's RequestTally (bench.scenarios.net_requests): latencies_ns are its ok requests'
    requests: Any = None

    @property
    def warmup_seconds(self) -> float:
        return float(self.warmup_latencies_ns.sum()) / 1e9


@dataclass(frozen=True)
class Figures:
    """A cell's figures, as the scenario computed them in the parent."""

    metrics: Metrics
    kept_ns: np.ndarray  # the latencies the figures come from (what the samples file keeps)
    window_ns: int
    steady_state_cut: int  # leading measured calls dropped as warm-up
    series: Series | None
    slo: Slo | None
    records: dict[str, Any] = field(default_factory=dict)  # the scenario's own records, by Cell field name


def timing_boundary(backend: Backend, device_timed: bool) -> TimingBoundary:
    """Where a cell's clock sits: device events where the scenario can use them and the backend
    has them; a host timer around a call that waits for the device when inputs stay on it; else
    end to end (host copies included)."""
    if device_timed and backend.events() is not None:
        return "device"
    if backend.resident_on_device():
        return "device_resident"
    return "end_to_end"


class Session:
    """A scenario's worker side: the loaded backend, the cell's bound call (after `start`), and
    the means to bind more (per client, per batch size).

    One-off setup is timed here, not by the backend: the first outputs and call on each input
    shape, from a device that has finished earlier work to one that has finished this, are the
    target's compile_s or capture_s when the backend says that is what its setup is. The call
    completes where the boundary needs it: under device_resident it waits for the device, so a
    host timer around it leaves out no queued work.
    """

    def __init__(self, bench: BenchmarkSpec, key: CellKey, inputs: Any, backend: Backend,
                 device_timed: bool, clock: Callable[[], float] = time.perf_counter):
        """`inputs`: a bench.models.inputs.InputSource (generated arrays or the user's samples), or
        a tuple of InputSpec, generated from the benchmark's seed."""
        if isinstance(inputs, tuple):
            from bench.models.inputs import Generated

            inputs = Generated(inputs, bench.seed)
        self._clock = clock
        self.bench = bench
        self.key = key
        self.backend = backend
        self.window = Window()  # the telemetry marks; the worker sets them when a sampler runs
        self.boundary = timing_boundary(backend, device_timed)
        self.setup_s: dict[str, float] = {}
        self._shapes: set[tuple] = set()
        self._make_inputs = inputs.feeds
        self.feeds = self._make_inputs(key.batch_size)
        self.call: BoundCall = BoundCall(lambda: None)
        self.scenario_state: Any = None  # what a scenario's start() leaves for its run()

    @property
    def stop(self) -> StopSpec:
        return self.bench.stop

    @property
    def batch_size(self) -> int:
        return self.key.batch_size

    def inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        """The cell's inputs at another batch size."""
        return self._make_inputs(batch_size)

    def start(self, keep_outputs: Callable[[list[np.ndarray]], None]) -> None:
        """The cell's outputs on its inputs, handed to `keep_outputs` (the agreement check), then
        its call: a compiling or capturing backend does its one-off work on the first of them."""

        keeping = [0.0]

        def outputs_then_bind():
            outputs = self.backend.outputs(self.feeds)
            t0 = self._clock()
            keep_outputs(outputs)  # writing them down is the harness's time, not the target's setup
            keeping[0] = self._clock() - t0
            return self.backend.bind(self.feeds)

        self.call = self._setup(self.feeds, outputs_then_bind, lambda: keeping[0])

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        """Another call on these inputs (another client's, another batch size's)."""
        return self._setup(feeds, lambda: self.backend.bind(feeds))

    def _setup(self, feeds: dict[str, np.ndarray], make: Callable[[], Any],
               not_setup_s: Callable[[], float] = lambda: 0.0) -> BoundCall:
        shape = tuple((name, a.shape, str(a.dtype)) for name, a in feeds.items())
        first = shape not in self._shapes
        self._shapes.add(shape)
        wait = self.backend.device_wait()
        if wait is not None:
            wait()  # work queued before is not this shape's setup
        t0 = self._clock()
        call = as_call(make())
        if wait is not None:
            wait()
        kind = self.backend.setup_cost()
        if kind is not None and first:
            self.setup_s[kind] = self.setup_s.get(kind, 0.0) + self._clock() - t0 - not_setup_s()
        if self.boundary == "device_resident" and wait is not None:
            call = synchronized(call, wait)
        return call

    def context(self):
        return self.backend.context()

    def events(self) -> DeviceEvents | None:
        return self.backend.events() if self.boundary == "device" else None


def measured_run(session: Session, wait_each_call: bool) -> ScenarioRun:
    """Warm-up, then the measured loop until the benchmark's stop rule says stop."""
    with session.context():
        result = measure(session.call, session.stop, rule_for(session.stop), events=session.events(),
                         window_marks=session.window, wait_each_call=wait_each_call)
    return ScenarioRun(result.latencies_ns, result.window_ns, result.warmup_latencies_ns, result.stop_reason,
                       window_calls=result.calls if result.stride > 1 else None, stride=result.stride)


def steady_figures(run: ScenarioRun, bench: BenchmarkSpec, key: CellKey, steady: bool = True,
                   slo: bool = True) -> Figures:
    """The figures of independent calls: MSER-5's warm-up cut (when `steady`), every figure with
    its interval, throughput per window, and the SLO (when `slo`)."""
    from bench.analysis import slo as slos
    from bench.analysis.figures import cell_metrics, steady_state_cut

    cut = steady_state_cut(run.latencies_ns) if steady else 0
    kept = run.latencies_ns[cut:]
    # Calls within a chunk run back to back: the kept window is the sum of kept latencies (each
    # kept latency standing for `stride` calls when the loop thinned them).
    window_ns = run.window_ns if cut == 0 else int(kept.sum()) * run.stride
    metrics, series = cell_metrics(kept, window_ns, key.batch_size, bench.stop.confidence, bench.seed, run.stride)
    return Figures(metrics, kept, window_ns, cut, series,
                   slos.of_latency(bench.slo_limits(), metrics.latency_ms) if slo else None)


class Scenario:
    """Base of every scenario: the defaults fit one that measures independent calls."""

    name: str = ""
    table_key: str | None = None  # the [[benchmark]] key this scenario reads, if any
    device_timed: bool = False  # whether CUDA events can time its calls (the `device` boundary)
    needs_decoder: bool = False  # its model must follow the decoder contract (bench.models.decoder)
    token_slo: bool = False  # it reads the SLO's token limits (slo.ttft_ms, slo.tpot_ms)
    has_roofline: bool = True  # its throughput is samples of the model's forward (FLOPs per sample apply)
    latency_figures: bool = True  # its latency figures are per request: bench tune may optimise or limit them

    def parse_table(self, reader: Reader, value: Any, path: str) -> Any:
        raise NotImplementedError(f"{self.name}: no table")

    def check(self, reader: Reader, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        """Refuse a benchmark this scenario cannot run (reader.fail names file and key)."""

    def check_table(self, reader: Reader, bench: BenchmarkSpec, path: str) -> None:
        """Refuse this scenario's table where the benchmark gives it, whichever scenarios it runs."""

    def axis(self, bench: BenchmarkSpec) -> tuple[int | None, ...]:
        """The concurrency of each cell at one batch size; (None,): no concurrency axis."""
        return (None,)

    def busy_s(self, bench: BenchmarkSpec) -> float:
        """Measured time beyond the stop rule's max_seconds that a cell may take (its timeout)."""
        return 0.0

    def check_model(self, bench: BenchmarkSpec, model: Any) -> str | None:
        """Why the prepared model (bench.models.loader.PreparedModel) cannot run this benchmark, or None."""
        return None

    def start(self, session: Session, keep_outputs: Callable[[list[np.ndarray]], None]) -> None:
        """The worker's setup before run(): the outputs for the agreement check, the bound call."""
        session.start(keep_outputs)

    def run(self, session: Session) -> ScenarioRun:
        raise NotImplementedError

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        from bench.scenarios.net_requests import with_requests

        return with_requests(steady_figures(run, bench, key), run)

    def warmup_rule(self, bench: BenchmarkSpec) -> str | None:
        """How this scenario warms up, in words, where it is not the measured loop's rule (None)."""
        return None

    def merge_records(self, chosen: list[Figures], median: Figures, confidence: float,
                      prior: dict | None = None) -> dict[str, Any]:
        """The cell's own records from its used repetitions' figures: the median one's by default.
        `prior`: the run's typical between-process spread per figure (bench.analysis.repetitions).
        A served target's requests are summed over them (bench.scenarios.net_requests)."""
        from bench.scenarios.net_requests import merge_requests

        return merge_requests(chosen, median.records)

    def merged_slo(self, bench: BenchmarkSpec, chosen: list[Figures], records: dict[str, Any], fallback: Any) -> Any:
        """The cell's SLO over its repetitions: `fallback` (its latency limits on the merged figures)."""
        return fallback

    def compare_outputs(self, own: list[np.ndarray], ref: list[np.ndarray], reference: str, tolerance: float,
                        precision: str) -> Any:
        """The agreement of a target's outputs with the reference's (bench.analysis.agreement)."""
        from bench.analysis.agreement import compare_outputs

        return compare_outputs(own, ref, reference, tolerance)

    def compare_policy(self) -> ComparePolicy:
        from bench.analysis.compare import SampleTest

        return SampleTest("time")

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        """(label, text) lines a report shows for this scenario's own records of an ok cell."""
        return ()
