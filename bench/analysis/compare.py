"""Comparing two runs cell by cell: ratios with intervals, and verdicts that say what they know.

Cells are matched by identity (bench.results.records.CellKey: benchmark, model hash, target,
batch size, scenario, concurrency). Each scenario says how its cells compare (its ComparePolicy;
the caller passes `policy_for`).

Three answers per deciding figure, never two (issue 27):
  - "slower" / "faster": the difference test rejects (after Holm's correction, below) AND the
    ratio's point estimate is past the threshold (time ratio > 1 + threshold, or < 1 / (1 +
    threshold); inverted for figures where higher is better);
  - "unchanged" (within ±threshold): an equivalence test, two one-sided tests (TOST, Schuirmann
    1987) at the threshold, each at alpha: the ratio's (1 - 2 alpha) interval (90% at the default
    alpha) lies inside (1 / (1 + threshold), 1 + threshold);
  - "inconclusive": neither. The interval is too wide to tell a change of the threshold's size
    from none; the smallest change the cell could have detected (at alpha, 80% power) says how
    far it is from telling. "No difference found" is not "unchanged".
A cell's verdict is its deciding figures' worst: slower, then inconclusive, then faster, then
unchanged. The figures that decide: the scenario's headline (p50 latency in single-stream, time
per sample, 1 / throughput, in offline and multi-stream), p99 latency (every stop rule names it
in ci_figures unless a suite overrides the default, and run.json does not record the override:
see `deciding_figures`), and every latency figure the cell's SLO limits.

Multiplicity. The difference tests of every deciding figure of every process-tested cell form one
family, corrected with Holm's procedure, so the whole comparison calls something slower or faster
when nothing changed at most alpha of the time however many figures decide per cell. The
equivalence claims need no correction: a cell is unchanged only when all its figures are (an
intersection-union test, Berger 1982, is level alpha as it stands), and so is "every cell
unchanged", the run-level claim a gate acts on.

The process test, for cells of independent calls measured in at least 2 worker processes on
both sides (schema 6 on): the unit of evidence is the process, since most of the noise lives
between processes (bench.stats.processes). From each side's per-process figures: ratios NEW /
BASE as ratios of geometric means over processes, Welch t intervals and p-values on the logs,
each side's spread moderated by both runs' typical spread.

The sample test, for cells where either side is one process (runs before schema 6): from the raw
samples (samples/NNNN.npy), bootstrap percentile intervals of the ratios and, for the headline, a
Mann-Whitney U test (tie-corrected); blind to between-process noise, and the reason says so. Its
k deciding figures are each tested at alpha / k (Bonferroni within the cell; cells are not
corrected together, as before). A one-process cell of a run that did not complete (a cell cut
short where its rule asked for more) is inconclusive instead: its samples say nothing of the
spread between processes.

A capacity figure (a peak rate, LoadGen's own samples/s) compares as a point ratio: one figure per
run, no interval. Past the threshold it reads slower or faster ("no test"); inside it reads
inconclusive, since one point cannot show equivalence. Cells whose environments differ in what
matters are "not comparable" unless allowed, as are cells timed at different boundaries.

The comparison also says how the two runs were made where they differ (`run_differences`: suite
file, stop rules, repetitions, harness, an interrupted run), in one line before its table.

Accuracy (issue 29). A cell whose two sides both carry accuracy figures (Agreement.accuracy: the
loss against the reference's outputs on the accuracy samples, with its interval) gets a second
answer beside its speed (`compare_accuracy`), a series of its own that can regress:
  - "worse": NEW's loss interval lies wholly above BASE's, or NEW's outputs fail agreement (an
    int8 target's loss over its tolerance) where BASE's passed;
  - "better": the mirror;
  - "unchanged": the losses differ by no more than the threshold's share of the tolerance the
    loss is judged against (both sides scored alike on the same seeded samples give the same
    loss), or not at all where no tolerance bounds the loss;
  - "inconclusive": the intervals overlap on a change past that: the samples cannot tell it
    from chance (64 samples resolve a top-1 change of about ten points, not one).
A worse accuracy is a regression as a slower figure is: the comparison's outcome reads "less
accurate" (exit 1) where no cell is slower; an inconclusive one makes it inconclusive.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import numpy as np

from bench import stats
from bench.errors import ResultFileError
from bench.results.files import read_run
from bench.results.safe_read import load_samples_file
from bench.results.records import Accuracy, Cell, Environment, Run

Answer = Literal["slower", "faster", "unchanged", "inconclusive"]
AccuracyAnswer = Literal["worse", "better", "unchanged", "inconclusive"]
CompareVerdict = Literal["slower", "faster", "unchanged", "inconclusive", "not comparable"]
# The run-level answer: "slower" (exit 1), "less accurate" (exit 1: no cell slower, but a cell's
# accuracy loss rose), "inconclusive" (exit 0, or 1 with --fail-on-inconclusive: a cell could not be
# told apart from a change of the threshold's size, or no cell was compared), "pass" (every compared
# cell unchanged within the threshold or faster, and no accuracy worse or inconclusive).
Outcome = Literal["slower", "less accurate", "inconclusive", "pass"]


@dataclass(frozen=True)
class Ratio:
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class FigureVerdict:
    """One deciding figure of a cell: NEW / BASE with its 95% interval, and the answer it gives."""

    figure: str  # "p50", "p99", "time" (per sample), "capacity", or a generate figure ("tpot_p50_ms", ...)
    label: str  # the figure in words: "p50 latency", "time per sample"
    answer: Answer
    ratio: Ratio
    higher_is_better: bool = False
    p_value: float | None = None  # the difference test's, before any correction (None: no p-value)
    equivalence_p: float | None = None  # the larger of the two one-sided tests' p-values at ±threshold
    detectable: float | None = None  # the smallest relative change the test finds with 80% power
    test: str = ""  # "Welch" (processes, corrected by Holm), "Mann-Whitney", "bootstrap", "point"
    note: str = ""  # why its answer is what it is, where the interval alone does not say


@dataclass(frozen=True)
class AccuracyChange:
    """A cell's accuracy loss in BASE and in NEW (each with its interval), and the answer."""

    metric: str  # top1 | cosine | abs-error | token (NEW's)
    base_loss: float
    new_loss: float
    answer: AccuracyAnswer
    reason: str
    base_low: float | None = None
    base_high: float | None = None
    new_low: float | None = None
    new_high: float | None = None
    tolerance: float | None = None  # what the loss is judged against, where a tolerance bounds it
    samples: tuple[int, int] = (0, 0)  # accuracy samples, BASE and NEW

    @property
    def change(self) -> float:
        """NEW's loss - BASE's (in the loss's own units: a share for top-1 and tokens)."""
        return self.new_loss - self.base_loss


