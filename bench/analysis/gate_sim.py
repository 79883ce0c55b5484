"""The nightly gate on simulated nights: how often it cries wolf, and how fast it finds a step.

The noise is this machine's, as measured: each run's figure is the mean over its repetitions
(worker processes), and each process lands in a mode 25% slower with probability 1/3 (pyperf's
per-process means here: 19 vs 26 us), times 3% lognormal jitter. A night is `series` series of
`runs` runs each; the gate (bench.analysis.history) judges the latest run of every series at
once. An A/A night has no change: any alarm is false. A step night puts a `step` slowdown into
`stepped` of the series from the second-to-last run on; a stepped series is found when the gate
raises its alarm on the first or the second run after the step.
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


def _alarms(values: np.ndarray, threshold: float, alpha: float) -> np.ndarray:
    reports = []
    for row in values:
        tested = latest_test(row, True)
        reports.append(SeriesReport("s", "m", "throughput", (), (), (), (), (), "",
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
