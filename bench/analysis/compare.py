"""Comparing two runs cell by cell: ratios with intervals, and a verdict that does not cry wolf.

Cells are matched by identity (bench.results.records.CellKey: benchmark, model hash, target,
batch size, scenario, concurrency). Each scenario says how its cells compare (its ComparePolicy;
the caller passes `policy_for`).

The process test, for cells of independent calls measured in at least 2 worker processes on
both sides (schema 6 on): the unit of evidence is the process, since most of the noise lives
between processes (bench.stats.processes). From each side's per-process figures:
  - ratios NEW / BASE of throughput, p50 and p99: ratios of geometric means over processes, with
    Welch t intervals on the logs;
  - the headline's p-value (Welch's t on the log figures), corrected with Holm's procedure over
    every cell the process test compares in this comparison, so the whole comparison, not each
    cell, has a false-alarm rate of at most alpha;
  - "slower" when the corrected test rejects AND the time ratio exceeds 1 + threshold; "faster"
    symmetrically; otherwise "unchanged", with the smallest change the cell could have detected
    (minimum detectable effect at alpha and 80% power): "unchanged" says how sure it is.

The sample test, for cells where either side is one process (runs before schema 6): the
within-process test below, which cannot see between-process noise; the reason says so. From the
raw samples (samples/NNNN.npy) of each matched pair of ok cells:
  - ratios NEW / BASE of throughput, p50 and p99, each with a bootstrap percentile interval;
  - a Mann-Whitney U test (tie-corrected) of the two latency samples;
  - the verdict, on the headline figure (p50 latency in single-stream, time per sample, i.e.
    1 / throughput, in offline): "slower" when the test rejects at `alpha` AND the time ratio's
    point estimate exceeds 1 + threshold AND its interval excludes 1; "faster" symmetrically
    (ratio below 1 / (1 + threshold)); otherwise "unchanged". The minimum effect size is what
    keeps run-to-run noise of a few percent reading "unchanged" while the test keeps a large
    but noisy difference from being called on a handful of samples.
A capacity figure (a peak rate, LoadGen's own samples/s) compares as a point ratio: no test, as
one figure per run is all there is. Cells whose environments differ in what matters are "not
comparable" unless allowed, as are cells timed at different boundaries.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from bench import stats
from bench.errors import ResultFileError
from bench.results.files import read_run
from bench.results.safe_read import load_samples_file
from bench.results.records import Cell, Environment, Run

CompareVerdict = Literal["faster", "slower", "unchanged", "not comparable"]


@dataclass(frozen=True)
class Ratio:
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class CellComparison:
    key: str
    verdict: CompareVerdict
    reason: str
    throughput: Ratio | None = None
    p50: Ratio | None = None
    p99: Ratio | None = None
    p_value: float | None = None
    method: str = ""  # "processes" (per-process figures), "samples" (within-process), "point"
    detectable: float | None = None  # minimum detectable relative change (process test)


@dataclass(frozen=True)
class EnvDifference:
    field: str
    base: str
    new: str
    matters: bool


@dataclass(frozen=True)
class Comparison:
    base_run: str
    new_run: str
    threshold: float
    alpha: float
    env_differences: tuple[EnvDifference, ...]
    cells: tuple[CellComparison, ...]
    common_shift: str = ""  # why a machine-level shift is likely (most cells moved together), or ""

    @property
    def slower(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict == "slower"]


COMMON_SHIFT_SHARE = 0.8  # this share of the compared cells moving the same way ...
COMMON_SHIFT_MIN_CELLS = 6  # ... of at least this many cells


def common_shift(cells: tuple[CellComparison, ...], threshold: float) -> str:
    """A warning when most cells' throughput moved the same way by more than the threshold: the
    machine's speed shifts between runs minutes apart, for every cell at once, and no run sees
    that from inside (docs/statistics.md); a code change rarely moves every cell alike."""
    ratios = [c.throughput.value for c in cells if c.throughput is not None and c.method == "processes"]
    if len(ratios) < COMMON_SHIFT_MIN_CELLS:
        return ""
    down = sum(r < 1 / (1 + threshold) for r in ratios)
    up = sum(r > 1 + threshold for r in ratios)
    moved, way = (down, "slower") if down >= up else (up, "faster")
    if moved < COMMON_SHIFT_SHARE * len(ratios):
        return ""
    median = float(np.median(ratios))
    return (f"{moved} of {len(ratios)} cells moved {way} together (median throughput x{median:.3f}): a "
            "machine-level shift between the runs is likely; re-run both before blaming the code")


# What decides whether figures from two machines or software stacks can be compared at all.
_PACKAGES_THAT_MATTER = ("numpy", "numba", "onnxruntime", "onnxruntime-gpu", "onnx", "torch")


def environment_differences(a: Environment, b: Environment) -> list[EnvDifference]:
    out: list[EnvDifference] = []

    def diff(field: str, x, y, matters: bool) -> None:
        if x != y:
            out.append(EnvDifference(field, str(x), str(y), matters))

    diff("cpu_model", a.cpu_model, b.cpu_model, True)
    diff("cpu_cores_logical", a.cpu_cores_logical, b.cpu_cores_logical, True)
    diff("gpus", [g.name for g in a.gpus], [g.name for g in b.gpus], True)
    diff("gpu_driver", sorted({g.driver for g in a.gpus}), sorted({g.driver for g in b.gpus}), True)
    diff("gpu_power_limit_w", [g.power_limit_w for g in a.gpus], [g.power_limit_w for g in b.gpus], True)
    diff("gpu_cuda", sorted({str(g.cuda) for g in a.gpus}), sorted({str(g.cuda) for g in b.gpus}), True)
    diff("gpu_mig_mode", [g.mig_mode for g in a.gpus], [g.mig_mode for g in b.gpus], True)
    diff("python", a.python, b.python, True)
    for pkg in _PACKAGES_THAT_MATTER:
        diff(f"packages.{pkg}", a.packages.get(pkg), b.packages.get(pkg), True)
    diff("cpu_governor", a.cpu_governor, b.cpu_governor, True)
    diff("host", a.host, b.host, False)
    diff("kernel", a.kernel, b.kernel, False)
    diff("os", a.os, b.os, False)
    diff("harness_commit", a.harness_commit, b.harness_commit, False)
    return out


def load_samples(run_dir: Path, cell: Cell) -> np.ndarray | None:
    """The cell's raw latencies, or None when missing, unreadable, empty or not positive."""
    if not cell.samples_file:
        return None
    x = load_samples_file(run_dir, cell.samples_file)
    if x is None:
        return None
    if x.ndim != 1 or x.size == 0 or x.dtype.kind not in "iuf" or not np.all(np.isfinite(x)) or x.min() <= 0:
        return None
    return x


