"""`bench monitor`'s run: one cell in its own worker process, driven until stopped, its window
summaries tailed from the stream file as they come, and at the end one run directory in the
usual contract (a `monitor` cell).

The worker runs in a thread of this process's (run_in_worker, spawned), so the main thread stays
free to read windows and to take Ctrl-C or SIGTERM. A signal the caller names in `stop_signals`
is the monitor's normal end (a soak runs until it is stopped): it asks the worker to stop at the
end of its window (the stop file), and the run is complete, its end reason the signal's name.
Any other interruption (KeyboardInterrupt: bench.cli's SIGHUP) does the same but leaves the run
"interrupted". Either way the main thread waits for the worker, so the cell keeps what the backend
reported; a worker that does not stop within STOP_GRACE_S plus a window is killed, and the windows
already streamed are the figures: nothing measured is lost.
"""
from __future__ import annotations

import multiprocessing
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import stats
from bench.config.records import BenchmarkSpec, SuiteSpec, TargetSpec
from bench.measure.environment import fingerprint
from bench.results.files import RunDir, new_run_id, utc_now_iso
from bench.results.records import SCHEMA_VERSION, Cell, CellKey, Run, SuiteInfo
from bench.runner.assemble import CellBuilder
from bench.runner.isolation import WorkerFailure, run_in_worker
from bench.runner.plan import LOAD_ALLOWANCE_S, PlannedCell, with_models
from bench.runner.suite import SCRATCH_PREFIX, _remove_stale_scratch, _ScratchLock, prepare_models
from bench.runner.unit import UnitJob, run_unit
from bench.scenarios.monitor import MonitorSpec, read_new_windows

STOP_GRACE_S = 30.0
POLL_S = 0.1


@dataclass(frozen=True)
class MonitorResult:
    run: Run
    path: Path
    windows: int
    interrupted: bool  # ended by an interruption other than a stop signal (its run is "interrupted")


class Stopper:
    """Asks the worker to stop at the end of its window (for an alarm, a signal, or the caller)."""

    def __init__(self, path: Path):
        self.path = path
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            try:
                self.path.touch()
            except OSError:  # its scratch directory is gone: the worker has ended already
                pass


class StopSignals:
    """Signals that end the monitor as its duration would: from `arm(stopper)` (the worker's start)
    until this context exits (the caller's command is done), each asks the worker to stop
    (stopper.request) instead of raising KeyboardInterrupt, bench.cli's handler, put back on exit.
    A KeyboardInterrupt lands anywhere, in the middle of writing run.json too, and a stop is an
    end, not an interruption; a second signal (CI sends SIGINT, then SIGTERM) finds the monitor
    already stopping, or stopped and its run written, and changes nothing.
    The handler only records and touches the stop file: it runs between two bytecodes of the main
    thread, which may be in the middle of printing a window's line (a print here could raise
    'reentrant call'). Only the main thread may set handlers: elsewhere nothing changes."""

    def __init__(self, signals: tuple[int, ...]):
        self.signals = signals if threading.current_thread() is threading.main_thread() else ()
        self.previous: dict[int, Any] = {}
        self.stopper: Stopper | None = None

    def arm(self, stopper: Stopper) -> None:
        self.stopper = stopper
        for sig in self.signals:
            # A process started with SIGINT ignored (in the background of a shell) keeps ignoring it.
            if sig not in self.previous and signal.getsignal(sig) != signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.stopper is not None:  # the first reason stays
            self.stopper.request(f"stopped by {signal.Signals(signum).name}")

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()


