"""The search: candidates raced round by round through the suite runner, the journal that lets an
interrupted search continue, and the answer with its guarantee and its cost.

The runner (bench.runner.suite.run_suite) does what it does for any suite: each candidate is a
cell (a target with its knobs set, at a batch size), each round runs one worker process per
racing candidate in a seeded shuffled order, on this machine or a Ray cluster. The search only
decides who runs in the next round (a RoundPolicy): bench.analysis.race says who is out.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from bench.analysis.race import OBJECTIVES, Observation, Race, RaceSettings, paired_against
from bench.config.records import SuiteSpec
from bench.errors import ConfigError
from bench.results.tune import (TUNE_SCHEMA_VERSION, Confirmation, Cost, Figure, LookRecord, Ratio, TuneAnswer,
                                TunedCandidate)
from bench.runner.assemble import RepResult
from bench.runner.plan import PlannedCell
from bench.tune.space import Candidate, TuneSpec

JOURNAL = "tune.jsonl"
ANSWER = "tune.json"


def settings_of(spec: TuneSpec, grid: bool = False) -> RaceSettings:
    """grid: every candidate measured max_rounds times, nothing eliminated (the ground truth)."""
    return RaceSettings(spec.objective, spec.confidence, spec.indifference, spec.slo, spec.min_rounds, spec.max_rounds,
                        grid=grid)


def candidate_suite(suite: SuiteSpec, spec: TuneSpec) -> SuiteSpec:
    """The suite the runner plans: one target per distinct candidate target, one benchmark per
    workload setting (the tuned benchmark itself where the space sets none) at the candidates' batch
    sizes and the chosen scenario. Cells that are no candidate are planned but never wanted, so they
    never run and never reach run.json."""
    import hashlib

    targets = {c.target_name: c.target for c in spec.candidates}
    fp32 = [c.target_name for c in spec.candidates if c.target.precision == "fp32"]
    reference = spec.default.target_name if spec.default.target.precision == "fp32" else (fp32[0] if fp32 else
                                                                                              spec.default.target_name)
    names = tuple(dict.fromkeys([reference] + [c.target_name for c in spec.candidates]))
    benches = []
    for bench_name in dict.fromkeys(c.bench_name for c in spec.candidates):
        mine = [c for c in spec.candidates if c.bench_name == bench_name]
        batches = tuple(sorted({c.batch_size for c in mine}))
        benches.append(replace(spec.benchmark, name=bench_name, targets=names, batch_sizes=batches,
                               scenarios=(spec.scenario,), reference=reference, tables=mine[0].tables))
    digest = hashlib.sha256((suite.sha256 + json.dumps(spec.key(), sort_keys=True, default=str)).encode()).hexdigest()
    return SuiteSpec(name=f"tune-{spec.benchmark.name}", path=suite.path, sha256=digest, targets=targets,
                     benchmarks=tuple(benches))


# -- the journal --------------------------------------------------------------------------------

class Journal:
    """tune.jsonl: a header (what the search is), then one line per event in the order it happened:
    a candidate entering the race, a process's observation, a look after a round, the end."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path = path
        self.key = key
        self.events: list[dict[str, Any]] = []
        if path.exists():
            lines = _journal_lines(path)
            if not lines or lines[0].get("tune") != json.loads(json.dumps(key, default=str)):
                raise ConfigError(f"{path}: holds a search with other settings (space, objective, SLO, seed or "
                                  "rounds); pass another --out to start a new one, or the same settings to continue it")
            self.events = lines[1:]
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"tune": key}, default=str) + "\n")

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        with self.path.open("a") as fh:  # one line each, flushed: a kill loses at most the line being written
            fh.write(json.dumps(event, allow_nan=False) + "\n")
            fh.flush()


def _journal_lines(path: Path) -> list[dict[str, Any]]:
    """The journal's events; a last line cut short (the search killed mid-write) is dropped, and
    the file rewritten without it; damage anywhere else is bad input."""
    raw = [x for x in path.read_text().splitlines() if x.strip()]
    out = []
    for i, line in enumerate(raw):
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
            out.append(event)
        except ValueError:
            if i == len(raw) - 1 and i > 0:
                path.write_text("".join(x + "\n" for x in raw[:-1]))
                break
            raise ConfigError(f"{path}: line {i + 1} is not a journal event; remove the directory to start over") from None
    return out


