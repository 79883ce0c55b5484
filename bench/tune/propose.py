"""Proposals for spaces too large to race whole: Optuna's TPE (Bergstra et al. 2011) over the
space's knobs, told each tried candidate's objective estimate (its geometric mean so far).

Deterministic for a seed and a history: every call builds a fresh study from the history (the
candidates tried, in order, with their estimates) and a sampler seeded by the seed and the number
of proposals made, so a resumed search proposes what the uninterrupted one would have.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.tune.space import Candidate, TuneSpec

MAX_ASKS = 200  # proposals that land on tried (or invalid) configurations before the space counts as exhausted


class Proposer:
    def __init__(self, spec: TuneSpec):
        self.spec = spec
        self.order: list[str] = []  # candidates in the order they entered
        self.values: dict[str, float] = {}
        self.exhausted = False
        self.by_params: dict[tuple, Candidate] = {}
        self.params_of: dict[str, dict[str, Any]] = {}
        self.knobs = [k for k in spec.knobs if k.name not in ("target", "batch_size")]
        for c in spec.candidates:
            params = self._params(c)
            self.by_params[tuple(sorted(params.items()))] = c
            self.params_of[c.id] = params

    def _params(self, c: Candidate) -> dict[str, Any]:
        settings = {**dict(c.settings), **dict(c.workload)}
        out: dict[str, Any] = {"target": c.base, "batch_size": c.batch_size}
        for k in self.knobs:
            out[k.name] = _key(settings.get(k.name, "-"))
        return out

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        bases = sorted({c.base for c in self.spec.candidates})
        batches = sorted({c.batch_size for c in self.spec.candidates})
        out = {"target": CategoricalDistribution(bases), "batch_size": CategoricalDistribution(batches)}
        for k in self.knobs:
            out[k.name] = CategoricalDistribution(sorted({self.params_of[c.id][k.name] for c in self.spec.candidates},
                                                         key=str))
        return out

    def entered(self, cid: str) -> None:
        if cid not in self.order:
            self.order.append(cid)

    def tell(self, cid: str, value: float) -> None:
        if value > 0 and math.isfinite(value):
            self.values[cid] = math.log(value)

    def propose(self, n: int, exclude: set[str]) -> list[str]:
        """Up to n untried candidates (fewer when the space runs out)."""
        import optuna
        from optuna.trial import create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = self._distributions()
        out: list[str] = []
        misses = attempt = 0
        while len(out) < n and misses < MAX_ASKS:
            maximize = self.spec.objective == "throughput"
            # Seeded by the search's seed, the history's length and the attempt: the same history
            # proposes the same candidates, in a resumed search too (numpy takes seeds below 2**32).
            seed = int(np.random.SeedSequence([self.spec.seed, len(self.order), attempt]).generate_state(1)[0])
            attempt += 1
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, self.spec.width)))
            study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
            for cid in self.order:
                if cid in self.values:
                    study.add_trial(create_trial(params=self.params_of[cid], distributions=dists,
                                                 value=self.values[cid]))
            trial = study.ask(dists)
            cand = self.by_params.get(tuple(sorted(trial.params.items())))
            # A knob that does not apply to the proposed target reads "-": map the proposal onto
            # the candidate with those settings whatever the others say.
            if cand is None:
                cand = self._nearest(trial.params)
            if cand is None or cand.id in exclude or cand.id in out:
                misses += 1
                continue
            out.append(cand.id)
        if len(out) < n:
            untried = [c.id for c in self.spec.candidates if c.id not in exclude and c.id not in out]
            if misses >= MAX_ASKS and untried:  # TPE keeps proposing tried ones: fall back to the space's order
                out += untried[: n - len(out)]
            elif not untried:
                self.exhausted = True
        return out

    def _nearest(self, params: dict[str, Any]) -> Candidate | None:
        for c in self.spec.candidates:
            mine = self.params_of[c.id]
            if all(mine[k] == v or mine[k] == "-" for k, v in params.items()):
                return c
        return None


def _key(v: Any) -> Any:
    """Optuna's categorical choices: None, bool, int, float or str."""
    return v if isinstance(v, (bool, int, float, str)) else str(v)