def run_monitor(suite: SuiteSpec, bench: BenchmarkSpec, target: TargetSpec, spec: MonitorSpec, out_root: Path,
                argv: tuple[str, ...], on_window: Callable[[dict, Stopper], None],
                finish: Callable[[list[dict], str], dict[str, Any]],
                on_started: Callable[[Path], None] = lambda path: None,
                stop_signals: StopSignals | None = None) -> MonitorResult:
    """Drive the cell until the duration ends, a signal arrives, or `on_window` asks to stop;
    `on_window(summary, stopper)` sees each window as it comes; `finish(windows, end_reason)`
    gives the cell's extra records (its `monitor` record) once it has ended. `stop_signals`, armed
    when the worker starts, end the monitor as its duration would (before that nothing is
    measured yet, and a signal interrupts as for any command)."""
    from bench import __version__

    stats.warm_kernels()
    concurrency = spec.concurrency if spec.qps <= 0 else None
    # A soak watches one cell: the benchmark's first batch size and first shape.
    key = CellKey(bench.name, "", target.name, bench.batch_sizes[0], "monitor", concurrency, bench.dims_grid()[0])
    planned = PlannedCell(0, key, bench, target)
    models = prepare_models([planned], target.is_cuda)
    (planned,) = with_models([planned], {name: m.sha256 for name, m in models.items()})
    run_dir = RunDir(out_root, new_run_id())
    run = Run(schema_version=SCHEMA_VERSION, run_id=run_dir.path.name, created_at=utc_now_iso(), status="running",
              suite=SuiteInfo(suite.name, suite.path, suite.sha256), environment=fingerprint(), cells=(),
              harness_version=__version__, argv=argv)
    run_dir.write_run(run)
    on_started(run_dir.path)
    _remove_stale_scratch()
    windows: list[dict] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX) as tmp, _ScratchLock(Path(tmp)):
        stream, stop = Path(tmp) / "windows.jsonl", Path(tmp) / "stop"
        spec = replace(spec, stream_path=str(stream), stop_path=str(stop))
        bench = replace(bench, tables=tuple((k, v) for k, v in bench.tables if k != "monitor") + (("monitor", spec),))
        planned = replace(planned, benchmark=bench)
        builder = CellBuilder(run_dir, models, Path(tmp))
        job = UnitJob(planned.key, 0, bench, target, models[bench.name],
                      str(builder.outputs_path(bench.name, target.name, planned.key.batch_size, planned.key.dims)))
        timeout = (spec.duration_s if spec.duration_s > 0 else 10 * 365 * 86_400.0) + LOAD_ALLOWANCE_S + STOP_GRACE_S
        outcome: list[Any] = []
        errors: list[BaseException] = []
        # Not Thread.is_alive()/join(): a KeyboardInterrupt landing inside join() can leave the
        # thread looking finished while it runs on (CPython 3.11); the thread says so itself.
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append(run_in_worker(run_unit, job, Path(tmp) / "worker.stderr", timeout, "bench-monitor"))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=work, name="bench-monitor-worker", daemon=True)
        stopper = Stopper(stop)
        offset = 0
        deadline: float | None = None

        def drain() -> None:
            nonlocal offset
            new, offset = read_new_windows(str(stream), offset)
            for w in new:
                windows.append(w)
                on_window(w, stopper)

        if stop_signals is not None:
            stop_signals.arm(stopper)
        thread.start()
        while True:  # a signal can land anywhere in here: each one asks the worker to stop, then waits again
            try:
                while not done.is_set():
                    drain()
                    if stopper.reason and deadline is None:
                        deadline = time.monotonic() + spec.window_s + STOP_GRACE_S
                    if deadline is not None and time.monotonic() > deadline:
                        for child in multiprocessing.active_children():  # it did not stop: end it
                            child.kill()
                        done.wait(STOP_GRACE_S)
                        break
                    time.sleep(POLL_S)
                break
            except KeyboardInterrupt:
                interrupted = True
                stopper.request("interrupted")
        drain()
        end_reason = stopper.reason if stopper.reason and stopper.reason != "interrupted" else ""
        result = outcome[0] if outcome else None
        if errors and not isinstance(errors[0], KeyboardInterrupt):
            raise errors[0]
        records = finish(windows, end_reason or _ended(result, interrupted))
        if result is not None and not isinstance(result, WorkerFailure):
            figures = planned.scenario.figures(result.run, bench, planned.key)
            cell = builder.ok(planned, result, replace(figures, records=records))
        elif windows:
            cell = _from_windows(builder, planned, windows, records, result)
        else:
            failure = result if isinstance(result, WorkerFailure) else WorkerFailure("crash", "the worker gave no window", "")
            cell = builder.failed(planned, failure)
    run = replace(run, cells=(cell,), status="interrupted" if interrupted else "complete", finished_at=utc_now_iso(),
                  end_reason=records.get("monitor").end_reason if records.get("monitor") else "")
    path = run_dir.finish(run)
    return MonitorResult(run, path, len(windows), interrupted)


def _ended(result: Any, interrupted: bool) -> str:
    if interrupted:
        return "interrupted"
    if isinstance(result, WorkerFailure):
        return f"the worker failed ({result.kind}): {result.reason}"
    return result.run.stop_reason if result is not None else "the worker did not stop in time"


def _from_windows(builder: CellBuilder, planned: PlannedCell, windows: list[dict], records: dict,
                  failure: Any) -> Cell:
    """A cell whose worker was killed or failed after streaming windows: its figures from them."""
    from bench.scenarios.monitor import window_figures

    metrics, _ = window_figures(windows, planned.key.batch_size, planned.benchmark.stop.confidence)
    reason = failure.reason if isinstance(failure, WorkerFailure) else "the worker was stopped before it reported"
    return builder.base(planned, "ok", f"figures from the {len(windows)} windows streamed ({reason})",
                        metrics=metrics, duration_s=sum(w["span_s"] for w in windows), **records)
