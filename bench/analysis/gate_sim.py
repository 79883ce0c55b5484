"""The nightly gate on simulated nights: how often it cries wolf, and how fast it finds a step.

The noise is this machine's, as measured: each run's figure is the mean over its repetitions
(worker processes), and each process lands in a mode 25% slower with probability 1/3 (pyperf's
per-process means here: 19 vs 26 us), times 3% lognormal jitter. A night is `series` series of
`runs` runs each; the gate (bench.analysis.history) judges the latest run of every series at
once. An A/A night has no change: any alarm is false. A step night puts a `step` slowdown into
`stepped` of the series from the second-to-last run on; a stepped series is found when the gate
raises its alarm on the first or the second run after the step.

`resampled_false_alarms` makes A/A nights from a machine's own runs instead of this model: each
simulated run of a night is one of the measured runs, drawn with replacement, all series at once
(a slow run is slow for every cell, as a real night is), so the nights keep whatever the
machine's noise is, modes, tails and shifts of the whole machine included.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.analysis.history import GATE_ALPHA, SeriesReport, gate, latest_test

SLOW_MODE_SHARE = 1 / 3
SLOW_MODE = 0.25
JITTER = 0.03


@dataclass(frozen=True)
class GateSimulation:
    nights: int
    series: int
    runs: int
    processes: int
    false_alarm_nights: float  # share of A/A nights with any alarm
    step: float
    stepped: int
    found_within_2: float  # share of stepped series found on the first or second run after the step


def _throughputs(rng: np.random.Generator, shape: tuple[int, ...], processes: int) -> np.ndarray:
    slow = 1 + SLOW_MODE * (rng.random((*shape, processes)) < SLOW_MODE_SHARE)
    factor = slow * rng.lognormal(0.0, JITTER, (*shape, processes))
    return (1000.0 / factor).mean(axis=-1)


def _alarms(values: np.ndarray, threshold: float, alpha: float, higher_is_better: bool = True) -> np.ndarray:
    reports = []
    for row in values:
        tested = latest_test(row, higher_is_better)
        reports.append(SeriesReport("s", "m", "throughput" if higher_is_better else "p50", (), (), (), (), (), "",
                                    None if tested is None else tested[0], None if tested is None else tested[1]))
    return np.array([r.alarm for r in gate(reports, threshold, alpha)])


def simulate(nights: int = 400, series: int = 24, runs: int = 30, processes: int = 3, step: float = 0.15,
             stepped: int = 24, threshold: float = 0.05, alpha: float = GATE_ALPHA, seed: int = 0) -> GateSimulation:
    rng = np.random.default_rng(seed)
    false_nights = 0
    found = 0
    for _ in range(nights):
        aa = _throughputs(rng, (series, runs), processes)
        false_nights += bool(_alarms(aa, threshold, alpha).any())
        night = _throughputs(rng, (series, runs + 1), processes)
        night[:stepped, runs - 1:] /= 1 + step  # the step starts at the second-to-last of runs
        first = _alarms(night[:, :runs], threshold, alpha)[:stepped]
        second = _alarms(night, threshold, alpha)[:stepped]
        found += int((first | second).sum())
    return GateSimulation(nights, series, runs, processes, false_nights / nights, step, stepped,
                          found / (nights * stepped) if stepped else 0.0)


def modelled_false_alarms(nights: int, series: int, runs: int = 30, processes: int = 3, threshold: float = 0.05,
                          alpha: float = GATE_ALPHA, seed: int = 0) -> int:
    """A/A nights (of the model's noise above) on which the gate raised any alarm."""
    rng = np.random.default_rng(seed)
    return sum(bool(_alarms(_throughputs(rng, (series, runs), processes), threshold, alpha).any())
               for _ in range(nights))


def resampled_false_alarms(log_deviations: np.ndarray, nights: int, runs: int = 30, threshold: float = 0.05,
                           alpha: float = GATE_ALPHA, higher_is_better: bool = True, seed: int = 0) -> int:
    """A/A nights made from measured runs on which the gate raised any alarm.

    `log_deviations`: (measured runs, series), each series' log figure less its mean over the
    runs. A night is `runs` runs of every series, each run one measured row drawn with
    replacement."""
    dev = np.asarray(log_deviations, dtype=np.float64)
    if dev.ndim != 2 or dev.shape[0] < 2 or dev.shape[1] < 1:
        raise ValueError("resampled nights need at least 2 measured runs of at least 1 series")
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(nights):
        rows = rng.integers(0, dev.shape[0], runs)
        alarms += bool(_alarms(np.exp(dev[rows].T) * 1000.0, threshold, alpha, higher_is_better).any())
    return alarms
