"""Running a suite: plan cells, prepare models once, run each work unit in its worker, write results.

Prints nothing: progress goes to a callback the CLI supplies. Bad input found before any
measurement raises a BenchError (exit 2); a cell that fails at run time becomes a failed cell
and the others go on. run.json is rewritten after every cell, so nothing measured is lost.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol

from bench import stats
from bench.config.records import SuiteSpec
from bench.errors import ConfigError, ModelError, ResultWriteError
from bench.measure.environment import fingerprint
from bench.models.loader import PreparedModel, prepare
from bench.results.files import RunDir, new_run_id, utc_now_iso
from bench.results.records import SCHEMA_VERSION, Cell, Run, SuiteInfo
from bench.results.stores import redact
from bench.runner.assemble import CellBuilder, RepResult, home_node, model_ref
from bench.runner.executor import Executor, LocalExecutor, UnitDone, UnitTask
from bench.runner.isolation import WorkerFailure
from bench.runner.plan import PlannedCell, SweepGates, model_forms, plan, with_models
from bench.runner.schedule import Schedule, ShuffledRounds
from bench.runner.unit import UnitJob


class RoundPolicy(Protocol):
    """Who runs in each round, when a caller decides instead of each cell's stop rule (bench tune
    races candidates: it drops the ones that lost). Cells it never wants are left out of run.json."""

    def wants(self, planned: PlannedCell, reps: list[RepResult], round_index: int) -> bool:
        """Whether the cell runs a repetition in round `round_index` of this run."""

    def unit_done(self, planned: PlannedCell, rep: RepResult, round_index: int, seconds: float) -> None:
        """A repetition finished (kept at once: an interrupted search keeps every measured one)."""

    def round_done(self, round_index: int) -> None:
        """Every unit of the round has finished: decide the next one."""

    def refused(self, planned: PlannedCell, reason: str) -> None:
        """The cell cannot run (skipped or refused before its first unit): never want it again."""


@dataclass(frozen=True)
class Progress:
    """One event for the person watching: a repetition of a cell is starting (cell is None), a
    repetition has finished (`finished_unit`: its throughput, and the cell's precision so far),
    or the cell has finished (all its repetitions, assembled)."""

    index: int
    total: int
    planned: PlannedCell
    cell: Cell | None
    repetition: int = 0
    finished_unit: bool = False
    throughput: float | None = None  # the finished repetition's, in samples/s
    precision: str = ""  # the cell's process-level precision against its target, so far


@dataclass(frozen=True)
class SuiteResult:
    run: Run
    path: Path
    interrupted: bool
    notes: tuple[str, ...] = ()  # what the user should hear beyond the cells (a rebuilt cache entry)


class _PrepareTimeout(BaseException):  # not an Exception: a factory's own `except Exception` must not take it
    pass


def prepare_timeout_s() -> float:
    """How long one model may take to build and export in this process (a factory that hangs must
    not hang the run): LOAD_ALLOWANCE_S, or BENCH_PREPARE_TIMEOUT_S seconds where that is set."""
    from bench.config.reader import env_seconds
    from bench.runner.plan import LOAD_ALLOWANCE_S

    return env_seconds("BENCH_PREPARE_TIMEOUT_S", LOAD_ALLOWANCE_S)


def _time_boxed(prepare_one: Callable[[], PreparedModel], seconds: float, ref: str) -> PreparedModel:
    """prepare_one() cut short after `seconds` (SIGALRM: this runs in the main thread; Python code
    that hangs is interrupted, and a native call at its next return to Python)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return prepare_one()

    def expire(signum: int, frame: object) -> None:
        raise _PrepareTimeout

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return prepare_one()
    except _PrepareTimeout:
        raise ModelError(f"model {ref!r}: building or exporting it took over {seconds:g} s (a factory that "
                         "hangs?); nothing was measured") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def prepare_models(cells: list[PlannedCell], cuda: bool) -> dict[str, PreparedModel]:
    """Each benchmark's model, prepared once in this process (raises ModelError on bad input),
    each within prepare_timeout_s()."""
    seconds = prepare_timeout_s()
    out = {}
    for name, (bench, forms, decoder) in model_forms(cells, cuda).items():
        ref = model_ref(bench)
        quantize = tuple(sorted({(c.target.model_form, c.target.precision, c.target.quantize) for c in cells
                                 if c.benchmark.name == name and c.target.model_form in forms
                                 and c.target.model_form.startswith("onnx-int8")}, key=lambda f: f[0]))
        out[name] = _time_boxed(lambda: prepare(ref, need_onnx=bool(forms & {"onnx", "onnx-fp16"}),
                                                need_torch="torch" in forms, need_fp16="onnx-fp16" in forms,
                                                decoder_forms=decoder, quantize_forms=quantize),
                                seconds, ref.ref)
        from bench.models.calibration import check_calibration_file

        for target in {c.target.name: c.target for c in cells if c.benchmark.name == name and c.target.is_int8}.values():
            check_calibration_file(out[name], target.quantize)  # a torch target's too, before anything runs
        for scenario in {c.scenario.name: c.scenario for c in cells if c.benchmark.name == name}.values():
            problem = scenario.check_model(bench, out[name])
            if problem:
                raise ModelError(problem)
    return out


@dataclass
class _CellState:
    """A cell while its repetitions run: what they returned, and its record once assembled."""

    planned: PlannedCell
    reps: list[RepResult]
    cell: Cell | None = None  # final (skipped, failed before running, or assembled)
    precision_note: str = ""

    def node(self) -> str | None:
        """Where a fleet keeps the cell (bench.runner.assemble.home_node)."""
        return home_node(self.reps)

    def on_node(self) -> list[RepResult]:
        """The repetitions, finished or failed, that count for the cell on its node."""
        home = self.node()
        return [r for r in self.reps if r.node == home or not r.ok] if home else list(self.reps)

    def failures(self) -> list[WorkerFailure]:
        return [r.outcome for r in self.reps if not r.ok]

    def needs(self, round_index: int, prior: dict | None = None) -> bool:
        """Whether the cell runs in this round: its first `repeats` rounds, then more (up to
        max_repeats) while its process-level precision misses the target; never after a failure
        that would repeat (out of memory, unsupported) or a second failure of any kind."""
        if self.cell is not None:
            return False
        stop = self.planned.benchmark.stop
        fails = self.failures()
        if any(f.kind in ("out_of_memory", "unsupported") for f in fails) or len(fails) >= 2:
            return False
        # Repetitions count on the cell's node (locally: all of them, one per round so far): a
        # fleet cell whose node was lost starts its count again where it went on.
        done = len(self.on_node())
        if done < stop.repeats:
            return True
        if done >= stop.repeat_limit:
            return False
        return not self.precise_enough(prior)

    def precise_enough(self, prior: dict | None = None) -> bool:
        from bench.analysis.repetitions import merge

        stop = self.planned.benchmark.stop
        ok = [r for r in self.on_node() if r.ok]
        if not stop.ci_figures or len(ok) < 2:
            self.precision_note = ""
            return True
        merged = merge([r.figures.metrics for r in ok], [], stop.confidence, prior)
        widths = {f: merged.rel_half_width(f) for f in stop.ci_figures}
        reached = all(w <= stop.ci_rel_width for w in widths.values())
        shown = ", ".join(f"{f} ±{w:.1%}" for f, w in widths.items())
        if reached:
            self.precision_note = f"precision across {len(ok)} processes: {shown} (target ±{stop.ci_rel_width:.1%} reached)"
        else:
            limit = stop.repeat_limit
            self.precision_note = (f"precision across {len(ok)} processes: {shown} (target ±{stop.ci_rel_width:.1%} "
                                   f"not reached{'; max_repeats ' + str(limit) + ' reached' if len(self.reps) >= limit else ''})")
        return reached


# A run's scratch directory (reference outputs, worker stderr) holds a lock file the run keeps
# locked (flock) while it lives; a run killed with SIGKILL cannot clean up, and the next run
# removes the directories whose lock it can take. The lock, not the pid, decides: a pid says
# nothing across containers that share /tmp.
SCRATCH_PREFIX = "bench-outputs-"
_SCRATCH_LOCK = ".lock"


class _ScratchLock:
    def __init__(self, scratch: Path):
        import fcntl

        self._fd = os.open(scratch / _SCRATCH_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _remove_stale_scratch() -> None:
    import fcntl
    import shutil
    import time

    for d in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            st = d.lstat()
        except OSError:  # gone between the glob and here: another run cleaned it up
            continue
        try:
            if not d.is_dir() or d.is_symlink() or st.st_uid != os.getuid():
                continue
            fd = os.open(d / _SCRATCH_LOCK, os.O_RDWR)
        except FileNotFoundError:  # no lock yet: a run just starting, unless it is long gone
            if time.time() - st.st_mtime > 3600:
                shutil.rmtree(d, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live run holds it
            os.close(fd)
            continue
        shutil.rmtree(d, ignore_errors=True)
        os.close(fd)


def preflight(cells: list[PlannedCell]) -> None:
    """Each planned served target reachable before any cell runs: a target whose knobs record has
    preflight() (bench.served.endpoint) is asked once; its reason is bad input (exit 2, one line)."""
    for target in {c.target.name: c.target for c in cells}.values():
        check = getattr(target.options, "preflight", None)
        if callable(check):
            reason = check()
            if reason:
                raise ConfigError(f"target {target.name}: {reason}")


def run_suite(
    suite: SuiteSpec,
    out_root: Path,
    only: str | None = None,
    argv: tuple[str, ...] = (),
    progress: Callable[[Progress], None] = lambda _: None,
    schedule: Schedule = ShuffledRounds(),
    executor: Callable[[Path], Executor] = LocalExecutor,
    rounds: RoundPolicy | None = None,
) -> SuiteResult:
    """Run the suite's cells; `executor` makes the Executor (given the scratch directory) that
    places each work unit: this machine by default, or a Ray cluster (bench.runner.ray_executor)."""
    from bench import __version__

    cells = plan(suite, only)
    preflight(cells)
    stats.warm_kernels()  # compile (or load) every kernel once here, so workers only load the cache
    _remove_stale_scratch()
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX) as tmp, _ScratchLock(Path(tmp)):
        ex = executor(Path(tmp))
        try:
            cuda = any(c.target.is_cuda for c in cells) and ex.has_cuda()
            models = prepare_models(cells, cuda)
            ex.prepare(models)
        except BaseException:
            ex.close()
            raise
        return _run_cells(suite, with_models(cells, {name: m.sha256 for name, m in models.items()}), models, ex,
                          Path(tmp), out_root, argv, progress, schedule, __version__, rounds)


def _sweep_of(p: PlannedCell) -> tuple[str, str, str]:
    return p.key.benchmark, p.key.target, p.key.scenario


def _run_cells(suite: SuiteSpec, cells: list[PlannedCell], models: dict[str, PreparedModel], ex: Executor,
               tmp: Path, out_root: Path, argv: tuple[str, ...], progress: Callable[[Progress], None],
               schedule: Schedule, version: str, rounds: RoundPolicy | None = None) -> SuiteResult:
    run_dir = RunDir(out_root, new_run_id())
    run = Run(
        schema_version=SCHEMA_VERSION,
        run_id=run_dir.path.name,
        created_at=utc_now_iso(),
        status="running",
        suite=SuiteInfo(suite.name, suite.path, suite.sha256),
        environment=fingerprint(),
        cells=(),
        harness_version=version,
        argv=argv,
        executor=ex.name,
    )
    run_dir.write_run(run)
    states = [_CellState(p, []) for p in cells]
    interrupted = False

    def finished() -> tuple[Cell, ...]:
        return tuple(st.cell for st in states if st.cell is not None)

    peaks = ex.peaks(tmp)
    builder = CellBuilder(run_dir, models, tmp, peaks)
    gates = SweepGates()
    # The node each sweep last measured on: a fleet keeps a sweep's cells, and so its curve, on
    # one machine (a cell's first unit goes where its sweep's earlier cells ran).
    sweep_node: dict[tuple[str, str, str], str] = {}

    def prior() -> dict:
        """The run's typical between-process spread so far (moderates each cell's interval)."""
        from bench.analysis.repetitions import priors

        ok = [[r for r in st.reps if r.ok] for st in states]
        return priors([[r.figures.metrics for r in reps] for reps in ok])

    def settle(st: _CellState, run_prior: dict) -> None:
        st.precise_enough(run_prior)  # states the precision reached across all its processes
        st.cell = builder.cell(st.planned, st.reps, st.precision_note, prior=run_prior)
        progress(Progress(st.planned.index, len(cells), st.planned, st.cell))

    def start(st: _CellState, repetition: int) -> UnitTask | None:
        """The cell's next unit, or None when the cell is settled before it runs (skipped, refused)."""
        p = st.planned
        if not st.reps:  # the first repetition: can this cell run at all?
            refused = ex.refusal(p.target)
            skip = gates.skip_reason(p)
            if refused is not None and refused.status == "skipped":
                st.cell = builder.skipped(p, refused.reason)
            elif refused is not None:
                st.cell = builder.base(p, "failed", refused.reason, failure_kind="unsupported")
            elif skip:
                st.cell = builder.skipped(p, skip)
            if st.cell is not None:
                progress(Progress(p.index, len(cells), p, st.cell))
                if rounds is not None:
                    rounds.refused(p, st.cell.reason)
                return None
        # Told as starting only once it will run: a skipped cell is one event, not a start and a skip.
        progress(Progress(p.index, len(cells), p, None, repetition))
        if p.target.is_cuda:
            peaks.ensure(p.target.device)
        job = UnitJob(p.key, repetition, p.benchmark, p.target, models[p.benchmark.name],
                      str(builder.outputs_path(p.benchmark.name, p.target.name, p.key.batch_size, p.key.dims)))
        return UnitTask(p, repetition, job, tmp / f"worker-{p.index:04d}-{repetition}.stderr", p.timeout_s(),
                        st.node() or sweep_node.get(_sweep_of(p)))

    started_ns: dict[tuple[int, int], int] = {}

    def wanted(st: _CellState, round_index: int, run_prior: dict) -> bool:
        if rounds is None:
            return st.needs(round_index, run_prior)
        # A cell the policy settled may be wanted again (bench tune's confirmation rounds): it
        # runs on, and is assembled again with all its repetitions.
        return rounds.wants(st.planned, st.reps, round_index)

    def finish(st: _CellState, done: UnitDone, round_index: int) -> None:
        p, outcome, repetition = st.planned, done.outcome, done.task.repetition
        done.task.stderr_path.unlink(missing_ok=True)
        if isinstance(outcome, WorkerFailure):
            # A user backend's or model's error text may quote a secret: redacted as argv is.
            outcome = replace(outcome, reason=redact(outcome.reason), stderr_tail=redact(outcome.stderr_tail))
            st.reps.append(RepResult(repetition, outcome, node=done.node))
            gates.record(p, outcome.kind, None)
        else:
            figures = p.scenario.figures(outcome.run, p.benchmark, p.key)
            st.reps.append(RepResult(repetition, outcome, figures, node=done.node))
            if done.node is not None:
                sweep_node[_sweep_of(p)] = done.node
            gates.record(p, None, figures.slo)
            st.precise_enough(prior())  # the precision so far, for the watcher
            progress(Progress(p.index, len(cells), p, None, repetition, finished_unit=True,
                              throughput=figures.metrics.throughput.value, precision=st.precision_note))
        if rounds is not None:
            seconds = (time.perf_counter_ns() - started_ns.pop((p.index, repetition), time.perf_counter_ns())) / 1e9
            rounds.unit_done(p, st.reps[-1], round_index, seconds)

    def run_round(todo: list[_CellState], round_index: int) -> None:
        """The round's units in the schedule's order, as many at once as the executor takes; a
        sweep's next unit waits for its previous one (a sweep stops at the first batch out of memory)."""
        by_index = {st.planned.index: st for st in todo}
        queue = schedule.order([st.planned for st in todo], round_index)
        busy: set[tuple[str, str, str]] = set()
        in_flight = 0
        while queue or in_flight:
            i = 0
            while i < len(queue) and ex.has_room():
                p = queue[i]
                if _sweep_of(p) in busy:
                    i += 1
                    continue
                queue.pop(i)
                st = by_index[p.index]
                task = start(st, len(st.reps))
                if task is not None:
                    started_ns[(p.index, task.repetition)] = time.perf_counter_ns()
                    ex.submit(task)
                    busy.add(_sweep_of(p))
                    in_flight += 1
            if not in_flight:
                continue
            for done in ex.wait():
                in_flight -= 1
                busy.discard(_sweep_of(done.task.planned))
                finish(by_index[done.task.planned.index], done, round_index)

    try:
        round_index = 0
        run_prior: dict = {}
        while True:
            todo = [st for st in states if wanted(st, round_index, run_prior)]
            if not todo:
                break
            if rounds is not None:
                for st in todo:
                    if st.reps:
                        st.cell = None
            run_round(todo, round_index)
            if rounds is not None:
                rounds.round_done(round_index)
            # Cells that will not run again are assembled now, and the run file rewritten.
            run_prior = prior()
            for st in todo:
                if st.cell is None and not wanted(st, round_index + 1, run_prior):
                    settle(st, run_prior)
            run = replace(run, cells=finished(), nodes=ex.nodes())
            run_dir.write_run(run)
            round_index += 1
    except KeyboardInterrupt:
        interrupted = True
    except ResultWriteError as exc:
        # The disk is full or read-only: stop measuring what could not be kept; the final
        # run.json (written after giving up the reserved space) keeps the completed cells.
        ex.close()
        run_dir.finish(replace(run, cells=finished(), nodes=ex.nodes(), status="failed", finished_at=utc_now_iso(),
                               end_reason=str(exc)))
        raise
    except BaseException:
        ex.close()
        # A bug or an unexpected error in the parent: keep what was measured, then let it surface
        # (and if even that write fails, the last good run.json stays and the first error surfaces).
        try:
            run_dir.finish(replace(run, cells=finished(), nodes=ex.nodes(), status="interrupted",
                                   finished_at=utc_now_iso()))
        except Exception:
            pass
        raise
    interrupted = ex.close() or interrupted
    if interrupted:
        # Cells with repetitions measured keep them, said to be cut short.
        end_reason = ""
        try:
            for st in states:
                if st.cell is None and st.reps:
                    st.precision_note = (f"interrupted after {len(st.reps)} of "
                                         f"{st.planned.benchmark.stop.repeats} planned repetitions")
                    st.cell = builder.cell(st.planned, st.reps, st.precision_note, interrupted=True, prior=prior())
        except ResultWriteError as exc:  # interrupted on a full disk: keep what was assembled
            end_reason = str(exc)
        run = replace(run, end_reason=end_reason)
    run = replace(run, cells=finished(), nodes=ex.nodes(), status="interrupted" if interrupted else "complete",
                  finished_at=utc_now_iso())
    path = run_dir.finish(run)
    from bench.models.cache import drain_notes

    return SuiteResult(run, path, interrupted, tuple(drain_notes()))