def observation_of(cid: str, round_index: int, rep: RepResult, seconds: float, limit: float) -> Observation:
    if not rep.ok:
        return Observation(cid, round_index, seconds=seconds, failed=f"{rep.outcome.kind}: {rep.outcome.reason}"[:300])
    m = rep.figures.metrics
    lat = m.latency_ms

    def v(e: Any) -> float | None:
        value = e if isinstance(e, (int, float)) or e is None else e.value
        return value if value is not None and math.isfinite(value) and value > 0 else None

    return Observation(cid, round_index, v(m.throughput.value), v(lat.mean), v(lat.p50), v(lat.p90), v(lat.p95),
                       v(lat.p99), v(lat.p999), seconds, rep.interfered(limit))


# -- the policy ---------------------------------------------------------------------------------

def _pick_of(race: Race) -> str | None:
    """The race's leader, where an SLO is set only if it is shown to meet it."""
    lead = race.leader()
    if lead is None or not race.settings.slo:
        return lead
    st = next(s for s in race.standings() if s.candidate == lead)
    return lead if st.meets_slo is True else None


def confirmation_rounds(race: Race, pick: str, default: str, first: int | None, clean: bool = False) -> list[int]:
    """The rounds from `first` on in which the pick and the default both ran (clean: and neither
    was interfered with)."""
    if first is None:
        return []
    name = race.settings.field
    a = {r: o for r, o in race.observations.get(pick, {}).items() if r >= first}
    b = {r: o for r, o in race.observations.get(default, {}).items() if r >= first}
    return sorted(r for r in a.keys() & b.keys() if not (a[r].failed or b[r].failed)
                  and not (clean and (a[r].interfered or b[r].interfered))
                  and a[r].figure(name) is not None and b[r].figure(name) is not None)


def _cell(planned: PlannedCell) -> tuple[str, str, int]:
    return planned.key.benchmark, planned.key.target, planned.key.batch_size