@dataclass(frozen=True)
class CellComparison:
    key: str
    verdict: CompareVerdict
    reason: str
    throughput: Ratio | None = None
    p50: Ratio | None = None
    p99: Ratio | None = None
    p_value: float | None = None  # the smallest of its deciding figures' p-values, before correction
    method: str = ""  # "processes" (per-process figures), "samples" (within-process), "point"
    detectable: float | None = None  # the largest of its deciding figures' minimum detectable changes
    figures: tuple[FigureVerdict, ...] = ()  # the figures that decided, each with its own answer
    skipped: str = ""  # skipped in both runs: why (the base's reason); reports fold these into one line
    accuracy: AccuracyChange | None = None  # where both sides carry accuracy figures (schema 14)

    @property
    def less_accurate(self) -> bool:
        return self.accuracy is not None and self.accuracy.answer == "worse"


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
    run_differences: tuple[str, ...] = ()  # how the two runs were made differently (run_differences)

    def _with(self, verdict: str) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict == verdict]

    @property
    def slower(self) -> list[CellComparison]:
        return self._with("slower")

    @property
    def inconclusive(self) -> list[CellComparison]:
        return self._with("inconclusive")

    @property
    def faster(self) -> list[CellComparison]:
        return self._with("faster")

    @property
    def unchanged(self) -> list[CellComparison]:
        return self._with("unchanged")

    @property
    def not_comparable(self) -> list[CellComparison]:
        return self._with("not comparable")

    def _accuracy(self, answer: str) -> list[CellComparison]:
        return [c for c in self.cells if c.accuracy is not None and c.accuracy.answer == answer]

    @property
    def less_accurate(self) -> list[CellComparison]:
        """Cells whose accuracy loss rose (a regression, as a slower figure is)."""
        return self._accuracy("worse")

    @property
    def accuracy_inconclusive(self) -> list[CellComparison]:
        return self._accuracy("inconclusive")

    @property
    def accuracy_compared(self) -> list[CellComparison]:
        return [c for c in self.cells if c.accuracy is not None]

    @property
    def regressed(self) -> list[CellComparison]:
        """Cells slower or less accurate, each once: what makes compare exit 1."""
        return [c for c in self.cells if c.verdict == "slower" or c.less_accurate]

    @property
    def outcome(self) -> Outcome:
        if self.slower:
            return "slower"
        if self.less_accurate:
            return "less accurate"
        if self.inconclusive or self.accuracy_inconclusive or len(self.not_comparable) == len(self.cells):
            return "inconclusive"  # a cell too noisy to tell, or nothing compared at all
        return "pass"


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


