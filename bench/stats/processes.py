"""Figures over worker processes: the level at which a benchmark's error lives.

The model (one-way random effects): repetition r of a cell, run in its own process, measures
figure_r = mu + b_r + e_r, where b_r is the process's own offset (its memory layout, the cores it
got, the machine's state in its minute: measured here as a bimodal spread of 17%) and e_r the
sampling error of its window. The cell's figure is the mean of the R per-process figures, and
its interval is Student's t with R - 1 degrees of freedom over them, which holds both terms
(each figure_r carries its e_r). The split reported per figure: within = the mean squared
standard error of the per-process figures (from each window's own interval), between =
max(0, sample variance of the figures - within) (the ANOVA method-of-moments estimate).

A cell measured in a few processes can draw them all from one mode (five of five in the fast
mode: (2/3)^5 = 13% here), and its own spread then says the cell is steadier than the machine
is: a plain t interval covered the true mean in 86% of planted cells instead of 95%. So the
spread is moderated by the run's (empirical Bayes, as limma's moderated t: Smyth, Statistical
Applications in Genetics and Molecular Biology 3(1), 2004): the prior is the typical squared
CV of that figure over the run's cells (their median, over the median of chi^2 / df, so it
estimates the mean), worth PRIOR_DF degrees of freedom; a cell's variance is the df-weighted
mean of its own and the prior, and its t has R - 1 + PRIOR_DF degrees of freedom. A cell
steadier than the run still gets a narrower interval than the run's typical one.

The prior assumes the cells' spreads come from one population. A cell whose own spread is far
past what the typical spread gives (its (R - 1) s^2 / prior beyond the 99th percentile of
chi^2 with R - 1 df) is not one of them, as a torch target decoding token by token in Python is
beside ONNX Runtime ones (measured: between-process CV 0.2 against a typical 0.01-0.08); shrunk
toward the typical spread its interval held a re-run's figure 78-88% of the time. Such a cell
keeps its own spread and its own R - 1 degrees of freedom.

Two runs, or two targets, compare on the logarithms of their per-process figures (Welch's t:
unequal variances, Satterthwaite's degrees of freedom), so a ratio and its interval come out,
and the smallest change the comparison could have detected follows from the same standard error
(minimum detectable effect at two-sided alpha and the given power, t quantiles). Many such tests
in one run are corrected together: Holm (family-wise error) or Benjamini-Hochberg (false
discovery rate), both step procedures over the sorted p-values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.stats.checks import Interval, check_confidence, normal_quantile
from bench_kernels import student as _t


def t_quantile(p: float, df: float) -> float:
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t quantile: p {p!r} must be in (0, 1) and df {df!r} > 0")
    return float(_t.t_ppf(float(p), float(df)))


def t_two_sided_p(t: float, df: float) -> float:
    return float(min(1.0, 2.0 * (1.0 - _t.t_cdf(abs(float(t)), float(df)))))


def _values(values, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: expected a non-empty 1-D array of finite numbers")
    return x


PRIOR_DF = 4.0


@dataclass(frozen=True)
class Prior:
    """The run's typical between-process spread of one figure: squared CV, worth `df` degrees."""

    cv2: float
    df: float = PRIOR_DF


def _chi2_median_ratio(k: float) -> float:
    """median(chi^2_k) / k (Wilson-Hilferty)."""
    return (1 - 2 / (9 * k)) ** 3


def pooled_prior(groups) -> Prior | None:
    """The prior from several cells' per-process figures (those with at least 2 processes)."""
    ratios = []
    for g in groups:
        x = np.asarray(g, dtype=np.float64)
        if x.size >= 2 and np.all(np.isfinite(x)) and x.mean() != 0:
            ratios.append((float(x.var(ddof=1)) / float(x.mean()) ** 2, x.size - 1))
    if len(ratios) < 3:  # too few cells to say what is typical
        return None
    cv2 = np.array([c for c, _ in ratios])
    k = float(np.median([d for _, d in ratios]))
    return Prior(float(np.median(cv2)) / _chi2_median_ratio(k))


NOISIER_LEVEL = 0.99  # a cell's spread past this quantile of the typical one's is its own


def chi2_quantile(p: float, df: float) -> float:
    """The p-quantile of chi^2 with df degrees of freedom (Wilson-Hilferty)."""
    a = 2 / (9 * df)
    return df * (1 - a + normal_quantile(p) * math.sqrt(a)) ** 3


def moderated(x: np.ndarray, prior: Prior | None) -> tuple[float, float]:
    """(relative variance of one process's figure, its degrees of freedom)."""
    own = float(x.var(ddof=1)) / float(x.mean()) ** 2
    k = x.size - 1
    if prior is None or (prior.cv2 > 0 and k * own / prior.cv2 > chi2_quantile(NOISIER_LEVEL, k)):
        return own, float(k)
    df = x.size - 1 + prior.df
    return ((x.size - 1) * own + prior.df * prior.cv2) / df, df


