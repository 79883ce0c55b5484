"""Racing configurations to the best one, with the guarantee the answer states (bench tune).

Every candidate still in the race runs one worker process per round, all of a round's processes
in one shuffled order (bench.runner.schedule), so a candidate's figure in round r and the
leader's in round r saw the same minute of the machine. After each round from `min_rounds` on,
a look:

1. SLO. Where the settings limit a latency figure (p99 by default), a candidate whose figure's
   lower confidence bound is over the limit is dropped: it breaks the SLO with the stated
   confidence. One whose upper bound is over the limit is not yet shown to meet it: it races on,
   but it cannot lead while any candidate is shown to meet it, and it cannot be the pick.
2. Leader: the best objective (geometric mean over the candidate's processes) among the
   candidates shown to meet the SLO, or among all still racing when none is.
3. Elimination (racing, Maron & Moore 1994; a paired form of the t-test procedures of Kim &
   Nelson 2001). For each other candidate c, d_r = log(c_r / leader_r) over the rounds both
   measured (sign turned where lower is better, so d > 0 means c is better). c is eliminated when
   the upper bound of mean(d) is below 0: worse than the leader with the stated confidence.
   The bound is a one-sided t bound on a moderated spread (Smyth 2004, as bench compare moderates
   between-process spread): c's own variance of d and the one pooled over every candidate measured
   with the leader, the pool worth prior_df (4) degrees of freedom. The pool lets a look after two
   rounds eliminate a configuration twice as slow (its own one degree of freedom could not); the
   moderation keeps a candidate noisier than the pool from being judged on the pool's smaller
   spread (planted: a best candidate twice as noisy as the rest was eliminated in 4.5% of races,
   13.5% on the pool alone). Rounds pair only where both processes ran clean. Under an SLO, only
   a leader shown to meet it eliminates on the objective.
4. Multiplicity. A look's tests that can drop a candidate (the lower side of each racing
   candidate's interval against the leader, and one SLO test per racing candidate and limit) share
   alpha / max_looks by Bonferroni, and the looks share alpha by Bonferroni again: over the whole
   race, the chance that the best candidate (of those meeting the SLO) is dropped is at most alpha.
   The upper sides, which end the race on a tie within the indifference zone, have a budget of
   their own alike: "the pick is within delta of the best" holds at 1 - 2 alpha.

The race ends when one candidate is left; when every other racing candidate's paired interval
(at the corrected level) lies within the indifference zone, +-log(1 + delta), of the leader's (they
are tied: none can be told from the leader by more than delta); at max_rounds; or when the
caller's budget ends. The answer's guarantee follows from (4): with probability at least
`confidence`, the best candidate was never eliminated, so it is the pick or one of the pick's ties
(the candidates still racing), and when the race ended on the indifference zone, the pick is
within delta of the best.

Pure functions over observations: tested with planted streams (tests/test_race.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# Figures a process yields that a search may optimise: name -> (Observation field, higher is better).
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "throughput": ("throughput", True),
    "mean": ("mean_ms", False),
    "p50": ("p50_ms", False),
    "p90": ("p90_ms", False),
    "p95": ("p95_ms", False),
    "p99": ("p99_ms", False),
    "p999": ("p999_ms", False),
}
# SLO keys a search may limit (SloSpec's latency keys) -> the Observation field they limit.
SLO_FIGURES = {"p50_ms": "p50_ms", "p90_ms": "p90_ms", "p95_ms": "p95_ms", "p99_ms": "p99_ms",
               "p999_ms": "p999_ms", "mean_ms": "mean_ms"}

Status = Literal["racing", "eliminated", "slo", "failed"]


@dataclass(frozen=True)
class Observation:
    """One worker process's figures for one candidate in one round."""

    candidate: str
    round: int
    throughput: float | None = None  # samples/s
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    seconds: float = 0.0  # the process's wall time, start to result (the search's cost)
    interfered: bool = False  # other processes took the CPU meanwhile: kept, but not counted
    failed: str = ""  # why the process failed ("" when it ran)

    def figure(self, name: str) -> float | None:
        value = getattr(self, name)
        return value if value is not None and value > 0 and math.isfinite(value) else None