def _quick(run: Run) -> bool:
    """Whether the run was made with --quick (its stop rules scaled down: StopSpec.quick)."""
    return "--quick" in run.argv[1:]


def _span(counts: list[int]) -> str:
    return "-" if not counts else str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def run_differences(base: Run, new: Run) -> tuple[str, ...]:
    """How the two runs were made differently, from what run.json records (no format change):
    the suite file's hash (its stop rules, targets and SLOs live there), --quick in argv (the
    same rules scaled down), the worker processes each measured cell ran in, the harness's
    version and commit, and a run that did not complete."""
    out: list[str] = []
    if base.suite.sha256 != new.suite.sha256:
        out.append(f"suite file changed (sha256 {base.suite.sha256[:12]} -> {new.suite.sha256[:12]}): its stop rules, "
                   "targets or SLOs may differ")
    qb, qn = _quick(base), _quick(new)
    if qb != qn:
        out.append(f"stop rules differ: {'BASE' if qb else 'NEW'} ran with --quick (a tenth of the stop times, at most "
                   "2 processes a cell)")
    rb = sorted(len(c.repetitions) for c in base.cells if c.status == "ok" and c.repetitions)
    rn = sorted(len(c.repetitions) for c in new.cells if c.status == "ok" and c.repetitions)
    if rb and rn and _span(rb) != _span(rn):
        out.append(f"processes per cell: BASE {_span(rb)}, NEW {_span(rn)}")
    hb = (base.harness_version, base.environment.harness_commit, base.environment.harness_dirty)
    hn = (new.harness_version, new.environment.harness_commit, new.environment.harness_dirty)
    if hb != hn:
        def harness(version: str, commit: str | None, dirty: bool | None) -> str:
            return f"{version or '?'} (commit {(commit or 'unknown')[:10]}{', uncommitted changes' if dirty else ''})"

        out.append(f"harness {harness(*hb)} -> {harness(*hn)}")
    for side, run in (("BASE", base), ("NEW", new)):
        if run.status != "complete":
            out.append(f"{side} {run.status}" + (f" ({run.end_reason})" if run.end_reason else "")
                       + ": its missing and cut-short cells are inconclusive")
    return tuple(out)


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


# --- one figure's answer --------------------------------------------------------------------------


def _past(ratio: float, higher_is_better: bool, threshold: float) -> tuple[bool, bool]:
    """(worse, better): whether a ratio's point estimate is past the threshold either way."""
    up, down = ratio > 1 + threshold, ratio < 1 / (1 + threshold)
    return (down, up) if higher_is_better else (up, down)


def _upper_tail(t: float, df: float) -> float:
    """P(T >= t) for Student's t with df degrees of freedom."""
    two = stats.t_two_sided_p(t, df)
    return two / 2 if t >= 0 else 1 - two / 2


def equivalence_p(lr: stats.LogRatio, threshold: float) -> float:
    """Two one-sided tests (Schuirmann 1987) of |log ratio| >= log(1 + threshold) on Welch's t:
    the larger p-value; below alpha, the ratio is within ±threshold (its 1 - 2 alpha interval is
    inside the band). A threshold of 0 never shows equivalence."""
    band = math.log1p(threshold)
    d = math.log(lr.ratio)
    if lr.se_log == 0.0:
        return 0.0 if abs(d) < band else 1.0
    return max(_upper_tail((d + band) / lr.se_log, lr.df), _upper_tail((band - d) / lr.se_log, lr.df))


