"""Work units on a Ray cluster: `bench run SUITE --executor ray [--address HOST:PORT]`.

Each unit is one Ray task asking for what its target needs: `num_gpus = 1` for a CUDA target,
the target's CPU cores (Placement.cpus_for: `cpus`, else its compute threads, else 1), its custom
`resources`, and its `machine` label as a label selector. Ray places it on a node that has them.

Isolation: the task runs in a Ray worker used for one task only (`max_calls = 1`), and that
worker starts the harness's usual worker host (bench.runner.isolation.WorkerHosts: a fresh
interpreter that imports the target's runtime and no Ray), which forks the unit's worker, exactly
as a local run makes it. Its peak RSS, its crash and its stderr are its own, as on one machine.

A cell stays on one node: its first unit goes where Ray puts it, the next ones are pinned there
(node affinity), so that its repetitions measure one machine. The task first yields the node it
started on (a streaming task), so the driver knows where each unit runs before it ends.

Faults: a unit whose node died, whose Ray worker died or whose worker process was killed is
retried once, pinned to another eligible node where there is one; a second failure fails the unit
with both reasons. A target no live node can run is a skipped cell, said before any unit is
submitted; a unit that waits SCHEDULING_TIMEOUT_S while no live node can take it (its node left)
is cancelled and fails. Ctrl-C cancels every unit in flight (force: their workers die) and the
runner keeps the finished cells.

Models are prepared once on the driver; their files travel through Ray's object store, each with
the files it needs beside it (an ONNX graph's external data: COMPANIONS), and each node keeps them
in a cache by their joint content hash, in their layout. A `package.module:factory` model and a
user backend must be importable on every node: install the same harness and packages there
(docs/fleet.md).
"""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.codec import did_you_mean
from bench.config.records import TargetSpec
from bench.errors import ExecutorError
from bench.models.loader import PreparedModel
from bench.models.onnx_files import external_data_files
from bench.results.records import Environment, Node, machine_kind
from bench.runner.executor import Refusal, UnitDone, UnitTask
from bench.runner.isolation import WorkerFailure

INSTALL = "pip install 'bench-harness[ray]' (or: pip install 'ray>=2.49')"
CONNECT_TIMEOUT_S = 10.0  # how long an --address may take to answer before the run is refused
# How long a submitted unit may wait while no live node could take it (its pinned node or every
# node with its label left): then it is cancelled and fails, instead of hanging the run.
SCHEDULING_TIMEOUT_S = 60.0


def scheduling_timeout_s() -> float:
    """SCHEDULING_TIMEOUT_S, or BENCH_RAY_SCHEDULING_TIMEOUT_S seconds where that is set."""
    from bench.config.reader import env_seconds

    return env_seconds("BENCH_RAY_SCHEDULING_TIMEOUT_S", SCHEDULING_TIMEOUT_S)


# The files that must lie beside a file a unit opens, by its suffix (paths relative to its
# directory): they travel with it as one bundle. Another kind of companion is one line here.
COMPANIONS: dict[str, Callable[[Path], tuple[str, ...]]] = {
    ".onnx": external_data_files,  # the weights torch's exporter writes to model.onnx.data
}