@dataclass(frozen=True)
class RaceSettings:
    objective: str = "throughput"
    confidence: float = 0.95
    indifference: float = 0.05  # delta: differences smaller than this are ties
    slo: tuple[tuple[str, float], ...] = ()  # (SLO key, limit in ms): ("p99_ms", 20.0)
    min_rounds: int = 2
    max_rounds: int = 10
    pool_all: bool = True  # pool the paired spread over every candidate measured, not only those racing
    prior_df: float = 4.0  # what the pooled spread is worth against a candidate's own (bench.stats.PRIOR_DF)
    grid: bool = False  # measure every candidate in every round to max_rounds; eliminate nothing

    @property
    def field(self) -> str:
        return OBJECTIVES[self.objective][0]

    @property
    def maximize(self) -> bool:
        return OBJECTIVES[self.objective][1]

    @property
    def looks(self) -> int:
        return max(1, self.max_rounds - self.min_rounds + 1)


@dataclass(frozen=True)
class Estimate:
    """A figure over a candidate's counted processes: geometric mean, t interval at `confidence`."""

    value: float
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Paired:
    """candidate / leader on the objective, paired by round: ratio (geometric mean over common rounds) and
    its interval at the race's corrected level; ratio > 1 is better for a maximised objective."""

    ratio: float
    low: float | None
    high: float | None
    rounds: int


@dataclass(frozen=True)
class Standing:
    candidate: str
    status: Status
    rounds: int  # processes counted
    objective: Estimate | None
    slo: tuple[tuple[str, Estimate], ...] = ()  # each limited figure's estimate
    meets_slo: bool | None = None  # True: shown to meet; False: shown to break; None: not yet known / no SLO
    vs_leader: Paired | None = None
    reason: str = ""  # why it left the race
    out_round: int | None = None  # the round after which it left


@dataclass(frozen=True)
class Look:
    round: int
    leader: str
    racing: int
    out: tuple[tuple[str, str], ...] = ()  # (candidate, reason) dropped at this look


