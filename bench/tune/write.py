"""--write-suite: the pick as a suite file that `bench run` takes unchanged: the original suite's
[suite] and [defaults], the pick's target table, and the tuned benchmark at the pick's batch size
and scenario (its reference kept beside it when the pick is not fp32). Paths are made absolute,
so the file runs from wherever it is written."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bench.config.suite import parse_suite
from bench.errors import ResultWriteError
from bench.tune.space import TuneSpec

_PATH_KEYS = ("input_file",)


def _absolute(value: str, base_dir: str) -> str:
    p = Path(base_dir, value)
    return str(p.resolve()) if not Path(value).is_absolute() and p.exists() else value


def pick_suite_text(suite_text: str, file: str, spec: TuneSpec, pick_id: str) -> str:
    import tomli_w

    doc = tomllib.loads(suite_text)
    pick = next(c for c in spec.candidates if c.id == pick_id)
    base_dir = spec.benchmark.base_dir
    names = [b["name"] for b in doc["benchmark"]]
    bench: dict[str, Any] = dict(doc["benchmark"][names.index(spec.benchmark.name)])
    target_table = dict(pick.table)
    if "quantize" in target_table and isinstance(target_table["quantize"], dict):
        q = dict(target_table["quantize"])
        if "calibration_file" in q:
            q["calibration_file"] = _absolute(q["calibration_file"], base_dir)
        target_table["quantize"] = q
    targets = {pick.target_name: target_table}
    ref = spec.default
    if pick.target.precision != "fp32":  # the reference must be fp32: keep the default beside it
        targets[ref.target_name] = dict(ref.table)
    bench["targets"] = list(targets)
    bench["reference"] = ref.target_name if pick.target.precision != "fp32" else pick.target_name
    bench["batch_sizes"] = [pick.batch_size]
    bench["scenarios"] = [spec.scenario]
    for name, value in pick.workload:  # server.max_batch = 4 -> bench["server"]["max_batch"] = 4
        table, key = name.split(".", 1)
        bench[table] = {**bench.get(table, {}), key: value}
    model = bench.get("model", "")
    if isinstance(model, str) and not model.startswith(("zoo:", "hf:")) and ":" not in model:
        bench["model"] = _absolute(model, base_dir)
    for key in _PATH_KEYS:
        if isinstance(bench.get(key), str):
            bench[key] = _absolute(bench[key], base_dir)
    out: dict[str, Any] = {"suite": {"name": f"{doc.get('suite', {}).get('name', Path(file).stem)}-tuned"}}
    if "defaults" in doc:
        out["defaults"] = doc["defaults"]
    out["targets"] = targets
    out["benchmark"] = [bench]
    header = (f"# Written by bench tune from {file}: the pick {pick_id} for {spec.benchmark.name} "
              f"({spec.scenario}, {spec.objective}).\n")
    return header + tomli_w.dumps(out)


def write_pick_suite(path: Path, suite_text: str, file: str, spec: TuneSpec, pick_id: str) -> None:
    text = pick_suite_text(suite_text, file, spec, pick_id)
    parse_suite(text, str(path), base_dir=spec.benchmark.base_dir)  # what bench run will read: it must take it
    try:
        path.write_text(text)
    except OSError as exc:
        raise ResultWriteError(f"--write-suite {path}: cannot write: {exc}") from None