@dataclass
class TunePolicy:
    """Decides each round's candidates for the runner (bench.runner.suite.RoundPolicy)."""

    spec: TuneSpec
    journal: Journal
    grid: bool = False
    proposer: Any = None  # bench.tune.propose.Proposer for spaces too large to race whole
    race: Race = field(init=False)
    phase: str = field(init=False, default="race")  # race | confirm | done
    offset: int = field(init=False, default=0)  # this session's round 0 is the search's round `offset`
    by_cell: dict[tuple[str, str, int], str] = field(init=False, default_factory=dict)  # (benchmark, target, batch)
    by_id: dict[str, Candidate] = field(init=False, default_factory=dict)
    spent_s: float = field(init=False, default=0.0)
    frozen_pick: str | None = field(init=False, default=None)  # the race's answer, fixed when it ended
    confirm_from: int | None = field(init=False, default=None)  # the confirmation's first round (fresh rounds)
    session_round: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.race = Race(settings_of(self.spec, self.grid))
        self.race.more_coming = self.proposer is not None
        for c in self.spec.candidates:
            self.by_cell[(c.bench_name, c.target_name, c.batch_size)] = c.id
            self.by_id[c.id] = c
        last = -1
        for e in self.journal.events:  # replay: the same race, looked at where it was
            if "enter" in e:
                self.race.enter(e["enter"])
                if self.proposer is not None:
                    self.proposer.entered(e["enter"])
            elif "obs" in e:
                o = Observation(**e["obs"])
                self.race.observe(o)
                self.spent_s += o.seconds
                last = max(last, o.round)
            elif "look" in e:
                self.race.look(e["look"])
                self._tell()
            elif "end" in e:
                self.race.end = self.race.end or e["end"]
            elif "phase" in e:
                self.phase = e["phase"]
            elif "pick" in e:
                self.frozen_pick, self.confirm_from = e["pick"], e["confirm_from"]
            elif "exhausted" in e and self.proposer is not None:
                self.proposer.exhausted = True
                self.race.more_coming = False
                self.race.recheck_end()
        if not self.race.candidates:
            first = [self.spec.default.id] + [c.id for c in self.spec.candidates if c.id != self.spec.default.id]
            if self.proposer is not None:
                first = [self.spec.default.id] + self.proposer.propose(self.spec.width - 1, exclude={self.spec.default.id})
            for cid in first:
                self._enter(cid)
        # Resume after the last round looked at; a round cut short is completed first.
        looked = {e["look"] for e in self.journal.events if "look" in e}
        self.offset = self._next_round(last, looked)
        if last >= 0 and self.offset == last + 1 and last not in looked and self.phase == "race":
            self.offset = last  # the round ran whole, but the search stopped before its look
            self.round_done(0)
            self.offset = last + 1

    def _enter(self, cid: str) -> None:
        self.race.enter(cid)
        self.journal.add({"enter": cid})
        if self.proposer is not None:
            self.proposer.entered(cid)

    def _next_round(self, last: int, looked: set[int]) -> int:
        if last < 0:
            return 0
        if self.phase == "race" and last in looked:  # closed: a candidate entered after it runs the next one
            return last + 1
        if any(last not in self.race.observations.get(c, {}) for c in self.active()):
            return last
        return last + 1

    def active(self) -> list[str]:
        if self.phase == "race":
            return self.race.racing
        if self.phase == "confirm" and self.frozen_pick is not None:
            return list(dict.fromkeys([self.frozen_pick, self.spec.default.id]))
        return []

    # RoundPolicy
    def wants(self, planned: PlannedCell, reps: list[RepResult], round_index: int) -> bool:
        self.session_round = round_index
        cid = self.by_cell.get(_cell(planned))
        if cid is None or self.phase == "done":
            return False
        return cid in self.active() and (self.offset + round_index) not in self.race.observations.get(cid, {})

    def refused(self, planned: PlannedCell, reason: str) -> None:
        cid = self.by_cell.get(_cell(planned))
        if cid is not None:
            o = Observation(cid, self.offset + self.session_round, failed=f"not run: {reason}"[:300])
            self.race.observe(o)
            self.journal.add({"obs": asdict(o)})

    def unit_done(self, planned: PlannedCell, rep: RepResult, round_index: int, seconds: float) -> None:
        cid = self.by_cell[_cell(planned)]
        o = observation_of(cid, self.offset + round_index, rep, seconds, self.spec.benchmark.stop.max_interference)
        self.race.observe(o)
        self.spent_s += seconds
        self.journal.add({"obs": asdict(o)})

    def round_done(self, round_index: int) -> None:
        g = self.offset + round_index
        if self.phase == "race":
            self.race.look(g)
            self.journal.add({"look": g})
            self._tell()
            if self.proposer is not None and not self.race.end:
                self._refill()
            if not self.race.end and self._over_budget():
                self._end("budget")
            if self.race.end:
                self._to_confirm()
        elif self.phase == "confirm":
            if self._confirmed() or self._over_budget():
                self._set_phase("done")

    def _tell(self) -> None:
        """The proposer learns each tried candidate's objective so far; one shown to break the SLO
        is told a value worse than any measured, so that TPE steers away from its region."""
        if self.proposer is None:
            return
        est = {c: e.value for c in self.race.candidates
               if (e := self.race.estimate(c, self.race.settings.field)) is not None}
        if not est:
            return
        worst = min(est.values()) / 2 if self.race.settings.maximize else max(est.values()) * 2
        for c, v in est.items():
            self.proposer.tell(c, worst if self.race.out.get(c, ("",))[0] == "slo" else v)

    def _refill(self) -> None:
        want = self.spec.width - len(self.race.racing)
        new = self.proposer.propose(want, exclude=set(self.race.candidates)) if want > 0 else []
        for cid in new:
            self._enter(cid)
        if not new and want > 0:
            self.proposer.exhausted = True
        if self.proposer.exhausted and self.race.more_coming:
            self.journal.add({"exhausted": True})
            self.race.more_coming = False
            self.race.recheck_end()

    def _end(self, why: str) -> None:
        self.race.end = self.race.end or why
        self.journal.add({"end": why})

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.journal.add({"phase": phase})

    def _confirmed(self) -> bool:
        """Nothing (left) to confirm: no pick, the pick is the default, the default cannot run, or
        the two have run confirm_rounds fresh rounds together since the race ended (interfered or
        not: the confirmation is as long as it says, never open-ended)."""
        pick, default = self.frozen_pick, self.spec.default.id
        if pick is None or pick == default or self.race.out.get(default, ("",))[0] == "failed":
            return True
        if len(confirmation_rounds(self.race, pick, default, self.confirm_from)) >= self.spec.confirm_rounds:
            return True
        # Processes that keep failing never make a round: the confirmation stops after twice its rounds.
        tried = {r for c in (pick, default) for r in self.race.observations.get(c, {}) if r >= self.confirm_from}
        return len(tried) >= 2 * self.spec.confirm_rounds

    def _to_confirm(self) -> None:
        """The race ended: its answer is fixed (journaled), and the confirmation runs on fresh rounds,
        so that the rounds that chose the pick do not also judge it (the winner's curse)."""
        if self.grid:
            self._set_phase("done")
            return
        last = max((r for c in self.race.candidates for r in self.race.observations[c]), default=-1)
        self.frozen_pick, self.confirm_from = _pick_of(self.race), last + 1
        self.journal.add({"pick": self.frozen_pick, "confirm_from": self.confirm_from})
        self._set_phase("done" if self._confirmed() or self._over_budget() else "confirm")

    def round_cost_s(self) -> float:
        """What the next round should take: each active candidate's mean process time so far (the
        mean over all candidates for one not yet measured)."""
        per = {c: [o.seconds for o in self.race.observations[c].values()] for c in self.race.candidates}
        known = [s for v in per.values() for s in v]
        mean_all = sum(known) / len(known) if known else 0.0
        return sum((sum(per.get(c, [])) / len(per[c])) if per.get(c) else mean_all for c in self.active())

    def _over_budget(self) -> bool:
        return self.spent_s + self.round_cost_s() > self.spec.budget_s