def process_interval(values, confidence: float = 0.95, prior: Prior | None = None, rerun: bool = False) -> Interval:
    """Mean of per-process figures and its t interval over processes (None bounds for one).

    rerun: the interval for the figure a re-run with as many processes will report, not for the
    true mean: the re-run's own error adds to this run's, so it is sqrt(2) wider (a prediction
    interval for a mean of R new processes). A confidence interval of the mean covers a re-run's
    point only ~83-89% of the time even when it is exact.

    The machine's speed moves from round to round for every cell at once (measured here: a round's
    common effect had an sd of 2-10% in a run). A re-run, made at another time, meets other
    rounds; but each process of a cell ran in its own round, so that spread is already in the
    between-process variance, and a re-run's mean over its R rounds moves by sd/sqrt(R) of it. Eight
    runs of the default suite here (2026-12-07) bore that out: rounds with a median sd of 5%, whole
    runs moving with an sd of 2.2% (5%/sqrt(5)). An earlier version also added the round spread as
    if a whole run could move as far as one round (a drift one run cannot see): its intervals held
    a re-run's figure 98.5% of the time at 4.4x the median re-run move; without it, 94-95% at
    2.9-3.3x (a calibrated interval is about 2.9x)."""
    x = _values(values, "per-process figures")
    confidence = check_confidence(confidence)
    r = x.size
    if r < 2:
        return Interval(None, None, "one process: no between-process interval")
    m = float(x.mean())
    if m == 0:
        return Interval(m, m, "all processes measured zero")
    cv2, df = moderated(x, prior)
    var = cv2 * (2 if rerun else 1) / r
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(var) * abs(m)
    if prior is None:
        how = f"t over {r} processes ({r - 1} df)"
    elif df == r - 1:  # moderated() kept the cell's own spread: far past the run's typical one
        how = (f"t over {r} processes ({r - 1} df; its spread, far past the run's typical one, not moderated "
               f"toward it)")
    else:
        how = f"moderated t over {r} processes ({df:g} df: the run's typical spread worth {prior.df:g})"
    what = "; where a re-run with as many processes lands (its own error included)" if rerun else ""
    return Interval(m - half, m + half, f"{how}: between- and within-process variance{what}")


@dataclass(frozen=True)
class Split:
    """Variance of one figure between and within processes, relative to the figure (CV terms)."""

    between_cv: float  # sd of the process offsets / mean
    within_cv: float  # rms standard error of one process's figure / mean

    @property
    def between_share(self) -> float:
        total = self.between_cv ** 2 + self.within_cv ** 2
        return self.between_cv ** 2 / total if total > 0 else 0.0


def variance_split(values, within_se) -> Split | None:
    """The between/within split of per-process figures with their own standard errors."""
    x = _values(values, "per-process figures")
    se = _values(within_se, "standard errors")
    if x.size < 2 or se.size != x.size or x.mean() == 0:
        return None
    within = float(np.mean(se ** 2))
    between = max(0.0, float(x.var(ddof=1)) - within)
    m = abs(float(x.mean()))
    return Split(math.sqrt(between) / m, math.sqrt(within) / m)


@dataclass(frozen=True)
class LogRatio:
    """NEW / BASE as the ratio of geometric means over processes, with Welch's t on the logs."""

    ratio: float
    low: float
    high: float
    p_value: float
    df: float
    se_log: float

    def detectable(self, alpha: float, power: float) -> float:
        """The smallest relative change this comparison detects with `power` at two-sided `alpha`."""
        if self.se_log == 0.0:
            return 0.0
        k = t_quantile(1 - alpha / 2, self.df) + t_quantile(power, self.df)
        return math.expm1(k * self.se_log)


def log_ratio(base, new, confidence: float = 0.95, prior: Prior | None = None) -> LogRatio:
    """Welch's t on log figures (each side's variance moderated by `prior`, whose squared CV is
    the log figure's variance); each side needs at least 2 processes."""
    a = np.log(_values(base, "base figures"))
    b = np.log(_values(new, "new figures"))
    if a.size < 2 or b.size < 2:
        raise ValueError("a process-level ratio needs at least 2 processes on each side")
    confidence = check_confidence(confidence)

    def side(x: np.ndarray) -> tuple[float, float]:
        if prior is None:
            return float(x.var(ddof=1)), float(x.size - 1)
        df = x.size - 1 + prior.df
        return ((x.size - 1) * float(x.var(ddof=1)) + prior.df * prior.cv2) / df, df

    (va, dfa), (vb, dfb) = side(a), side(b)
    va, vb = va / a.size, vb / b.size
    diff = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        r = math.exp(diff)
        return LogRatio(r, r, r, 0.0 if diff != 0 else 1.0, dfa + dfb, 0.0)
    df = (va + vb) ** 2 / (va ** 2 / dfa + vb ** 2 / dfb) if va > 0 and vb > 0 else (dfa if va > 0 else dfb)
    half = t_quantile(0.5 + confidence / 2, df) * se
    return LogRatio(math.exp(diff), math.exp(diff - half), math.exp(diff + half),
                    t_two_sided_p(diff / se, df), float(df), se)


def holm(p_values, alpha: float) -> np.ndarray:
    """Which hypotheses Holm's step-down procedure rejects (family-wise error <= alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.size, dtype=bool)
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (p.size - rank):
            break
        reject[i] = True
    return reject


def benjamini_hochberg(p_values, alpha: float) -> np.ndarray:
    """Which hypotheses the BH step-up procedure rejects (false discovery rate <= alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.size, dtype=bool)
    if p.size == 0:
        return reject
    order = np.argsort(p, kind="stable")
    ok = p[order] <= alpha * np.arange(1, p.size + 1) / p.size
    if ok.any():
        reject[order[: int(np.nonzero(ok)[0].max()) + 1]] = True
    return reject