def decide(figure: str, label: str, lr: stats.LogRatio, higher_is_better: bool, threshold: float,
           alpha: float) -> FigureVerdict:
    """A figure's provisional answer from its process-level log ratio (compare_runs then applies
    Holm's correction to the difference tests of all figures of all cells)."""
    worse, better = _past(lr.ratio, higher_is_better, threshold)
    eq = equivalence_p(lr, threshold)
    if lr.p_value < alpha and (worse or better):
        answer: Answer = "slower" if worse else "faster"
    elif eq < alpha:
        answer = "unchanged"
    else:
        answer = "inconclusive"
    return FigureVerdict(figure, label, answer, Ratio(lr.ratio, lr.low, lr.high), higher_is_better, lr.p_value, eq,
                         lr.detectable(alpha, POWER), "Welch")


_WORST_FIRST: tuple[Answer, ...] = ("slower", "inconclusive", "faster", "unchanged")


def cell_verdict(figures: tuple[FigureVerdict, ...]) -> Answer:
    """A cell's answer from its figures': a regression anywhere is one, and a figure that cannot
    tell keeps the cell from reading unchanged (or faster)."""
    answers = {f.answer for f in figures}
    return next(a for a in _WORST_FIRST if a in answers)


def describe(f: FigureVerdict, threshold: float, alpha: float) -> str:
    """One figure's ratio, answer and test in words: "p99 latency x1.31 [0.92, 1.86] inconclusive
    (Welch p = 0.11, detectable ±38%)"."""
    r = f.ratio
    head = f"{f.label} x{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
    if f.test == "point":
        words = {"slower": "slower (point estimates, no test)", "faster": "faster (point estimates, no test)",
                 "inconclusive": f"inconclusive (one figure per run, no interval: it cannot show a change within "
                                 f"±{threshold:.0%})"}
        return f"{head.split(' [')[0]} {words.get(f.answer, f.answer)}"
    words = {"unchanged": f"unchanged within ±{threshold:.0%}"}.get(f.answer, f.answer)
    if f.note:
        words += f" ({f.note})"
    test = [f"{f.test} p = {f.p_value:.2g}" if f.p_value is not None else f"{f.test} interval"]
    if f.detectable is not None:
        test.append(f"detectable ±{f.detectable:.0%}")
    return f"{head} {words} ({', '.join(test)})"


def _summary(figures: tuple[FigureVerdict, ...]) -> dict:
    """The CellComparison fields its figures give: verdict, p_value, detectable."""
    ps = [f.p_value for f in figures if f.p_value is not None]
    ds = [f.detectable for f in figures if f.detectable is not None]
    return dict(verdict=cell_verdict(figures), p_value=min(ps) if ps else None, detectable=max(ds) if ds else None)


def _ratio(value: float, iv: stats.Interval) -> Ratio:
    return Ratio(value, iv.low, iv.high)


class SampleJudgement(NamedTuple):
    verdict: Answer
    reason: str
    ratios: dict[str, Ratio]
    p_value: float
    figures: tuple[FigureVerdict, ...]


# The sample test's statistic of each figure (bench.stats.bootstrap_ratio) and its words.
_SAMPLE_STATISTIC = {"p50": "median", "time": "mean", "p99": 0.99, "p90": 0.9, "p95": 0.95, "p999": 0.999,
                     "mean": "mean"}
_LABEL = {"p50": "p50 latency", "time": "time per sample", "mean": "mean latency", "throughput": "throughput"}


def _label(figure: str) -> str:
    return _LABEL.get(figure, f"{figure} latency")


def judge(base_ns: np.ndarray, new_ns: np.ndarray, headline: str, threshold: float, alpha: float,
          seed: int = 0, deciding: tuple[str, ...] = ("p99",)) -> SampleJudgement:
    """The answer for two latency samples (ns) of one cell, the ratios and the figures behind it.
    Each of the k deciding figures is tested at alpha / k (Bonferroni within the cell): the
    headline by Mann-Whitney (with its 95% bootstrap interval excluding 1, as before), another
    figure by its (1 - alpha / k) bootstrap interval excluding 1 (Mann-Whitney tests location, not
    a tail); equivalence by each figure's (1 - 2 alpha) bootstrap interval inside the band."""
    wanted = (headline, *(f for f in deciding if f != headline))
    level = alpha / len(wanted)
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
    shown_of = {**ratios, "time": _ratio(r_mean, iv_mean)}
    figures = []
    for figure in wanted:
        statistic = _SAMPLE_STATISTIC[figure]
        shown = shown_of.get(figure) or _ratio(*stats.bootstrap_ratio(new_ns, base_ns, statistic, seed=seed))
        _, eq_iv = stats.bootstrap_ratio(new_ns, base_ns, statistic, confidence=1 - 2 * alpha, seed=seed)
        if figure == headline:
            low, high = shown.ci_low, shown.ci_high
            significant = p_value < level
        else:
            _, iv = stats.bootstrap_ratio(new_ns, base_ns, statistic, confidence=1 - level, seed=seed)
            low, high = iv.low, iv.high
            significant = low > 1 or high < 1
        worse, better = _past(shown.value, False, threshold)
        if significant and worse and low > 1:
            answer: Answer = "slower"
        elif significant and better and high < 1:
            answer = "faster"
        elif 1 / (1 + threshold) < eq_iv.low and eq_iv.high < 1 + threshold:
            answer = "unchanged"
        else:
            answer = "inconclusive"
        figures.append(FigureVerdict(figure, _label(figure), answer, shown, False,
                                     p_value if figure == headline else None,
                                     test="Mann-Whitney" if figure == headline else "bootstrap"))
    got = tuple(figures)
    reason = "; ".join(describe(f, threshold, alpha) for f in got)
    if len(wanted) > 1:
        reason += f" (each figure tested at {level:.3g}: Bonferroni over {len(wanted)})"
    return SampleJudgement(cell_verdict(got), reason, ratios, p_value, got)