MACHINE_LABEL = "machine"  # the node label a target's `machine` selects (ray start --labels machine=...)
_POLL_S = 0.5


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def check_answers(address: str, timeout_s: float) -> None:
    """A head's GCS address must accept a connection within timeout_s (ray.init would wait long)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r}: expected the head's HOST:PORT (as `ray start --head` prints), "
                            "or 'local' for a one-machine Ray cluster started by this run")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ExecutorError(f"--address {address}: no Ray head answers there within {timeout_s:g} s "
                            f"({exc.strerror or type(exc).__name__}); start one with `ray start --head --port={port}` "
                            "or fix the address") from None


# --- the node side ------------------------------------------------------------------------------


def _node_cache() -> Path:
    import tempfile

    path = Path(tempfile.gettempdir()) / f"bench-fleet-models-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass(frozen=True)
class _Bundle:
    """A file (or directory) a unit opens, with the files that must lie beside it, shipped as one:
    a node keeps them under their joint content hash in the layout they had on the driver, so the
    references between them (relative paths) resolve there as they did there."""

    sha: str  # over each member's relative path and content
    name: str  # what the unit opens, relative to the bundle's directory
    members: tuple[tuple[str, Any], ...]  # (path relative to the opened file's directory, its object ref)


def _members(path: Path) -> tuple[str, ...]:
    """What travels with `path`, relative to its directory: the file and its COMPANIONS, or every
    file under a directory."""
    if path.is_dir():
        return tuple(str(p.relative_to(path.parent)) for p in sorted(path.rglob("*")) if p.is_file())
    companions = COMPANIONS.get(path.suffix)
    return (path.name, *(rel for rel in (companions(path) if companions else ()) if rel != path.name))


def _bundle(path: Path, put: Callable[[bytes], Any]) -> _Bundle:
    digest = hashlib.sha256()
    members = []
    for rel in _members(path):
        data = (path.parent / rel).read_bytes()
        digest.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\0".encode())
        members.append((rel, put(data)))
    return _Bundle(digest.hexdigest(), path.name, tuple(members))


def _materialize(bundles: dict[str, _Bundle]) -> dict[str, str]:
    """The driver's files on this node (fetched once per bundle): driver path -> local path."""
    import shutil
    import tempfile

    import ray

    local = {}
    for path, bundle in bundles.items():
        home = _node_cache() / bundle.sha
        if not home.is_dir():
            # Written aside and renamed into place whole: a unit beside this one on the node sees
            # the bundle complete or not at all (a graph without its weights fails to load).
            tmp = Path(tempfile.mkdtemp(prefix=f".{bundle.sha[:16]}.", suffix=".part", dir=_node_cache()))
            try:
                for rel, ref in bundle.members:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_bytes(ray.get(ref))
                try:
                    os.rename(tmp, home)
                except OSError:
                    if not home.is_dir():  # else another unit here placed the same bundle first
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        local[path] = str(home / bundle.name)
    return local