def point_verdict(what: str, base: float, new: float, higher_is_better: bool,
                  threshold: float) -> tuple[CompareVerdict, str, Ratio]:
    ratio = new / base
    worse = ratio < 1 / (1 + threshold) if higher_is_better else ratio > 1 + threshold
    better = ratio > 1 + threshold if higher_is_better else ratio < 1 / (1 + threshold)
    verdict: CompareVerdict = "slower" if worse else "faster" if better else "unchanged"
    return verdict, f"{what} x{ratio:.3f} (point estimates, no test: {base:,.1f} -> {new:,.1f})", Ratio(ratio, ratio, ratio)


def _ratio(value: float, iv: stats.Interval) -> Ratio:
    return Ratio(value, iv.low, iv.high)


def judge(base_ns: np.ndarray, new_ns: np.ndarray, headline: str, threshold: float, alpha: float,
          seed: int = 0) -> tuple[CompareVerdict, str, dict[str, Ratio], float]:
    """The verdict for two latency samples (ns) of one cell, and the ratios behind it."""
    _, p_value = stats.mann_whitney(base_ns, new_ns)
    r_mean, iv_mean = stats.bootstrap_ratio(new_ns, base_ns, "mean", seed=seed)
    r_p50, iv_p50 = stats.bootstrap_ratio(new_ns, base_ns, "median", seed=seed)
    r_p99, iv_p99 = stats.bootstrap_ratio(new_ns, base_ns, 0.99, seed=seed)
    ratios = {
        # throughput = batch / mean latency: its ratio is the mean's, inverted
        "throughput": Ratio(1 / r_mean, 1 / iv_mean.high, 1 / iv_mean.low),
        "p50": _ratio(r_p50, iv_p50),
        "p99": _ratio(r_p99, iv_p99),
    }
    time_ratio, lo, hi = (r_p50, iv_p50.low, iv_p50.high) if headline == "p50" else (r_mean, iv_mean.low, iv_mean.high)
    what = "p50 latency" if headline == "p50" else "time per sample"
    change = f"{what} x{time_ratio:.3f} [{lo:.3f}, {hi:.3f}], Mann-Whitney p = {p_value:.2g}"
    if p_value < alpha and time_ratio > 1 + threshold and lo > 1:
        return "slower", change, ratios, p_value
    if p_value < alpha and time_ratio < 1 / (1 + threshold) and hi < 1:
        return "faster", change, ratios, p_value
    return "unchanged", f"{change} (within ±{threshold:.0%} or not significant at {alpha:g})", ratios, p_value