@dataclass(frozen=True)
class CompareContext:
    base_dir: Path
    new_dir: Path
    threshold: float
    alpha: float
    priors: dict = field(default_factory=dict)  # figure -> bench.stats.Prior over both runs' cells
    base_complete: bool = True  # whether each run completed (a cut-short cell of one that did not is inconclusive)
    new_complete: bool = True


class ComparePolicy(Protocol):
    """How the cells of one scenario compare, once both are ok, comparable and alike."""

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison: ...


POWER = 0.8  # the power at which "the smallest change it could detect" is stated
MIN_PROCESSES = 2
# Latency figures a cell's SLO may limit that have per-process figures (Repetition.<figure>_ms).
_SLO_FIGURES = ("mean", "p50", "p90", "p95", "p99", "p999")


def _per_process(cell: Cell, figure: str) -> list[float]:
    """One figure of each used repetition: "throughput", "time" (1 / throughput, time per
    sample) or a latency figure ("mean", "p50", "p99", ...) in ms."""
    reps = cell.used_repetitions
    if figure in ("throughput", "time"):
        return [r.throughput if figure == "throughput" else 1.0 / r.throughput for r in reps if r.throughput]
    return [getattr(r, f"{figure}_ms") for r in reps if getattr(r, f"{figure}_ms")]


def deciding_figures(base: Cell, new: Cell, headline: str) -> tuple[str, ...]:
    """The figures that decide a cell: the scenario's headline; p99, which every stop rule names
    in ci_figures unless its suite overrides the default (the override is in the suite file,
    which run.json records only as a hash, so p99 decides in every cell); and each latency
    figure either side's SLO limits, since the suite named it as what matters."""
    slo = {c.metric.removesuffix("_ms") for cell in (base, new) if cell.slo is not None for c in cell.slo.checks}
    return (headline, *(f for f in ("p99", *sorted(slo & set(_SLO_FIGURES) - {"p99"})) if f != headline))


def compare_priors(cells: list[Cell]) -> dict[str, stats.Prior]:
    """Both runs' typical between-process spread per figure (moderates each cell's test)."""
    out = {}
    for figure in ("throughput", "time", *_SLO_FIGURES):
        prior = stats.pooled_prior([_per_process(c, figure) for c in cells if len(c.used_repetitions) >= MIN_PROCESSES])
        if prior is not None:
            out[figure] = prior
    return out


def judge_processes(base: Cell, new: Cell, headline: str, threshold: float, alpha: float,
                    prior: dict[str, stats.Prior] | None = None) -> CellComparison:
    """The process test's provisional answers (compare_runs applies Holm's correction after)."""
    prior = prior or {}

    def lr(figure: str) -> stats.LogRatio | None:
        b, n = _per_process(base, figure), _per_process(new, figure)
        if len(b) < MIN_PROCESSES or len(n) < MIN_PROCESSES:
            return None  # a figure some processes lack (a server cell's latencies, ...)
        return stats.log_ratio(b, n, prior=prior.get(figure))

    ratios = {}
    for figure in ("throughput", "p50", "p99"):
        got = lr(figure)
        ratios[figure] = None if got is None else Ratio(got.ratio, got.low, got.high)
    figures = tuple(decide(f, _label(f), got, False, threshold, alpha)
                    for f in deciding_figures(base, new, headline) if (got := lr(f)) is not None)
    nb, nn = len(base.used_repetitions), len(new.used_repetitions)
    if not figures:
        return CellComparison("", "not comparable", f"no per-process {_label(headline)} on both sides")
    reason = f"over {nb} -> {nn} processes: " + "; ".join(describe(f, threshold, alpha) for f in figures)
    return CellComparison(key="", reason=reason, throughput=ratios["throughput"], p50=ratios["p50"], p99=ratios["p99"],
                          method="processes", figures=figures, **_summary(figures))