def _relocated(model: PreparedModel, local: dict[str, str]) -> PreparedModel:
    """The model as this node's copies name it (_PATH_FIELDS and a file model's source)."""

    def at(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(at(v) for v in value)
        return local.get(value, value) if value else value

    return replace(model, source=replace(model.source, ref=at(model.source.ref)),
                   quantized=tuple((form, replace(q, path=at(q.path))) for form, q in model.quantized),
                   **{name: at(getattr(model, name)) for name in _PATH_FIELDS})


def fleet_unit(job: Any, files: dict[str, _Bundle], timeout_s: float, name: str) -> Any:
    """The Ray task of one unit (a generator): yields the node it started on, then (outcome,
    the outputs file's bytes or None, this node's fingerprint)."""
    import sys
    import tempfile
    import types

    import ray

    from bench.backends.registry import worker_family
    from bench.measure.environment import fingerprint
    from bench.runner.isolation import WorkerHosts
    from bench.runner.unit import run_unit

    yield ray.get_runtime_context().get_node_id()
    scratch = Path(tempfile.mkdtemp(prefix="bench-fleet-unit-"))
    try:
        model = _relocated(job.model, _materialize(files))
        target = job.target
        if target.is_cuda:  # Ray gave this worker its GPU through CUDA_VISIBLE_DEVICES: it is cuda:0 here
            target = replace(target, device="cuda:0")
        job = replace(job, model=model, target=target, outputs_path=str(scratch / "outputs.npz"))
        # The worker is forked from a host spawned here for this unit, which imported the
        # target's runtime first: the unit's worker is made as a local run's is, so its peak RSS
        # is the same figure (a worker spawned directly reads ~13 MiB more on a small ORT model:
        # its imports land in its own heap). multiprocessing would re-import this process's
        # __main__ (Ray's worker script, which imports Ray) in the host; with a bare __main__ it
        # imports only the runtime.
        family, preload = worker_family(job.target.backend)
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            with WorkerHosts(scratch) as hosts:
                outcome = hosts.run(family, preload, run_unit, job, scratch / "worker.stderr", timeout_s, name)
        finally:
            sys.modules["__main__"] = saved
        outputs = Path(job.outputs_path)
        yield outcome, outputs.read_bytes() if outputs.exists() else None, fingerprint()
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


# --- the driver side ----------------------------------------------------------------------------


@dataclass
class _Flight:
    task: UnitTask
    ref: Any  # the task's ObjectRefGenerator
    started_on: str | None = None  # Ray node id, once the task yielded it
    attempt: int = 0
    first_failure: str = ""
    first_node: str | None = None
    waiting_since: float | None = None  # when no live node could take it (not started)


def _request(target: TargetSpec) -> tuple[dict[str, float], str]:
    """The resources a unit of `target` asks for (CPU, GPU, custom) and its machine label ("")."""
    need = {"CPU": target.placement.cpus_for(target.options)}
    if target.is_cuda:
        need["GPU"] = 1.0
    need.update(dict(target.placement.resources))
    return need, target.placement.machine


def _needs(target: TargetSpec) -> str:
    """What a node must have for `target`, in words: "1 GPU and label machine=h100 and 4 CPUs"."""
    what = target.placement.describe(1 if target.is_cuda else 0)
    cpus = _request(target)[0]["CPU"]
    return what + (f" and {cpus:g} CPUs" if cpus > 1 or target.placement.cpus else "")


def _fits(node: dict, need: dict[str, float], label: str) -> bool:
    if not node.get("Alive"):
        return False
    if label and (node.get("Labels") or {}).get(MACHINE_LABEL) != label:
        return False
    have = node.get("Resources") or {}
    return all(have.get(k, 0.0) >= v for k, v in need.items())


@dataclass
class _NoPeaks:
    """No GPU peak probe on fleet nodes (the probe runs on the driver's machine): rooflines of
    fleet cells give FLOP/s without a fraction of peak, and say why."""

    reason: str = "no peak: GPU peaks are probed on the driver's machine, and this cell ran on a fleet node"

    def ensure(self, device: str) -> None:
        return None

    def get(self, device: str) -> str:
        return self.reason


@dataclass
class RayExecutor:
    """Units as Ray tasks (see the module docstring). `address`: a head's HOST:PORT, or None or
    "local" to start a one-machine Ray cluster for this run."""

    address: str | None = None
    # A one-machine cluster started for the run ("local") runs one unit at a time, as the local
    # executor does: units that overlap on one machine disturb each other's figures. A real
    # cluster takes as many as its nodes' resources allow (None).
    max_in_flight: int | None = None
    local_cpus: int | None = None  # CPUs a "local" cluster declares (default: this machine's)
    scheduling_timeout_s: float = field(default_factory=scheduling_timeout_s)
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    name: str = "ray"
    _flights: list[_Flight] = field(default_factory=list)
    _files: dict[str, _Bundle] = field(default_factory=dict)  # driver path -> what ships it
    _nodes: dict[str, Node] = field(default_factory=dict)  # Ray node id -> Node
    _remote: Any = None

    def __post_init__(self) -> None:
        import logging

        ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
        # ray.init sets its own SIGTERM handler (and its core worker may take SIGINT): the CLI's
        # handlers, which keep the measured cells on any ending signal, are put back after it.
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            self._init(ray, quiet)
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in saved.items():
                    if handler is not None:
                        signal.signal(sig, handler)
        self._remote = ray.remote(max_calls=1, max_retries=0)(fleet_unit)

    @property
    def local(self) -> bool:
        return self.address in (None, "", "local")

    def _init(self, ray: Any, quiet: dict) -> None:
        if self.local:
            if self.max_in_flight is None:
                self.max_in_flight = 1
            # address="local": a new cluster, never one this machine already runs (ray.init()
            # alone would join the latest one started here).
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", num_cpus=self.local_cpus,
                     **quiet)
        else:
            if self.address.startswith("ray://"):
                raise ExecutorError(f"--address {self.address}: give the head's HOST:PORT (the GCS address "
                                    "`ray start --head` prints); the driver runs on a machine of the cluster")
            check_answers(self.address, self.connect_timeout_s)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"--address {self.address}: Ray could not connect ({str(exc).splitlines()[0]})") \
                    from None

    # --- what the cluster has --------------------------------------------------------------------

    def _cluster(self) -> list[dict]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    def has_cuda(self) -> bool:
        return any((n.get("Resources") or {}).get("GPU", 0) > 0 for n in self._cluster())

    def refusal(self, target: TargetSpec) -> Refusal | None:
        need, label = _request(target)
        nodes = self._cluster()
        if any(_fits(n, need, label) for n in nodes):
            return None
        what = _needs(target)
        labels = sorted({(n.get("Labels") or {}).get(MACHINE_LABEL) for n in nodes} - {None})
        known = (f"; the nodes' machine labels: {', '.join(labels)}{did_you_mean(label, labels)}" if labels
                 else "; no node has a machine label")
        return Refusal("skipped", f"no node with {what} ({len(nodes)} live node{'s' if len(nodes) != 1 else ''}"
                                  f"{known if label else ''})")

    def prepare(self, models: dict[str, PreparedModel]) -> None:
        import ray

        by_place: dict[Path, _Bundle] = {}  # a file named two ways (a relative source ref, its full path) ships once
        for model in models.values():
            for path in _model_files(model):
                if path not in self._files and Path(path).exists():
                    place = Path(path).absolute()  # not resolved: companions are found beside the path as named
                    if place not in by_place:
                        by_place[place] = _bundle(place, ray.put)
                    self._files[path] = by_place[place]

    def peaks(self, scratch: Path) -> _NoPeaks:
        return _NoPeaks()

    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes.values())

    # --- units -------------------------------------------------------------------------------------

    def has_room(self) -> bool:
        # On a cluster Ray queues what its nodes cannot start yet.
        return self.max_in_flight is None or len(self._flights) < self.max_in_flight

    def _ray_id(self, node: str | None) -> str | None:
        return next((rid for rid, n in self._nodes.items() if n.id == node), None) if node else None

    def _launch(self, task: UnitTask, pin: str | None) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        need, label = _request(task.planned.target)
        options: dict[str, Any] = {"num_cpus": need.pop("CPU"), "num_gpus": need.pop("GPU", 0.0),
                                   "resources": need, "num_returns": "streaming"}
        if label:
            options["label_selector"] = {MACHINE_LABEL: label}
        if pin is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(pin, soft=False)
        files = {p: f for p, f in self._files.items() if p in _model_files(task.job.model)}
        return self._remote.options(**options).remote(task.job, files, task.timeout_s,
                                                      f"bench-cell-{task.planned.index}")

    def _alive(self, ray_id: str) -> bool:
        return any(n["NodeID"] == ray_id for n in self._cluster())

    def submit(self, task: UnitTask) -> None:
        pin = self._ray_id(task.node)
        if pin is not None and not self._alive(pin):
            pin = None  # the cell's node left: it goes on wherever Ray finds room (assemble keeps one node's figures)
        self._flights.append(_Flight(task, self._launch(task, pin)))

    def wait(self) -> list[UnitDone]:
        import ray

        while True:
            ready, _ = ray.wait([f.ref for f in self._flights], num_returns=1, timeout=_POLL_S)
            done: list[UnitDone] = []
            for ref in ready:
                flight = next(f for f in self._flights if f.ref is ref)
                result = self._step(flight)
                if result is not None:
                    self._flights.remove(flight)
                    done.append(result)
            done += self._expire_unschedulable()
            if done:
                return done

    def _step(self, flight: _Flight) -> UnitDone | None:
        """Take the flight's next yield: its start (None back), its result, or its failure."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            value = ray.get(next(flight.ref))
        except StopIteration:
            return self._failed(flight, "the Ray task ended without a result")
        except RayTaskError as exc:  # the task's own code raised: a bug, not the node (not retried)
            return UnitDone(flight.task, WorkerFailure("error", f"the Ray task failed: {_first_line(exc)}",
                                                       str(exc)[-2000:]), self._node_id(flight.started_on))
        except RayError as exc:  # the node died, the Ray worker died, the object was lost
            return self._failed(flight, f"{type(exc).__name__}: {_first_line(exc)}")
        if flight.started_on is None:
            flight.started_on = value
            return None
        outcome, outputs, env = value
        node = self._node(flight.started_on, env)
        if isinstance(outcome, WorkerFailure) and outcome.kind == "crash":
            return self._failed(flight, outcome.reason, outcome)
        dest = Path(flight.task.job.outputs_path)
        # the first repetition's carry the accuracy samples' outputs (bench.runner.unit.keep_outputs)
        if outputs is not None and (flight.task.job.repetition == 0 or not dest.exists()):
            dest.write_bytes(outputs)
        return UnitDone(flight.task, _noted(outcome, flight), node.id)

    def _failed(self, flight: _Flight, reason: str, outcome: WorkerFailure | None = None) -> UnitDone | None:
        """Retry once on another eligible node (None back: still in flight), or the unit's failure."""
        where = self._node_id(flight.started_on)
        if flight.attempt == 0:
            others = [n["NodeID"] for n in self._cluster()
                      if n["NodeID"] != flight.started_on and _fits(n, *_request(flight.task.planned.target))]
            retry = _Flight(flight.task, self._launch(flight.task, others[0] if others else None),
                            attempt=1, first_failure=reason, first_node=where)
            self._flights[self._flights.index(flight)] = retry
            return None
        text = (f"{reason} [node {where or '?'}]; retried once after: {flight.first_failure} "
                f"[node {flight.first_node or '?'}]")
        tail = outcome.stderr_tail if outcome is not None else ""
        return UnitDone(flight.task, WorkerFailure("crash", text, tail), where)

    def _expire_unschedulable(self) -> list[UnitDone]:
        """Units not started while no live node can take them, past the scheduling timeout."""
        import ray

        out = []
        now = time.monotonic()
        nodes = None
        for flight in list(self._flights):
            if flight.started_on is not None:
                continue
            nodes = nodes if nodes is not None else self._cluster()
            need, label = _request(flight.task.planned.target)
            if any(_fits(n, need, label) for n in nodes):
                flight.waiting_since = None
                continue
            flight.waiting_since = flight.waiting_since or now
            if now - flight.waiting_since >= self.scheduling_timeout_s:
                ray.cancel(flight.ref, force=True)
                self._flights.remove(flight)
                what = _needs(flight.task.planned.target)
                after = (f" (a retry after: {flight.first_failure} [node {flight.first_node or '?'}])"
                         if flight.attempt else "")
                out.append(UnitDone(flight.task, WorkerFailure(
                    "unsupported", f"no live node with {what} for {self.scheduling_timeout_s:g} s "
                                   f"(scheduling timeout): the unit was cancelled{after}", "")))
        return out

    def _node(self, ray_id: str, env: Environment) -> Node:
        node = self._nodes.get(ray_id)
        if node is None:
            info = next((n for n in self._cluster() if n["NodeID"] == ray_id), {})
            label = (info.get("Labels") or {}).get(MACHINE_LABEL, "")
            node = Node(f"n{len(self._nodes)}", machine_kind(env, label), env, label, ray_id)
            self._nodes[ray_id] = node
        return node

    def _node_id(self, ray_id: str | None) -> str | None:
        node = self._nodes.get(ray_id) if ray_id else None
        return node.id if node else (f"ray:{ray_id[:8]}" if ray_id else None)

    def close(self) -> bool:
        import ray

        interrupted = False
        try:
            for flight in self._flights:
                ray.cancel(flight.ref, force=True)
            # Every object reference goes before the connection does: Ray ends the process (exit
            # 1, silently) when one is released after ray.shutdown().
            self._flights.clear()
            self._files.clear()
            ray.shutdown()
        except KeyboardInterrupt:
            interrupted = True
        return interrupted