@dataclass(frozen=True)
class CompareContext:
    base_dir: Path
    new_dir: Path
    threshold: float
    alpha: float
    priors: dict = field(default_factory=dict)  # figure -> bench.stats.Prior over both runs' cells


class ComparePolicy(Protocol):
    """How the cells of one scenario compare, once both are ok, comparable and alike."""

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison: ...


POWER = 0.8  # the power at which "the smallest change it could detect" is stated
MIN_PROCESSES = 2


def _per_process(cell: Cell, figure: str) -> list[float]:
    """One figure of each used repetition: "throughput", "time" (1 / throughput, time per
    sample) or a latency figure ("p50", "p99") in ms."""
    reps = cell.used_repetitions
    if figure in ("throughput", "time"):
        return [r.throughput if figure == "throughput" else 1.0 / r.throughput for r in reps if r.throughput]
    return [getattr(r, f"{figure}_ms") for r in reps if getattr(r, f"{figure}_ms")]


def compare_priors(cells: list[Cell]) -> dict[str, stats.Prior]:
    """Both runs' typical between-process spread per figure (moderates each cell's test)."""
    out = {}
    for figure in ("throughput", "time", "p50", "p99"):
        prior = stats.pooled_prior([_per_process(c, figure) for c in cells if len(c.used_repetitions) >= MIN_PROCESSES])
        if prior is not None:
            out[figure] = prior
    return out


def judge_processes(base: Cell, new: Cell, headline: str, threshold: float, alpha: float,
                    prior: dict[str, stats.Prior] | None = None) -> CellComparison:
    """The process test's provisional verdict (compare_runs applies Holm's correction after)."""
    prior = prior or {}
    ratios = {}
    for figure in ("throughput", "p50", "p99"):
        lr = stats.log_ratio(_per_process(base, figure), _per_process(new, figure), prior=prior.get(figure))
        ratios[figure] = Ratio(lr.ratio, lr.low, lr.high)
    head = stats.log_ratio(_per_process(base, headline), _per_process(new, headline), prior=prior.get(headline))
    what = "p50 latency" if headline == "p50" else "time per sample"
    nb, nn = len(base.used_repetitions), len(new.used_repetitions)
    mde = head.detectable(alpha, POWER)
    change = (f"{what} x{head.ratio:.3f} [{head.low:.3f}, {head.high:.3f}] over {nb} -> {nn} processes, "
              f"Welch p = {head.p_value:.2g}; detectable: ±{mde:.0%}")
    if head.p_value < alpha and head.ratio > 1 + threshold:
        verdict: CompareVerdict = "slower"
    elif head.p_value < alpha and head.ratio < 1 / (1 + threshold):
        verdict = "faster"
    else:
        verdict = "unchanged"
        change += f" (within ±{threshold:.0%} or not significant at {alpha:g})"
    return CellComparison(key="", verdict=verdict, reason=change, throughput=ratios["throughput"], p50=ratios["p50"],
                          p99=ratios["p99"], p_value=head.p_value, method="processes", detectable=mde)


@dataclass(frozen=True)
class SampleTest:
    """Independent calls. With per-process figures on both sides, the process test
    (`judge_processes`); otherwise raw latencies: Mann-Whitney and bootstrap ratios (`judge`).
    The headline is the p50 latency ("p50") or the time per sample, 1 / throughput ("time")."""

    headline: Literal["p50", "time"]

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison:
        from dataclasses import replace

        nb, nn = len(base.used_repetitions), len(new.used_repetitions)
        if nb >= MIN_PROCESSES and nn >= MIN_PROCESSES:
            return replace(judge_processes(base, new, self.headline, ctx.threshold, ctx.alpha, ctx.priors), key=key)
        xb, xn = load_samples(ctx.base_dir, base), load_samples(ctx.new_dir, new)
        if xb is None or xn is None:
            return CellComparison(key, "not comparable", "raw samples missing, empty or corrupt beside run.json")
        verdict, reason, ratios, p = judge(xb, xn, self.headline, ctx.threshold, ctx.alpha)
        sides = [f"{side}: {'one process' if n == 0 else f'{n} process'} per cell"
                 for side, n in (("base", nb), ("new", nn)) if n < MIN_PROCESSES]
        note = (f"{', '.join(sides)} (a run before repetitions, or one that kept fewer than {MIN_PROCESSES}): "
                "within-process sample test, blind to between-process noise; ")
        return CellComparison(key, verdict, note + reason, ratios["throughput"], ratios["p50"], ratios["p99"], p,
                              method="samples")