@dataclass(frozen=True)
class SampleTest:
    """Independent calls. With per-process figures on both sides, the process test
    (`judge_processes`); otherwise raw latencies: Mann-Whitney and bootstrap ratios (`judge`).
    The headline is the p50 latency ("p50") or the time per sample, 1 / throughput ("time")."""

    headline: Literal["p50", "time"]

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison:
        nb, nn = len(base.used_repetitions), len(new.used_repetitions)
        if nb >= MIN_PROCESSES and nn >= MIN_PROCESSES:
            return replace(judge_processes(base, new, self.headline, ctx.threshold, ctx.alpha, ctx.priors), key=key)
        cut = [f"{side} was not completed and kept {n} process{'es' if n != 1 else ''} of this cell"
               for side, cell, n, complete in (("BASE", base, nb, ctx.base_complete), ("NEW", new, nn, ctx.new_complete))
               if not complete and cell.repetitions and n < MIN_PROCESSES]
        if cut:
            # A cell cut short (Ctrl-C after its first process): one process draws one of the
            # machine's per-process modes, and its within-process interval cannot see that.
            return CellComparison(key, "inconclusive", "; ".join(cut) + ": no spread between processes to test "
                                  "against (re-run it whole)")
        xb, xn = load_samples(ctx.base_dir, base), load_samples(ctx.new_dir, new)
        if xb is None or xn is None:
            return CellComparison(key, "not comparable", "raw samples missing, empty or corrupt beside run.json")
        got = judge(xb, xn, self.headline, ctx.threshold, ctx.alpha, deciding=deciding_figures(base, new, self.headline))
        sides = [f"{side}: {'one process' if n == 0 else f'{n} process'} per cell"
                 for side, n in (("base", nb), ("new", nn)) if n < MIN_PROCESSES]
        note = (f"{', '.join(sides)} (a run before repetitions, or one that kept fewer than {MIN_PROCESSES}): "
                "within-process sample test, blind to between-process noise; ")
        return CellComparison(key, got.verdict, note + got.reason, got.ratios["throughput"], got.ratios["p50"],
                              got.ratios["p99"], got.p_value, method="samples", figures=got.figures)


_POINT_NOTE = "one figure per run, no interval"


def point_verdict(what: str, base: float, new: float, higher_is_better: bool,
                  threshold: float) -> tuple[Answer, str, Ratio]:
    """One figure per run: past the threshold, slower or faster without a test; inside it,
    inconclusive (a point cannot show that the figure is within the threshold)."""
    ratio = new / base
    worse, better = _past(ratio, higher_is_better, threshold)
    verdict: Answer = "slower" if worse else "faster" if better else "inconclusive"
    r = Ratio(ratio, ratio, ratio)
    f = FigureVerdict("capacity", what, verdict, r, higher_is_better, test="point", note=_POINT_NOTE)
    return verdict, f"{describe(f, threshold, 0.0)} ({base:,.1f} -> {new:,.1f})", r


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
        f = FigureVerdict("capacity", self.what, verdict, r, True, test="point", note=_POINT_NOTE)
        return CellComparison(key, verdict, reason, throughput=r, method="point", figures=(f,))


@dataclass(frozen=True)
class NotComparable:
    reason: str

    def compare(self, key: str, base: Cell, new: Cell, ctx: CompareContext) -> CellComparison:
        return CellComparison(key, "not comparable", self.reason)