# -- the answer ---------------------------------------------------------------------------------

def _figure(e: Any) -> Figure | None:
    return None if e is None else Figure(e.value, e.low, e.high, e.n)


def _ratio(p: Any) -> Ratio | None:
    return None if p is None else Ratio(p.ratio, p.low, p.high, p.rounds)


def _pareto(items: list[tuple[str, float, float]]) -> set[str]:
    """Ids not dominated on (throughput up, p99 down)."""
    out = set()
    for cid, t, p in items:
        if not any((t2 >= t and p2 <= p and (t2 > t or p2 < p)) for c2, t2, p2 in items if c2 != cid):
            out.add(cid)
    return out


def confirmation(race: Race, spec: TuneSpec, pick: str | None, first: int | None) -> Confirmation | None:
    """The pick against the default on the fresh rounds after the race (from `first`), paired by
    round, with compare's decision rule (bench.analysis.compare.decide: a t test on the per-round
    log ratios, TOST at the indifference zone for "unchanged")."""
    from bench import stats
    from bench.analysis.compare import decide

    if pick is None:
        return None
    default = spec.default.id
    if pick == default:
        return Confirmation(default, pick, "same", None, None, "the default configuration is the pick: nothing to "
                                                                "confirm")
    if race.out.get(default, ("",))[0] == "failed":
        return Confirmation(default, pick, "inconclusive", None, None,
                            f"the default could not run ({race.out[default][1]})")
    # The clean rounds, unless fewer than 2 ran clean (a machine busy throughout): then all of them.
    common = confirmation_rounds(race, pick, default, first, clean=True)
    interfered = len(common) < 2
    if interfered:
        common = confirmation_rounds(race, pick, default, first)
    if len(common) < 2:
        return Confirmation(default, pick, "inconclusive", None, None,
                            f"{len(common)} fresh round(s) measured both (the budget or an interrupt ended it first)")
    name = race.settings.field
    a, b = race.observations[pick], race.observations[default]
    logs = [math.log(a[r].figure(name) / b[r].figure(name)) for r in common]
    n = len(logs)
    m = sum(logs) / n
    se = math.sqrt(sum((x - m) ** 2 for x in logs) / (n - 1)) / math.sqrt(n)
    half = stats.t_quantile(0.5 + spec.confidence / 2, n - 1) * se
    pval = stats.t_two_sided_p(abs(m) / se, n - 1) if se > 0 else (0.0 if m != 0 else 1.0)
    lr = stats.LogRatio(math.exp(m), math.exp(m - half), math.exp(m + half), pval, n - 1, se)
    v = decide(spec.objective, spec.objective, lr, race.settings.maximize, spec.indifference, 1 - spec.confidence)
    # compare's words are about time: for a throughput objective "faster" is more throughput.
    verdict = {"slower": "worse", "faster": "better"}.get(v.answer, v.answer)
    text = (f"{pick} / {default} on {spec.objective}: {lr.ratio:.3f} [{lr.low:.3f}, {lr.high:.3f}] paired over {n} "
            f"fresh rounds after the race{' (other processes took the CPU in them)' if interfered else ''}; "
            f"compare's verdict at ±{spec.indifference:.0%}: {v.answer}")
    return Confirmation(default, pick, verdict, Ratio(lr.ratio, lr.low, lr.high, n), pval, text)