@dataclass
class Race:
    """The race's state: observations in, standings and looks out. Replaying the same observations
    round by round gives the same looks (a resumed search continues where it stopped)."""

    settings: RaceSettings
    candidates: list[str] = field(default_factory=list)  # in the order they entered
    observations: dict[str, dict[int, Observation]] = field(default_factory=dict)
    out: dict[str, tuple[Status, str, int]] = field(default_factory=dict)  # candidate -> (status, reason, round)
    at_exit: dict[str, Paired] = field(default_factory=dict)  # an eliminated candidate's ratio to the leader then
    looks: list[Look] = field(default_factory=list)
    end: str = ""  # why the race ended ("" while it runs)
    more_coming: bool = False  # candidates may still enter (proposals): only max_rounds ends the race

    def enter(self, candidate: str) -> None:
        if candidate not in self.observations:
            self.candidates.append(candidate)
            self.observations[candidate] = {}

    def observe(self, obs: Observation) -> None:
        self.enter(obs.candidate)
        self.observations[obs.candidate][obs.round] = obs
        if obs.failed and obs.candidate not in self.out:
            self.out[obs.candidate] = ("failed", obs.failed, obs.round)

    @property
    def racing(self) -> list[str]:
        return [c for c in self.candidates if c not in self.out]

    def counted(self, candidate: str, name: str) -> dict[int, float]:
        """round -> the figure, over the candidate's processes that ran clean; where fewer than
        min_rounds ran clean (a machine busy throughout), over all that ran, as a run's cell keeps
        its interfered repetitions when too few clean ones remain."""
        ran = {r: (v, o.interfered) for r, o in self.observations[candidate].items()
               if not o.failed and (v := o.figure(name)) is not None}
        clean = {r: v for r, (v, bad) in ran.items() if not bad}
        return clean if len(clean) >= self.settings.min_rounds else {r: v for r, (v, _) in ran.items()}

    # -- figures -------------------------------------------------------------------------------

    def estimate(self, candidate: str, name: str) -> Estimate | None:
        from bench.stats import t_quantile

        values = np.array(list(self.counted(candidate, name).values()), dtype=float)
        if values.size == 0:
            return None
        logs = np.log(values)
        m = float(logs.mean())
        if values.size < 2:
            return Estimate(math.exp(m), None, None, 1)
        half = t_quantile(0.5 + self.settings.confidence / 2, values.size - 1) * float(logs.std(ddof=1)) / math.sqrt(values.size)
        return Estimate(math.exp(m), math.exp(m - half), math.exp(m + half), int(values.size))

    def _alpha_each(self, tests: int) -> float:
        return (1.0 - self.settings.confidence) / self.settings.looks / max(1, tests)

    def _tests(self, racing: int) -> int:
        """A look's tests that can drop a candidate: the lower side of each racing candidate's paired
        interval against the leader, and one per racing candidate and SLO limit. (The upper sides,
        which show a tie within the indifference zone, get a budget of their own: the claim that
        the pick is within delta of the best holds at 1 - 2 alpha, as the answer says.)"""
        return max(1, (racing - 1) + len(self.settings.slo) * racing)

    def _diffs(self, candidate: str, leader: str) -> np.ndarray:
        """Per common round, log(candidate / leader), signed so that > 0 is better: over the rounds
        both ran clean, or (fewer than min_rounds such rounds: a machine busy throughout) over every
        round both ran, interfered or not, so that neither side alone carries the interference."""
        name = self.settings.field
        ran: dict[int, tuple[float, float, bool]] = {}
        obs_b = self.observations[leader]
        for r, o in self.observations[candidate].items():
            p = obs_b.get(r)
            if p is None or o.failed or p.failed:
                continue
            x, y = o.figure(name), p.figure(name)
            if x is not None and y is not None:
                ran[r] = (x, y, o.interfered or p.interfered)
        clean = {r: v for r, v in ran.items() if not v[2]}
        use = clean if len(clean) >= self.settings.min_rounds else ran
        sign = 1.0 if self.settings.maximize else -1.0
        return np.array([sign * math.log(use[r][0] / use[r][1]) for r in sorted(use)], dtype=float)

    @staticmethod
    def _pooled(groups: list[np.ndarray]) -> tuple[float | None, int]:
        """Pooled standard deviation of several groups about their own means, and its df."""
        ss, df = 0.0, 0
        for g in groups:
            if g.size >= 2:
                ss += float(((g - g.mean()) ** 2).sum())
                df += int(g.size - 1)
        return (math.sqrt(ss / df), df) if df > 0 else (None, 0)

    def _pool(self, lead: str) -> tuple[float | None, int]:
        """The spread of paired log ratios against the leader, pooled over every candidate measured
        with it (those that left too: their rounds measured the same machine), and its df. Late in a
        race only a few candidates race; their own few rounds alone would give a t quantile of 4 or
        more where the pool's df gives 3."""
        if not self.settings.pool_all:
            return self._pooled([self._diffs(c, lead) for c in self.racing if c != lead])
        return self._pooled([self._diffs(c, lead) for c in self.candidates
                             if c != lead and self.out.get(c, ("",))[0] != "failed"])

    def _bound(self, values: np.ndarray, pooled: float | None, df: int, alpha: float) -> tuple[float, float] | None:
        """(mean, one-sided half width at alpha); None when no spread is known.

        The spread is moderated (Smyth 2004, as bench compare moderates each side's spread): the
        candidate's own variance and the pooled one, the pool worth `prior_df` degrees of freedom,
        on df = own df + prior_df. A candidate noisier than the pool is judged on its own spread as
        its rounds accumulate; one whose own two rounds happen to agree is not judged on that alone."""
        from bench.stats import t_quantile

        n = values.size
        if n == 0:
            return None
        d0 = min(float(df), self.settings.prior_df) if pooled is not None else 0.0
        own_df = n - 1
        if own_df + d0 < 1:
            return None
        own_ss = float(((values - values.mean()) ** 2).sum()) if n >= 2 else 0.0
        var = (d0 * (pooled or 0.0) ** 2 + own_ss) / (d0 + own_df)
        return float(values.mean()), t_quantile(1 - alpha, d0 + own_df) * math.sqrt(var / n)

    def _slo_state(self, candidate: str, pooled: dict[str, tuple[float | None, int]], alpha: float) -> bool | None:
        """True: every limited figure's upper bound is under its limit; False: one's lower bound is
        over it; None: not known yet (or no SLO)."""
        if not self.settings.slo:
            return None
        verdicts = []
        for key, limit in self.settings.slo:
            name = SLO_FIGURES[key]
            logs = np.log(np.array(list(self.counted(candidate, name).values()), dtype=float))
            b = self._bound(logs, *pooled[name], alpha) if logs.size else None
            if b is None:
                verdicts.append(None)
                continue
            m, half = b
            if m - half > math.log(limit):
                return False
            verdicts.append(True if m + half <= math.log(limit) else None)
        return True if all(v is True for v in verdicts) else None

    def _slo_pool(self, cands: list[str]) -> dict[str, tuple[float | None, int]]:
        out = {}
        for key, _ in self.settings.slo:
            name = SLO_FIGURES[key]
            out[name] = self._pooled([np.log(np.array(list(self.counted(c, name).values()), dtype=float))
                                      for c in cands])
        return out

    def leader(self) -> str | None:
        """The best racing candidate on its objective estimate, among those shown to meet the SLO
        when any is (ties in the estimate go to the one that entered first)."""
        racing = [c for c in self.racing if self.estimate(c, self.settings.field) is not None]
        if not racing:
            return None
        alpha = self._alpha_each(self._tests(len(racing)))
        pool = self._slo_pool(racing)
        meeting = [c for c in racing if self._slo_state(c, pool, alpha) is True]
        pool_of = meeting or racing
        sign = 1.0 if self.settings.maximize else -1.0
        return max(pool_of, key=lambda c: (sign * math.log(self.estimate(c, self.settings.field).value),
                                           -self.candidates.index(c)))

    # -- a look --------------------------------------------------------------------------------

    def look(self, round_index: int) -> Look | None:
        """Decide after round `round_index` (0-based): drop what the evidence allows. None before min_rounds."""
        s = self.settings
        if self.end:
            return None
        if s.grid:  # measured, never raced
            if round_index + 1 >= s.max_rounds:
                self.end = "max rounds"
            return None
        if round_index + 1 < s.min_rounds:
            return None
        racing = self.racing
        if not racing:
            return None
        alpha = self._alpha_each(self._tests(len(racing)))
        dropped: list[tuple[str, str]] = []
        if s.slo:
            pool = self._slo_pool(racing)
            for c in racing:
                if self._slo_state(c, pool, alpha) is False:
                    key, limit = next((k, v) for k, v in s.slo
                                      if self._breaks(c, k, v, pool, alpha))
                    est = self.estimate(c, SLO_FIGURES[key])
                    reason = (f"breaks the SLO: {key.removesuffix('_ms')} {est.value:.3g} ms, over {limit:g} ms "
                              "(its lower bound, at the race's corrected level, is over the limit)")
                    self.out[c] = ("slo", reason, round_index)
                    dropped.append((c, reason))
        lead = self.leader()
        if lead is None:
            look = Look(round_index, "", 0, tuple(dropped))
            self.looks.append(look)
            if not self.racing and not self.more_coming:
                self.end = "none left"
            elif round_index + 1 >= s.max_rounds:
                self.end = "max rounds"
            return look
        others = [c for c in self.racing if c != lead]
        # Under an SLO, a candidate is shown worse only against a leader shown to meet it: one that
        # may break the SLO must not eliminate the best of those that meet it.
        if s.slo and self._slo_state(lead, self._slo_pool(self.racing), alpha) is not True:
            others = []
        diffs = {c: self._diffs(c, lead) for c in others}
        pooled, df = self._pool(lead)
        for c in others:
            b = self._bound(diffs[c], pooled, df, alpha)
            if b is None:
                continue
            m, half = b
            if m + half < 0:
                sign = 1.0 if s.maximize else -1.0
                lo, hi = sorted((math.exp(sign * (m - half)), math.exp(sign * (m + half))))
                self.at_exit[c] = Paired(math.exp(sign * m), lo, hi, int(diffs[c].size))
                worse = -math.expm1(m) if s.maximize else math.expm1(-m)
                reason = (f"{worse:.1%} worse than {lead} on {s.objective} (paired over {diffs[c].size} rounds; "
                          f"its best case still worse)")
                self.out[c] = ("eliminated", reason, round_index)
                dropped.append((c, reason))
        look = Look(round_index, lead, len(self.racing), tuple(dropped))
        self.looks.append(look)
        self._maybe_end(round_index, lead, alpha)
        return look

    def _breaks(self, c: str, key: str, limit: float, pool: dict, alpha: float) -> bool:
        name = SLO_FIGURES[key]
        logs = np.log(np.array(list(self.counted(c, name).values()), dtype=float))
        b = self._bound(logs, *pool[name], alpha) if logs.size else None
        return b is not None and b[0] - b[1] > math.log(limit)

    def recheck_end(self) -> None:
        """After the last proposal entered: end the race if the last look allows it now."""
        if self.looks and not self.end:
            last = self.looks[-1]
            racing = self.racing
            if last.leader:
                self._maybe_end(last.round, last.leader, self._alpha_each(self._tests(len(racing))))

    def _maybe_end(self, round_index: int, lead: str, alpha: float) -> None:
        s = self.settings
        racing = self.racing
        if self.more_coming:
            if round_index + 1 >= s.max_rounds:
                self.end = "max rounds"
            return
        if len(racing) <= 1:
            self.end = "one left" if racing else "none left"
            return
        band = math.log1p(s.indifference)
        diffs = {c: self._diffs(c, lead) for c in racing if c != lead}
        pooled, df = self._pool(lead)
        within = True
        for c, d in diffs.items():
            b = self._bound(d, pooled, df, alpha)
            if b is None or b[0] - b[1] < -band or b[0] + b[1] > band:
                within = False
                break
        if within and (not s.slo or self._slo_state(lead, self._slo_pool(racing), alpha) is True):
            self.end = "indifference"
        elif round_index + 1 >= s.max_rounds:
            self.end = "max rounds"

    # -- the answer ----------------------------------------------------------------------------

    def standings(self, lead: str | None = None) -> list[Standing]:
        """Each candidate's state, its paired ratio against `lead` (default: the leader now)."""
        s = self.settings
        lead = lead or self.leader()
        racing = self.racing
        alpha = self._alpha_each(self._tests(len(racing)))
        pool = self._slo_pool(racing or self.candidates)
        diffs = {c: self._diffs(c, lead) for c in self.candidates if lead and c != lead}
        pooled, df = self._pool(lead) if lead else (None, 0)
        out = []
        for c in self.candidates:
            status, reason, at = self.out.get(c, ("racing", "", None))
            paired = self.at_exit.get(c) if status == "eliminated" else None
            if paired is None and c in diffs and diffs[c].size:
                m = float(diffs[c].mean())
                b = self._bound(diffs[c], pooled, df, alpha)
                sign = 1.0 if s.maximize else -1.0
                lo, hi = (None, None) if b is None else (math.exp(sign * (m - b[1])), math.exp(sign * (m + b[1])))
                if lo is not None and lo > hi:
                    lo, hi = hi, lo
                paired = Paired(math.exp(sign * m), lo, hi, int(diffs[c].size))
            slo = tuple((k, e) for k, _ in s.slo if (e := self.estimate(c, SLO_FIGURES[k])) is not None)
            out.append(Standing(c, status, len(self.counted(c, s.field)), self.estimate(c, s.field), slo,
                                self._slo_state(c, pool, alpha) if status != "slo" else False, paired, reason, at))
        return out