def compare_runs(base_path: Path, new_path: Path, policy_for: Callable[[str], ComparePolicy],
                 threshold: float = 0.05, alpha: float = 0.05, allow_env_diff: bool = False) -> Comparison:
    """NEW against BASE, cell by cell; `policy_for(scenario)` says how a scenario's cells compare."""
    base, new = read_run(base_path), read_run(new_path)
    if base.suite.name != new.suite.name:
        raise ResultFileError(
            f"{new_path}: suite {new.suite.name!r} differs from the base's {base.suite.name!r}; "
            "compare runs of the same suite"
        )
    ctx = CompareContext(base_path if base_path.is_dir() else base_path.parent,
                         new_path if new_path.is_dir() else new_path.parent, threshold, alpha,
                         compare_priors([c for c in (*base.cells, *new.cells) if c.status == "ok"]),
                         base.status == "complete", new.status == "complete")
    env = environment_differences(base.environment, new.environment)
    new_cells = {c.key.stable_id: c for c in new.cells}
    out: list[CellComparison] = []

    def missing(key: str, side: str, run: Run) -> CellComparison:
        if run.status != "complete":
            return CellComparison(key, "inconclusive", f"not measured: {side} was {run.status} before this cell"
                                  + (f" ({run.end_reason})" if run.end_reason else ""))
        return CellComparison(key, "not comparable", f"missing in {side}")

    for b in base.cells:
        key = b.key.stable_id
        n = new_cells.pop(key, None)
        if n is None:
            out.append(missing(key, "NEW", new))
        elif b.status == "skipped" and n.status == "skipped":
            out.append(CellComparison(key, "not comparable", "status: base skipped, new skipped", skipped=b.reason))
        elif b.status != "ok" or n.status != "ok":
            out.append(CellComparison(key, "not comparable", f"status: base {b.status}, new {n.status}"))
        elif b.timing_boundary != n.timing_boundary:
            out.append(CellComparison(key, "not comparable", f"timing boundaries differ: base {b.timing_boundary}, "
                                      f"new {n.timing_boundary} (one includes work the other leaves out)"))
        elif (why := _machines_differ(base, b, new, n)) and not allow_env_diff:
            out.append(CellComparison(key, "not comparable", why + " (--allow-env-diff to compare anyway)"))
        else:
            out.append(replace(policy_for(b.scenario).compare(key, b, n, ctx), accuracy=compare_accuracy(b, n, threshold)))
    for key in new_cells:
        out.append(missing(key, "BASE", base))
    cells = tuple(holm_corrected(out, alpha, threshold))
    return Comparison(base.run_id, new.run_id, threshold, alpha, tuple(env), cells, common_shift(cells, threshold),
                      run_differences(base, new))


def _machines_differ(base: Run, b: Cell, new: Run, n: Cell) -> str:
    """Why two measurements of a cell are not of one kind of machine ("" when they are): a fleet
    cell (measured on a node) compares only with one measured on the same machine kind, and any
    two with the same hardware and software where it matters (environment_differences)."""
    if (b.node or n.node) and base.machine_of(b) != new.machine_of(n):
        return f"measured on different machine kinds: base {base.machine_of(b)!r}, new {new.machine_of(n)!r}"
    blocking = [d for d in environment_differences(base.environment_of(b), new.environment_of(n)) if d.matters]
    return ("environments differ in " + ", ".join(d.field for d in blocking)) if blocking else ""


def holm_corrected(cells: list[CellComparison], alpha: float, threshold: float = 0.05) -> list[CellComparison]:
    """Holm's procedure over the difference tests of every deciding figure of every
    process-tested cell (a cell without figures brings its own p-value as one test). A figure
    called slower or faster whose test does not survive reads inconclusive: its point estimate is
    past the threshold, but the comparison as a whole cannot tell it from noise. Each cell's
    verdict is then its figures' worst again."""
    tests: list[tuple[int, int | None, float]] = []  # (cell, figure or None for the cell's own p, p)
    for i, c in enumerate(cells):
        if c.method != "processes":
            continue
        if c.figures:
            tests += [(i, j, f.p_value) for j, f in enumerate(c.figures) if f.p_value is not None]
        elif c.p_value is not None:
            tests.append((i, None, c.p_value))
    if not tests:
        return cells
    reject = stats.holm([p for _, _, p in tests], alpha)
    n_cells = len({i for i, _, _ in tests})
    family = f"Holm's correction over {len(tests)} tests in {n_cells} cells at {alpha:g}"
    out = list(cells)
    for (i, j, _), rejected in zip(tests, reject):
        if rejected:
            continue
        c = out[i]
        if j is None:
            if c.verdict in ("slower", "faster"):
                out[i] = replace(c, verdict="inconclusive", reason=f"{c.reason} (not significant after {family})")
            continue
        f = c.figures[j]
        if f.answer not in ("slower", "faster"):
            continue
        demoted = replace(f, answer="inconclusive", note=f"past the threshold, but not significant after {family}")
        figures = c.figures[:j] + (demoted,) + c.figures[j + 1:]
        said, now = describe(f, threshold, alpha), describe(demoted, threshold, alpha)
        reason = c.reason.replace(said, now) if said in c.reason else f"{c.reason}; {now}"
        out[i] = replace(c, figures=figures, verdict=cell_verdict(figures), reason=reason)
    return out


