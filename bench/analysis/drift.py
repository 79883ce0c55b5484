"""Drift alarms for a monitor: two-sided CUSUM (Page, 1954) on each window's figure, against a baseline.

Per figure (window p99, window throughput), on the log scale: x = log(value) - log(centre), in
units of the baseline windows' noise (`noise_unit`: a conservative spread, floored at MIN_NOISE so
a too-quiet baseline cannot make every wiggle an alarm, inflated by sqrt((1 + rho) / (1 - rho))
for the windows' lag-1 correlation rho: on a shared machine a slow spell spans several windows,
and the sums grow with the long-run variance). Two sums,
S+ = max(0, S+ + x/s - k) and S- = max(0, S- - x/s - k), with allowance k = 0.5 (tuned for a shift
of one noise unit) and threshold h = 12 (chosen by the simulation below). An alarm needs S >= h in the worse direction (p99 up,
throughput down) and the mean shift over the windows since that sum last left zero to be at
least MIN_CHANGE: a tiny drift that noise would carry is not news. An alarm is raised once; while
raised its sum is capped at h, and it clears when the sum returns to zero (the figure is back,
within about h / k windows), after which a new drift raises a new alarm.

The baseline: the first `baseline_windows` windows (default 60: five minutes of 5-s windows;
fewer make the noise estimate, and so the false-alarm rate, unreliable), or, with --baseline RUN, that
run's figure as the centre and the first windows' spread as the noise (a run file's interval is
not a window's noise). Windows with no completed request are skipped.

False alarms: `simulate_false_alarms` runs the detector on seeded A/A streams of AR(1) log-noise
and counts alarms per simulated hour. On this project's 2-core VM an A/A monitor's window p99
had a log-sd of 0.22 and a lag-1 correlation of 0.46 (docs/monitor.md): at that noise the two detectors
(a figure worse up, a figure worse down) raised 12 and 18 alarms in 100 simulated hours of 5-s
windows (seeds 11 and 0), 0.06 to 0.09 an hour each; at a 5% noise, none. Detection is the other
side: a 30% step in a 5%-noise stream is flagged within 2 windows (median; at most 8 over 20
seeds), a doubling at this machine's p99 noise within 10 (median); a 30% step at that noise takes
about 70 windows (median): window p99s here are too noisy for faster.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

K_ALLOWANCE = 0.5
H_THRESHOLD = 12.0
MIN_NOISE = 0.02  # log units: a 2% window-to-window noise at the least
MIN_CHANGE = 0.10  # an alarm needs the figure moved by 10% or more
MAD_TO_SD = 1.4826
DEFAULT_BASELINE_WINDOWS = 60
MAX_RHO = 0.9


def noise_unit(b: np.ndarray) -> tuple[float, float]:
    """(the sums' noise unit, the lag-1 correlation used) from baseline log values `b`.

    Conservative on purpose, since an underestimated noise is what makes a CUSUM cry wolf, yet
    robust: the MAD-based standard deviation (a step inside the baseline windows does not inflate
    it and blind the detector, as the plain standard deviation would), raised to its one-sided 90%
    upper bound (chi-square, Wilson-Hilferty), floored at MIN_NOISE; the lag-1 correlation corrected for
    its small-sample bias (+(1 + 4 rho) / n) and clipped to [0, MAX_RHO]; the unit is
    s sqrt((1 + rho) / (1 - rho)), the long-run standard deviation of an AR(1) stream."""
    n = int(b.size)
    med = float(np.median(b))
    s = MAD_TO_SD * float(np.median(np.abs(b - med)))
    k = n - 1
    chi2_10 = k * (1 - 2 / (9 * k) - 1.2815516 * math.sqrt(2 / (9 * k))) ** 3  # 10% quantile of chi2(k)
    s *= math.sqrt(k / max(chi2_10, 1e-9))
    d = b - b.mean()
    ss = float(np.dot(d, d))
    rho = float(np.dot(d[1:], d[:-1])) / ss if ss > 0 else 0.0
    rho = min(max(rho + (1 + 4 * rho) / n, 0.0), MAX_RHO)
    return max(s, MIN_NOISE) * math.sqrt((1 + rho) / (1 - rho)), rho


def describe(baseline_windows: int) -> str:
    return (f"two-sided CUSUM on log window figures (k = {K_ALLOWANCE:g}, h = {H_THRESHOLD:g} noise units; "
            f"an alarm also needs a shift of {MIN_CHANGE:.0%} or more); noise from the first {baseline_windows} windows")


@dataclass
class Drift:
    """One figure's detector. `update(value)` returns the alarm's text when this window raises one."""

    figure: str
    higher_is_worse: bool
    baseline_windows: int = DEFAULT_BASELINE_WINDOWS
    centre: float | None = None  # given (log of a baseline run's figure) or taken from the baseline windows
    k: float = K_ALLOWANCE
    h: float = H_THRESHOLD
    min_change: float = MIN_CHANGE
    _baseline: list[float] = field(default_factory=list)
    noise: float | None = None  # the sums' noise unit (log scale; noise_unit)
    rho: float = 0.0  # the baseline windows' lag-1 correlation, as noise_unit used it
    s_hi: float = 0.0
    s_lo: float = 0.0
    _run_hi: tuple[float, int] = (0.0, 0)  # (sum of x, windows) since S+ last left zero
    _run_lo: tuple[float, int] = (0.0, 0)
    active: bool = False

    @property
    def ready(self) -> bool:
        return self.noise is not None

    def update(self, value: float | None) -> tuple[float, str] | None:
        """(relative change, message) when this window raises an alarm; None otherwise."""
        if value is None or not value > 0 or not math.isfinite(value):
            return None
        lv = math.log(value)
        if self.noise is None:
            self._baseline.append(lv)
            if len(self._baseline) >= self.baseline_windows:
                b = np.asarray(self._baseline)
                med = float(np.median(b))
                self.noise, self.rho = noise_unit(b)
                if self.centre is None:
                    self.centre = med
            return None
        x = lv - self.centre
        z = x / self.noise
        self.s_hi = max(0.0, self.s_hi + z - self.k)
        self.s_lo = max(0.0, self.s_lo - z - self.k)
        self._run_hi = (self._run_hi[0] + x, self._run_hi[1] + 1) if self.s_hi > 0 else (0.0, 0)
        self._run_lo = (self._run_lo[0] + x, self._run_lo[1] + 1) if self.s_lo > 0 else (0.0, 0)
        if self.active:  # capped while raised, so that the figure's return clears it within h / k windows
            self.s_hi, self.s_lo = min(self.s_hi, self.h), min(self.s_lo, self.h)
        worse_sum, (total, count) = (self.s_hi, self._run_hi) if self.higher_is_worse else (self.s_lo, self._run_lo)
        if self.active and worse_sum == 0.0:
            self.active = False  # back in line: a later drift raises a new alarm
        if self.active or worse_sum < self.h or not count:
            return None
        shift = total / count
        change = math.exp(shift) - 1
        if abs(change) < self.min_change:
            return None
        self.active = True
        base = math.exp(self.centre)
        return change, (f"{self.figure} drifted {change:+.1%}: {base * math.exp(shift):,.4g} against the baseline's "
                        f"{base:,.4g} over the last {count} windows (CUSUM {worse_sum:.1f} >= {self.h:g}; "
                        f"noise {self.noise:.1%} a window)")


def simulate_false_alarms(noise: float, rho: float, hours: float, window_s: float, seed: int = 0,
                          baseline_windows: int = DEFAULT_BASELINE_WINDOWS) -> tuple[int, float]:
    """(alarms, simulated hours) of the drift detector on both figures over seeded A/A streams of
    AR(1) log-noise (sd `noise`, lag-1 correlation `rho`), restarted every hour with a fresh baseline."""
    rng = np.random.default_rng(seed)
    per_hour = int(round(3600 / window_s))
    alarms = 0
    innovation = noise * math.sqrt(max(1 - rho * rho, 1e-12))
    for _ in range(int(math.ceil(hours))):
        for worse_up in (True, False):
            d = Drift("sim", worse_up, baseline_windows)
            e = rng.normal(0, noise)
            for _ in range(per_hour + baseline_windows):
                e = rho * e + rng.normal(0, innovation)
                if d.update(math.exp(e)) is not None:
                    alarms += 1
    return alarms, float(math.ceil(hours))