# The PreparedModel fields that name files a worker opens (a path, a tuple of paths, or None):
# each such file travels to the node as a bundle (with its COMPANIONS), and the unit's model names
# the node's copy. Another kind of file a unit reads is one entry here.
_PATH_FIELDS = ("onnx_path", "onnx_fp16_path", "decoder_onnx", "decoder_onnx_fp16", "input_file")


def _model_files(model: PreparedModel) -> set[str]:
    """The files a worker reads to load `model`: _PATH_FIELDS, its int8 forms and, for a file model, its source."""
    paths = [model.source.ref if model.source.kind in ("onnx", "pt2") else None]
    paths += [q.path for _, q in model.quantized]  # the int8 forms the parent quantized
    for name in _PATH_FIELDS:
        value = getattr(model, name)
        paths += value if isinstance(value, tuple) else [value]
    return {p for p in paths if p}


def _noted(outcome: Any, flight: _Flight) -> Any:
    """A unit's outcome on its retry says what the first attempt met (a failure in its reason, a
    success in its stop reason)."""
    if not flight.attempt:
        return outcome
    if isinstance(outcome, WorkerFailure):
        return replace(outcome, reason=f"{outcome.reason} (a retry after: {flight.first_failure})")
    run = replace(outcome.run, stop_reason=f"{outcome.run.stop_reason}; retried after: {flight.first_failure}")
    return replace(outcome, run=run)


def _first_line(exc: BaseException, limit: int = 240) -> str:
    """Ray's messages run long (advice, log paths): the first line, cut at `limit` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
