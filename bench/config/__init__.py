"""Suites: records (frozen specs), reader (typed TOML with file/key/did-you-mean errors), and
suite (benchmarks.toml -> specs, with the scenario and backend registries)."""