def guarantee_text(race: Race, spec: TuneSpec, pick: str | None, ties: list[str], tried: int, mode: str) -> str:
    s = race.settings
    conf = f"{s.confidence:.0%}"
    scope = (f"of the {tried} configurations tried (proposed by TPE from a space of {spec.grid_size}; the rest were "
             "never measured, and no guarantee covers them)" if mode == "proposed" else
             f"of the {tried} configurations in the space")
    if pick is None:
        broke = sum(1 for st, _, _ in race.out.values() if st == "slo")
        undecided = len(race.racing)
        if s.slo and undecided:
            return (f"No configuration was shown to meet the SLO before the race ended ({race.end or 'interrupted'}): "
                    f"{broke} shown to break it, {undecided} not shown either way.")
        return "No configuration is left to pick: every candidate failed or broke the SLO."
    if mode == "grid":
        return (f"Every configuration measured in every round ({s.max_rounds}); nothing eliminated. The pick has the "
                f"best {s.objective} estimate; candidates whose paired interval against it includes 1 are its ties.")
    base = (f"With probability at least {conf} (Bonferroni over every test of every look), the best {s.objective} "
            f"{scope} was never eliminated: it is {pick}" + (f" or one of its {len(ties)} ties" if ties else "") + ".")
    if race.end == "indifference":
        base += (f" The race ended because every tie's paired interval lies within ±{s.indifference:.0%} of the pick: "
                 f"the pick is within {s.indifference:.0%} of the best (the indifference zone), with probability at "
                 f"least {1 - 2 * (1 - s.confidence):.0%} (both sides of every interval).")
    elif race.end in ("one left", "none left"):
        base += (" Every other configuration was shown worse, broke the SLO or failed: the pick is the best of those "
                 "that ran, at that confidence.")
    else:
        base += (f" The race ended on {race.end} before the ties could be told apart by ±{s.indifference:.0%}: "
                 "any of them may be the best, and the pick leads only on its point estimate.")
    if s.slo:
        limits = ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in s.slo)
        base += f" SLO ({limits}): a candidate counts as meeting it only when its upper bound is under the limit."
    return base


def answer(race: Race, spec: TuneSpec, runs: tuple[str, ...], mode: str, created_at: str,
           frozen_pick: str | None = None, confirm_from: int | None = None) -> TuneAnswer:
    """`frozen_pick`: the pick fixed when the race ended (the confirmation's rounds after it add
    processes, not another choice); `confirm_from`: the confirmation's first round."""
    s = race.settings
    pick = frozen_pick if frozen_pick is not None else _pick_of(race)
    lead = pick or race.leader()
    standings = {st.candidate: st for st in race.standings(lead)}
    closest = None
    if s.slo and pick is None:
        # No candidate shown to meet the SLO: the nearest one (the lowest estimate of the first
        # limited figure).
        key = s.slo[0][0]
        from bench.analysis.race import SLO_FIGURES

        scored = [(e.value, c) for c in race.candidates
                  if (e := race.estimate(c, SLO_FIGURES[key])) is not None]
        closest = min(scored)[1] if scored else None
    ties = [c for c in race.racing if c != lead] if lead else []
    if mode == "grid" and lead:
        # The ground truth's ties: the paired interval against the best holds 1 at the plain confidence.
        ties = [c for c in race.candidates if c != lead
                and (p := paired_against(race, c, lead)) is not None and p.low <= 1.0 <= p.high]
    items = []
    for c in race.candidates:
        t = race.estimate(c, "throughput")
        p = race.estimate(c, "p99_ms")
        if t and p and standings[c].status not in ("failed",):
            items.append((c, t.value, p.value))
    front = _pareto(items)
    cands = []
    for c in spec.candidates:
        st = standings.get(c.id)
        obs = race.observations.get(c.id, {})
        seconds = sum(o.seconds for o in obs.values())
        if st is None:
            cands.append(TunedCandidate(c.id, c.target_name, c.describe(), "untried", 0))
            continue
        status = ("pick" if c.id == pick else "tie" if c.id in ties and pick else
                  "racing" if st.status == "racing" else st.status)
        cands.append(TunedCandidate(
            c.id, c.target_name, c.describe(), status, st.rounds, _figure(st.objective),
            _figure(race.estimate(c.id, "throughput")), _figure(race.estimate(c.id, "p99_ms")), st.meets_slo,
            _ratio(st.vs_leader), st.reason, st.out_round, c.id in front, seconds))
    tried = sum(1 for c in cands if c.status != "untried")
    ran = [o for v in race.observations.values() for o in v.values() if not o.failed.startswith("not run")]
    processes = len(ran)
    seconds = sum(o.seconds for o in ran)
    mean_s = seconds / processes if processes else 0.0
    # The pick's precision: the race's rounds of it (the confirmation's fresh rounds come after).
    depth = (sum(1 for r, o in race.observations[lead].items() if not o.failed
                 and (confirm_from is None or r < confirm_from)) if lead else 0)
    grid_seconds = 0.0
    for c in spec.candidates:
        obs = [o.seconds for o in race.observations.get(c.id, {}).values()]
        grid_seconds += depth * (sum(obs) / len(obs) if obs else mean_s)
    cost = Cost(tried, spec.grid_size, processes, seconds, depth * spec.grid_size, grid_seconds,
                seconds / grid_seconds if grid_seconds else 0.0)
    slo_out = any(status == "slo" for status, _, _ in race.out.values())
    outcome = "ok" if pick else ("slo unmet" if s.slo and (lead is not None or slo_out) else "no result")
    return TuneAnswer(
        TUNE_SCHEMA_VERSION, spec.benchmark.name, spec.scenario, spec.objective, s.maximize, dict(s.slo),
        s.confidence, s.indifference, spec.seed, mode, outcome, pick, tuple(ties) if pick else (), closest,
        race.end or "interrupted", guarantee_text(race, spec, pick, ties, tried, mode), tuple(cands),
        tuple(LookRecord(lk.round, lk.leader, lk.racing, lk.out) for lk in race.looks),
        confirmation(race, spec, pick, confirm_from) if mode != "grid" else None, cost, spec.excluded, runs,
        created_at)


