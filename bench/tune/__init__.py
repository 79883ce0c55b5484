"""bench tune: the best configuration of a target under an SLO, chosen by racing (bench.analysis.race)."""