@dataclass(frozen=True)
class CapacityRatio:
    """One capacity figure per cell (higher is better), compared as a point ratio; `missing` says
    why the cells are not comparable when either lacks it."""

    what: str
    figure: Callable[[Cell], float | None]
    missing: str

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison:
        b, n = self.figure(base), self.figure(new)
        if not b or not n:
            return CellComparison(key, "not comparable", self.missing)
        verdict, reason, r = point_verdict(self.what, b, n, True, ctx.threshold)
        return CellComparison(key, verdict, reason, throughput=r, method="point")


@dataclass(frozen=True)
class NotComparable:
    reason: str

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison:
        return CellComparison(key, "not comparable", self.reason)


def compare_runs(base_path: Path, new_path: Path, policy_for: Callable[[str], ComparePolicy],
                 threshold: float = 0.05, alpha: float = 0.05, allow_env_diff: bool = False) -> Comparison:
    """NEW against BASE, cell by cell; `policy_for(scenario)` says how a scenario's cells compare."""
    base, new = read_run(base_path), read_run(new_path)
    ctx = CompareContext(base_path if base_path.is_dir() else base_path.parent,
                         new_path if new_path.is_dir() else new_path.parent, threshold, alpha,
                         compare_priors([c for c in (*base.cells, *new.cells) if c.status == "ok"]))
    if base.suite.name != new.suite.name:
        raise ResultFileError(
            f"{new_path}: suite {new.suite.name!r} differs from the base's {base.suite.name!r}; "
            "compare runs of the same suite"
        )
    env = environment_differences(base.environment, new.environment)
    new_cells = {c.key.stable_id: c for c in new.cells}
    out: list[CellComparison] = []
    for b in base.cells:
        key = b.key.stable_id
        n = new_cells.pop(key, None)
        if n is None:
            out.append(CellComparison(key, "not comparable", "missing in NEW"))
        elif b.status != "ok" or n.status != "ok":
            out.append(CellComparison(key, "not comparable", f"status: base {b.status}, new {n.status}"))
        elif b.timing_boundary != n.timing_boundary:
            out.append(CellComparison(key, "not comparable", f"timing boundaries differ: base {b.timing_boundary}, "
                                      f"new {n.timing_boundary} (one includes work the other leaves out)"))
        elif (why := _machines_differ(base, b, new, n)) and not allow_env_diff:
            out.append(CellComparison(key, "not comparable", why + " (--allow-env-diff to compare anyway)"))
        else:
            out.append(policy_for(b.scenario).compare(key, b, n, ctx))
    for key in new_cells:
        out.append(CellComparison(key, "not comparable", "missing in BASE"))
    cells = tuple(holm_corrected(out, alpha))
    return Comparison(base.run_id, new.run_id, threshold, alpha, tuple(env), cells, common_shift(cells, threshold))


def _machines_differ(base: Run, b: Cell, new: Run, n: Cell) -> str:
    """Why two measurements of a cell are not of one kind of machine ("" when they are): a fleet
    cell (measured on a node) compares only with one measured on the same machine kind, and any
    two with the same hardware and software where it matters (environment_differences)."""
    if (b.node or n.node) and base.machine_of(b) != new.machine_of(n):
        return f"measured on different machine kinds: base {base.machine_of(b)!r}, new {new.machine_of(n)!r}"
    blocking = [d for d in environment_differences(base.environment_of(b), new.environment_of(n)) if d.matters]
    return ("environments differ in " + ", ".join(d.field for d in blocking)) if blocking else ""


def holm_corrected(cells: list[CellComparison], alpha: float) -> list[CellComparison]:
    """Process-test verdicts that survive Holm's correction over all process-tested cells; the
    others read "unchanged", saying why."""
    from dataclasses import replace

    tested = [i for i, c in enumerate(cells) if c.method == "processes" and c.p_value is not None]
    if not tested:
        return cells
    reject = stats.holm([cells[i].p_value for i in tested], alpha)
    out = list(cells)
    for i, rejected in zip(tested, reject):
        c = cells[i]
        if c.verdict in ("slower", "faster") and not rejected:
            out[i] = replace(c, verdict="unchanged", reason=f"{c.reason} (not significant after Holm's correction "
                                                            f"over {len(tested)} cells at {alpha:g})")
    return out