# -- running it ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TuneResult:
    answer: TuneAnswer
    out_dir: Path
    interrupted: bool
    run_paths: tuple[Path, ...]


def min_round_s(spec: TuneSpec, n: int) -> float:
    """The least a round of n candidates can take: each process's warm-up and shortest window."""
    stop = spec.benchmark.stop
    return n * (stop.warmup_seconds + stop.min_seconds)


def run_tune(suite: SuiteSpec, spec: TuneSpec, out_dir: Path, argv: tuple[str, ...] = (), grid: bool = False,
             progress: Callable[[Any], None] = lambda _: None, executor: Any = None) -> TuneResult:
    from bench.results.files import utc_now_iso
    from bench.runner.executor import LocalExecutor
    from bench.runner.schedule import ROUNDS_SEED, ShuffledRounds
    from bench.runner.suite import run_suite

    mode = "grid" if grid else ("race" if spec.grid_size <= spec.max_enumerate else "proposed")
    proposer = None
    if mode == "proposed":
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            raise ConfigError(f"the space holds {spec.grid_size} configurations, over tune.max_enumerate = "
                              f"{spec.max_enumerate}: a search that large is proposed by Optuna's TPE, which is not "
                              "installed: pip install 'bench-harness[tune]' (or raise tune.max_enumerate to race all)")
        from bench.tune.propose import Proposer

        proposer = Proposer(spec)
    key = {**spec.key(), "mode": mode}
    journal = Journal(out_dir / JOURNAL, key)
    policy = TunePolicy(spec, journal, grid=grid, proposer=proposer)
    first = len(policy.active())
    need = min_round_s(spec, first)
    if not any("obs" in e for e in journal.events) and spec.budget_s < need:
        raise ConfigError(f"--budget-s {spec.budget_s:g}: too small for one round: {first} candidates take at least "
                          f"{need:.1f} s of measuring (each process's warm-up and minimum window, before start-up); "
                          "raise the budget or narrow the space")
    interrupted = False
    paths: list[Path] = []
    schedule = ShuffledRounds(ROUNDS_SEED + spec.seed)
    if policy.phase != "done" and policy.active():
        result = run_suite(candidate_suite(suite, spec), out_dir, argv=argv, progress=progress, schedule=schedule,
                           executor=executor or LocalExecutor, rounds=policy)
        interrupted = result.interrupted
        paths.append(result.path)
    runs = tuple(sorted(p.parent.name for p in out_dir.glob("*/run.json")))
    ans = answer(policy.race, spec, runs, mode, utc_now_iso(), policy.frozen_pick, policy.confirm_from)
    from bench.results.tune import write_answer

    write_answer(out_dir / ANSWER, ans)
    return TuneResult(ans, out_dir, interrupted, tuple(paths))