# --- accuracy ----------------------------------------------------------------------------------

_SHARES = ("top1", "token")


def _loss_words(metric: str, loss: float, low: float | None, high: float | None) -> str:
    """"3.1% [0.9, 10.7]" for a share's loss, "0.000123 [0.0001, 0.00015]" otherwise."""
    def one(v: float) -> str:
        return f"{100 * v:.3g}%" if metric in _SHARES else f"{v:.3g}"

    return one(loss) + ("" if low is None or high is None else f" [{one(low)}, {one(high)}]")


def _judged_tolerance(cell: Cell, acc: Accuracy) -> float | None:
    """The tolerance the cell's accuracy loss is in the units of: an int8 target's (its verdict is
    its loss against it), or the element-wise one where the loss is the relative error it bounds."""
    a = cell.agreement
    if a is None or a.tolerance is None:
        return None
    if cell.target.precision.startswith("int8") or acc.metric == "abs-error":
        return a.tolerance
    return None


def compare_accuracy(base: Cell, new: Cell, threshold: float) -> AccuracyChange | None:
    """The answer for a cell's accuracy loss, BASE against NEW; None where a side has no accuracy
    figures (a reference target, a run before schema 14 or without accuracy samples)."""
    a = base.agreement.accuracy if base.agreement is not None else None
    b = new.agreement.accuracy if new.agreement is not None else None
    if a is None or b is None:
        return None
    base_text = _loss_words(a.metric, a.loss, a.loss_ci_low, a.loss_ci_high)
    new_text = _loss_words(b.metric, b.loss, b.loss_ci_low, b.loss_ci_high)
    tolerance = _judged_tolerance(new, b) or _judged_tolerance(base, a)
    fields = dict(metric=b.metric, base_loss=a.loss, new_loss=b.loss, base_low=a.loss_ci_low, base_high=a.loss_ci_high,
                  new_low=b.loss_ci_low, new_high=b.loss_ci_high, tolerance=tolerance, samples=(a.samples, b.samples))
    if a.metric != b.metric:
        return AccuracyChange(**fields, answer="inconclusive",
                              reason=f"accuracy metric changed ({a.metric} -> {b.metric}): the losses do not compare")
    head = f"accuracy loss {base_text} -> {new_text}"
    base_fails, new_fails = base.agreement.verdict == "fail", new.agreement.verdict == "fail"
    if new_fails and not base_fails:
        return AccuracyChange(**fields, answer="worse", reason=f"{head}: now fails agreement ({new.agreement.reason})")
    if base_fails and not new_fails:
        return AccuracyChange(**fields, answer="better", reason=f"{head}: now passes agreement")
    if b.loss_ci_low is not None and a.loss_ci_high is not None and b.loss_ci_low > a.loss_ci_high:
        return AccuracyChange(**fields, answer="worse", reason=f"{head}: NEW's interval lies wholly above BASE's")
    if b.loss_ci_high is not None and a.loss_ci_low is not None and b.loss_ci_high < a.loss_ci_low:
        return AccuracyChange(**fields, answer="better", reason=f"{head}: NEW's interval lies wholly below BASE's")
    margin = threshold * tolerance if tolerance else 0.0
    if abs(b.loss - a.loss) <= max(margin, 1e-12 * max(1.0, abs(a.loss))):
        within = f"within ±{_loss_words(a.metric, margin, None, None)} ({threshold:.0%} of the tolerance {tolerance:g})" \
            if margin else "the same"
        return AccuracyChange(**fields, answer="unchanged", reason=f"{head}: unchanged, {within}")
    n = "/".join(str(k) for k in dict.fromkeys((a.samples, b.samples)))
    return AccuracyChange(**fields, answer="inconclusive",
                          reason=f"{head}: the intervals overlap; {n} samples cannot tell this change from chance "
                                 "(more samples narrow them: accuracy = { samples = N } in the benchmark)")