def replay(settings: RaceSettings, observations: list[Observation], entered: list[str]) -> Race:
    """The race as the observations left it: looked at after every complete round (each round in
    which every candidate racing at its start ran), as the live search did."""
    race = Race(settings)
    for c in entered:
        race.enter(c)
    by_round: dict[int, list[Observation]] = {}
    for o in observations:
        by_round.setdefault(o.round, []).append(o)
    for r in sorted(by_round):
        racing = set(race.racing)
        for o in by_round[r]:
            race.observe(o)
        if racing <= {o.candidate for o in by_round[r]}:
            race.look(r)
    return race


def paired_against(race: Race, candidate: str, base: str) -> Paired | None:
    """candidate / base on the objective over their common clean rounds, t interval at the race's
    (uncorrected) confidence: the confirmation's ratio."""
    from bench.stats import t_quantile

    d = race._diffs(candidate, base)
    if d.size < 2:
        return None
    sign = 1.0 if race.settings.maximize else -1.0
    m = float(d.mean())
    half = t_quantile(0.5 + race.settings.confidence / 2, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    lo, hi = sorted((math.exp(sign * (m - half)), math.exp(sign * (m + half))))
    return Paired(math.exp(sign * m), lo, hi, int(d.size))


__all__ = ["OBJECTIVES", "SLO_FIGURES", "Estimate", "Look", "Observation", "Paired", "Race", "RaceSettings",
           "Standing", "paired_against", "replay"]
