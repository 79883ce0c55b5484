"""The served driver's own ceiling against wrk's on the same endpoint, in one run (issue 28, item 8).

  endpoint  the built-in loopback server (bench.selfcheck.driver_server, its own process, stopped
            by process group), or a user's v2 REST infer URL (`bench self-check --checks driver
            --url http://HOST:PORT/v2/models/NAME/infer`), sent a tiny JSON body: zeros shaped from
            the model's metadata where the server gives it, else one FP32 [1, 1] input.
  wrk       `wrk -t1 -c N -d S` with a Lua script that POSTs the same body, for a few N; its highest
            rate of 2xx answers, measured before the driver's probes and once more after them (the
            higher of the two is the figure: the driver is held to the better wrk).
  driver    bench.served.driver.open_loop over the real kserve-v2 requester (its aiohttp REST path,
            keep-alive pool of 64), built from the URL without load()'s metadata calls, so exactly
            the code a served cell runs. A probe is one Poisson open loop of S seconds after a
            short warm-up; it is sustained when no request failed, the send lag's p99 is within
            DRIVER_LAG_LIMIT_NS (1 ms, the same criterion that marks a served cell driver-limited)
            and every request was answered by DRAIN_LIMIT_S after the last one was due (a driver
            or server that fell behind leaves a queue). The search doubles from START_QPS until a
            probe is not sustained, bisects, then repeats the best rate: a rate is reported only
            when two probes at it were sustained.
  processes When one driver process is not sustained at 80% of wrk's rate, K processes (spawned,
            each an open loop at rate/K with its own seed, results merged: lags pooled, counts
            summed, the longest window) are tried at that rate for K = 2 .. the machine's cores;
            the smallest K sustained twice is reported.

The goal: >= 80% of wrk's rate with the send lag p99 under 1 ms (in K processes). On a machine
where the check's client and server share the cores, both wrk and the driver compete with the
server: the probes state their durations, both sides are measured in the same run, and each probe
says how much of the CPU other processes took meanwhile (a preempted driver lags).

Measured here (2026-12-07, 2 cores shared with other work): the kserve-v2 requester costs ~170-240
µs of CPU per request (3.4-4.5k req/s closed-loop in one process), the built-in server answers wrk
at 50-94k req/s and MLServer 1.7 at ~0.8-1.2k; other processes took 50-90% of the CPU during the
probes and the send lag p99 stayed over 1 ms (2-10 ms spikes of preemption) even at 31 req/s.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from bench.errors import UsageError
from bench.selfcheck.check import Check, met

GOAL_SHARE = 0.80  # of wrk's rate
START_QPS = 500.0
BISECT_STEPS = 4
CLOSE_ENOUGH = 0.05  # the bisection stops when its bracket is within 5% of its top
STEP_DOWN = 0.85  # a best rate whose repeat was not sustained is retried this much lower, twice at most
DRAIN_LIMIT_S = 0.25  # every request answered within this after the last one was due
PROBE_S = 3.0
WRK_S = 3.0
WRK_CONNECTIONS = (4, 16, 64)
DRIVER_TIMEOUT_S = 5.0
DEFAULT_BODY = json.dumps({"id": "0", "inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32",
                                                  "data": [0.0]}]}, separators=(",", ":")).encode()
_V2_PATH = re.compile(r"^(?P<prefix>.*?)/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer/?$")


class DriverCheckError(UsageError):
    """The check cannot run as asked: wrk missing, a URL that is no v2 infer URL, an endpoint that
    does not answer 200 to the check's request (exit 2, one line)."""


# --- the endpoint -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    infer_url: str  # what wrk and the driver POST to
    base_url: str  # kserve-v2's url knob (scheme, host, port and any prefix)
    model: str
    version: str
    body: bytes
    shown: str  # the URL as printed (credentials replaced)
    built_in: bool
    pids: tuple[int, ...] = ()  # the built-in server's process: ours, not "other processes"


def parse_infer_url(url: str) -> tuple[str, str, str]:
    """(base url with any prefix, model, version) of a v2 REST infer URL; DriverCheckError otherwise."""
    from bench.served.endpoint import shown_url

    parts = urlsplit(url)
    m = _V2_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.hostname or m is None:
        raise DriverCheckError(f"--url {shown_url(url)!r}: expected a v2 REST infer URL, "
                               "http(s)://HOST:PORT[/prefix]/v2/models/NAME[/versions/V]/infer")
    base = urlunsplit((parts.scheme, parts.netloc, m["prefix"], "", ""))
    return base, m["model"], m["version"] or ""


_JSON_ZERO = {"BOOL": False, "FP16": 0.0, "FP32": 0.0, "FP64": 0.0, "BF16": 0.0}


def body_from_metadata(meta: object) -> bytes | None:
    """A v2 request of zeros for the model's inputs (dynamic dimensions as 1), or None when the
    metadata does not say enough (the default body is sent then)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("inputs"), list) or not meta["inputs"]:
        return None
    inputs = []
    for t in meta["inputs"]:
        try:
            name, datatype = str(t["name"]), str(t["datatype"])
            shape = [max(int(d), 1) for d in t.get("shape") or [1]]
        except (KeyError, TypeError, ValueError):
            return None
        if datatype not in _JSON_ZERO and not re.fullmatch(r"U?INT(8|16|32|64)", datatype):
            return None  # BYTES and the like: no neutral value to send
        zero = _JSON_ZERO.get(datatype, 0)
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": [zero] * int(np.prod(shape))})
    return json.dumps({"id": "0", "inputs": inputs}, separators=(",", ":")).encode()


def user_endpoint(url: str, timeout_s: float = 10.0) -> Endpoint:
    """The user's endpoint, its body built from the model's metadata, and one request sent to it:
    a server that does not answer 200 is one line before any probe."""
    from bench.served.endpoint import shown_url

    base, model, version = parse_infer_url(url)
    meta_url = url[:url.rstrip("/").rfind("/infer")]
    body = None
    try:
        with urllib.request.urlopen(meta_url, timeout=timeout_s) as resp:
            body = body_from_metadata(json.loads(resp.read()))
    except (OSError, ValueError):
        pass  # no metadata: the default body, judged by the request below
    endpoint = Endpoint(url, base, model, version, body or DEFAULT_BODY, shown_url(url), False)
    _answers(endpoint, timeout_s)
    return endpoint


def _answers(endpoint: Endpoint, timeout_s: float) -> None:
    req = urllib.request.Request(endpoint.infer_url, data=endpoint.body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or type(exc).__name__
        raise DriverCheckError(f"cannot reach {endpoint.shown}: {why}") from None
    if status != 200:
        raise DriverCheckError(f"{endpoint.shown} answered HTTP {status} to the check's request "
                               f"({len(endpoint.body)} bytes of v2 JSON): the check needs a 200")


class BuiltInServer:
    """bench.selfcheck.driver_server in a process group of its own, stopped with the group."""

    def __init__(self, start_timeout_s: float = 20.0):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.selfcheck.driver_server"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True, text=True)
        try:
            line = _read_line(self.proc, start_timeout_s)
            if not line.startswith("PORT "):
                raise RuntimeError(f"the built-in server did not start (it said {line[:80]!r})")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise
        url = f"http://127.0.0.1:{self.port}/v2/models/echo/infer"
        self.endpoint = Endpoint(url, f"http://127.0.0.1:{self.port}", "echo", "", DEFAULT_BODY,
                                 url, True, (self.proc.pid,))

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> BuiltInServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise RuntimeError(f"the built-in server printed no port within {timeout_s:g} s")
    return proc.stdout.readline().strip()


# --- wrk ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WrkRun:
    connections: int
    requests: int  # answered, any status
    duration_s: float
    requests_per_s: float  # wrk's own figure
    non_2xx: int
    socket_errors: int  # connect + read + write + timeout

    @property
    def ok_qps(self) -> float:
        """2xx answers per second (wrk's Requests/sec counts every answer)."""
        if self.requests <= 0 or self.duration_s <= 0:
            return 0.0
        return (self.requests - self.non_2xx) / self.duration_s


_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(stdout: str, connections: int) -> WrkRun:
    """wrk 4's summary: '<n> requests in <t><unit>, ...', 'Requests/sec: <r>', and when any,
    'Non-2xx or 3xx responses: <n>' and 'Socket errors: connect a, read b, write c, timeout d'."""
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", stdout, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", stdout, re.M)
    if done is None or rate is None:
        raise RuntimeError(f"wrk's output has no request count or rate: {stdout.strip()[-300:]!r}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", stdout)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout)
    return WrkRun(connections, int(done[1]), float(done[2]) * _UNIT_S[done[3]], float(rate[1]),
                  int(non2xx[1]) if non2xx else 0, sum(int(g) for g in sock.groups()) if sock else 0)


def wrk_script(body: bytes) -> str:
    """The Lua script that makes wrk POST `body` as JSON on every request."""
    text = body.decode()
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return (f'wrk.method = "POST"\nwrk.body = [{eq}[{text}]{eq}]\n'
            'wrk.headers["Content-Type"] = "application/json"\n')


def run_wrk(endpoint: Endpoint, connections: int, seconds: float) -> WrkRun:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise DriverCheckError("the driver self-check needs wrk on PATH (Debian: apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(wrk_script(endpoint.body))
        script.flush()
        dur = f"{max(1, round(seconds))}s"
        out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{dur}", "-s", script.name, endpoint.infer_url],
                             capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")
    return parse_wrk(out.stdout, connections)


# --- driver probes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    rate_qps: float  # offered (the Poisson rate, all processes together)
    processes: int
    seconds: float
    achieved_qps: float  # ok answers / the longest window (t0 to the last answer)
    lag_p99_us: float
    failed: int
    drain_s: float  # the last answer after the last request was due
    sustained: bool
    others_cpu: float | None = None  # the share of the machine's CPU other processes took meanwhile

    def describe(self) -> str:
        why = "sustained" if self.sustained else "not sustained"
        others = "" if self.others_cpu is None else f", others took {self.others_cpu:.0%} of the CPU"
        return (f"{self.rate_qps:>9,.0f}/s offered x {self.seconds:g} s in {self.processes} process"
                f"{'es' if self.processes > 1 else ''}: achieved {self.achieved_qps:,.0f}/s, lag p99 "
                f"{self.lag_p99_us:,.0f} µs, {self.failed} failed, drained in {self.drain_s * 1e3:,.0f} ms{others}: "
                f"{why}")


def judge_probe(rate_qps: float, processes: int, seconds: float, ok: int, failed: int, window_ns: int,
                last_due_ns: int, lags_ns: np.ndarray) -> Probe:
    from bench.served.driver import DRIVER_LAG_LIMIT_NS

    p99 = float(np.percentile(lags_ns, 99)) if lags_ns.size else float("inf")
    drain_s = max(window_ns - last_due_ns, 0) / 1e9
    achieved = ok / (window_ns / 1e9) if window_ns > 0 else 0.0
    sustained = failed == 0 and ok > 0 and p99 <= DRIVER_LAG_LIMIT_NS and drain_s <= DRAIN_LIMIT_S
    return Probe(rate_qps, processes, seconds, achieved, p99 / 1e3, failed, drain_s, sustained)


@dataclass(frozen=True)
class Search:
    probes: tuple[Probe, ...]  # in the order run
    best_qps: float | None  # the highest rate sustained twice (None: none was)
    confirming: tuple[Probe, ...]  # the two sustained probes at best_qps


def search_rate(probe: Callable[[float], Probe], start_qps: float = START_QPS, ceiling_qps: float | None = None,
                bisect_steps: int = BISECT_STEPS, max_halvings: int = 4) -> Search:
    """The highest rate `probe` sustains: double from start_qps (to ceiling_qps at most) until a
    probe is not sustained (or halve from start until one is), bisect, then repeat the best rate;
    when its repeat is not sustained, try STEP_DOWN lower (two probes there), twice at most."""
    probes: list[Probe] = []

    def run(rate: float) -> Probe:
        p = probe(rate)
        probes.append(p)
        return p

    lo, hi = 0.0, None
    first_pass: dict[float, Probe] = {}
    rate = start_qps if ceiling_qps is None else min(start_qps, ceiling_qps)
    while True:  # up by doubling
        p = run(rate)
        if not p.sustained:
            hi = rate
            break
        lo, first_pass[rate] = rate, p
        if ceiling_qps is not None and rate >= ceiling_qps:
            break
        rate = rate * 2 if ceiling_qps is None else min(rate * 2, ceiling_qps)
    if lo == 0.0:  # the start was too high: down by halving
        for _ in range(max_halvings):
            rate /= 2
            p = run(rate)
            if p.sustained:
                lo, first_pass[rate] = rate, p
                break
            hi = rate
        if lo == 0.0:
            return Search(tuple(probes), None, ())
    for _ in range(bisect_steps):
        if hi is None or (hi - lo) <= CLOSE_ENOUGH * hi:
            break
        mid = (lo + hi) / 2
        p = run(mid)
        if p.sustained:
            lo, first_pass[mid] = mid, p
        else:
            hi = mid
    rate, earlier = lo, [first_pass[lo]]
    for _ in range(3):  # the best rate, repeated; then STEP_DOWN lower, twice at most
        confirming = list(earlier)
        while len(confirming) < 2:
            p = run(rate)
            if not p.sustained:
                break
            confirming.append(p)
        if len(confirming) == 2:
            return Search(tuple(probes), rate, tuple(confirming))
        rate, earlier = rate * STEP_DOWN, []
    return Search(tuple(probes), None, ())


class CpuMeter:
    """The share of the machine's CPU that processes other than ours (this one, the server, the
    driver processes) took between two readings, from /proc (None where there is no /proc): on a
    shared machine a probe that others preempted is told apart from a slow driver."""

    def __init__(self, pids: Callable[[], list[int]]):
        self.pids = pids

    @staticmethod
    def _machine() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(v) - v[3] - (v[4] if len(v) > 4 else 0), sum(v)  # busy (not idle, not iowait), all

    @staticmethod
    def _process(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks like /proc/stat
        except (OSError, ValueError, IndexError):
            return 0

    def read(self) -> tuple[int, int, int] | None:
        machine = self._machine()
        if machine is None:
            return None
        return machine[0], machine[1], sum(self._process(p) for p in {os.getpid(), *self.pids()})

    @staticmethod
    def others(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> float | None:
        if a is None or b is None or b[1] <= a[1]:
            return None
        return min(max((b[0] - a[0]) - (b[2] - a[2]), 0) / (b[1] - a[1]), 1.0)


class DriverPool:
    """K spawned driver processes, each running open_loop at rate/K over the kserve-v2 requester;
    kept for all of the check's probes (a process's start, ~1 s of imports, is outside them)."""

    def __init__(self, endpoint: Endpoint, processes: int, seconds: float, other_pids: tuple[int, ...] = ()):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.processes, self.seconds = processes, seconds
        self.conns, self.procs = [], []
        self._seed = 0
        self.meter = CpuMeter(lambda: [*other_pids, *(p.pid for p in self.procs if p.pid)])
        spec = (endpoint.base_url, endpoint.model, endpoint.version, endpoint.body)
        try:
            for _ in range(processes):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_driver_process, args=(child, spec), daemon=True)
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
            for conn in self.conns:
                self._reply(conn, 60.0)  # "ready": imports done
        except BaseException:
            self.close()
            raise

    def _reply(self, conn, timeout_s: float):
        if not conn.poll(timeout_s):
            raise RuntimeError(f"a driver process gave no answer within {timeout_s:g} s")
        try:
            kind, value = conn.recv()
        except EOFError:
            raise RuntimeError("a driver process ended without an answer") from None
        if kind == "error":
            raise RuntimeError(f"a driver process failed: {value}")
        return value

    def probe(self, rate_qps: float) -> Probe:
        self._seed += 1
        k = self.processes
        before = self.meter.read()
        for i, conn in enumerate(self.conns):
            conn.send((rate_qps / k, self.seconds, self._seed * 1000 + i))
        results = [self._reply(conn, self.seconds + 60.0) for conn in self.conns]
        others = CpuMeter.others(before, self.meter.read())
        ok = sum(r["ok"] for r in results)
        failed = sum(r["failed"] for r in results)
        lags = np.concatenate([np.frombuffer(r["lags"], dtype=np.int64) for r in results])
        window = max(r["window_ns"] for r in results)
        last_due = max(r["last_due_ns"] for r in results)
        return dataclasses.replace(judge_probe(rate_qps, k, self.seconds, ok, failed, window, last_due, lags),
                                   others_cpu=others)

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()

    def __enter__(self) -> DriverPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kserve_requester(base_url: str, model: str, version: str, body: bytes):
    """The kserve-v2 backend's REST requester, pointed at the endpoint without its metadata calls:
    the body is fixed (prepare() returns it), no outputs are required by name, but every answer is
    still read and checked as a v2 response (status 200, an outputs list, sizes matching shapes)."""
    from bench.backends.kserve_v2 import RestBody, RestRequester, Scrubber, _Rest
    from bench.served.kserve_options import KServeV2Options

    opts = KServeV2Options(url=base_url, model=model, model_version=version, timeout_s=DRIVER_TIMEOUT_S)
    wire = _Rest(opts, {}, Scrubber(()))
    prepared = RestBody(body, {"Content-Type": "application/json"})
    return RestRequester(wire, lambda feeds: prepared, ()), prepared


def _driver_process(conn, spec) -> None:
    """One driver process: answers each (rate, seconds, seed) with one open loop's counts and lags."""
    try:
        from bench.scenarios.open_loop import poisson_schedule
        from bench.served.driver import WarmupRule, open_loop

        base_url, model, version, body = spec
        conn.send(("ready", None))
        while True:
            msg = conn.recv()
            if msg is None:
                return
            rate, seconds, seed = msg
            try:
                requester, prepared = kserve_requester(base_url, model, version, body)
                schedule = poisson_schedule(rate, seconds, seed)
                run = open_loop(requester, [prepared], schedule, timeout_s=DRIVER_TIMEOUT_S,
                                warmup=WarmupRule(min_requests=50, min_seconds=0.3, max_seconds=5.0))
                ok = int(run.ok.sum())
                conn.send(("done", {"ok": ok, "failed": int(run.ok.size - ok), "window_ns": int(run.window_ns),
                                    "last_due_ns": int(schedule[-1]) if schedule.size else 0,
                                    "lags": run.lag_ns.astype(np.int64).tobytes()}))
            except Exception:  # noqa: BLE001 - sent back whole; the check says it could not run
                conn.send(("error", traceback.format_exc(limit=4)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return


# --- the check ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriverCheck:
    endpoint: str  # as shown
    built_in: bool
    cores: int
    probe_s: float
    wrk_s: float
    wrk_before: tuple[WrkRun, ...]
    wrk_after: WrkRun | None
    wrk_qps: float  # the higher of the best before and the run after
    one: Search  # one driver process
    target_qps: float  # GOAL_SHARE of wrk's
    processes: int | None  # the smallest K sustained at target_qps (None: none up to the cores)
    multi: tuple[Probe, ...] = field(default_factory=tuple)  # the K > 1 probes, in order
    not_tried: tuple[int, ...] = ()  # K whose K x one process's rate is under the target

    @property
    def driver_qps(self) -> float:
        """One process's sustained rate: the lower achieved rate of its two confirming probes."""
        return min((p.achieved_qps for p in self.one.confirming), default=0.0)

    @property
    def lag_p99_us(self) -> float:
        return max((p.lag_p99_us for p in self.one.confirming), default=float("nan"))

    @property
    def others_cpu(self) -> float | None:
        """The mean share of the CPU other processes took during the driver's probes."""
        shares = [p.others_cpu for p in self.one.probes + self.multi if p.others_cpu is not None]
        return sum(shares) / len(shares) if shares else None

    @property
    def ratio(self) -> float:
        return self.driver_qps / self.wrk_qps if self.wrk_qps > 0 else 0.0


def check_driver(url: str | None = None, probe_s: float = PROBE_S, wrk_s: float = WRK_S,
                 connections: tuple[int, ...] = WRK_CONNECTIONS, start_qps: float = START_QPS,
                 bisect_steps: int = BISECT_STEPS, max_processes: int | None = None) -> DriverCheck:
    if shutil.which("wrk") is None:
        raise DriverCheckError("the driver self-check needs wrk on PATH (Debian: apt-get install -y wrk)")
    cores = os.cpu_count() or 1
    max_k = max(1, min(max_processes or cores, cores))
    if url:
        return _measure(user_endpoint(url), cores, max_k, probe_s, wrk_s, connections, start_qps, bisect_steps)
    with BuiltInServer() as server:
        return _measure(server.endpoint, cores, max_k, probe_s, wrk_s, connections, start_qps, bisect_steps)


def _measure(endpoint: Endpoint, cores: int, max_k: int, probe_s: float, wrk_s: float,
             connections: tuple[int, ...], start_qps: float, bisect_steps: int) -> DriverCheck:
    before = tuple(run_wrk(endpoint, c, wrk_s) for c in connections)
    best_c = max(before, key=lambda w: w.ok_qps)
    if best_c.ok_qps <= 0:
        raise DriverCheckError(f"wrk got no 2xx answer from {endpoint.shown} "
                               f"({best_c.non_2xx} non-2xx, {best_c.socket_errors} socket errors)")
    with DriverPool(endpoint, 1, probe_s, endpoint.pids) as pool:
        one = search_rate(pool.probe, start_qps, ceiling_qps=best_c.ok_qps, bisect_steps=bisect_steps)
    after = run_wrk(endpoint, best_c.connections, wrk_s)
    wrk_qps = max(best_c.ok_qps, after.ok_qps)
    target = GOAL_SHARE * wrk_qps
    best_one = min((p.achieved_qps for p in one.confirming), default=0.0)
    processes, multi, skipped = (1 if best_one >= target else None), [], []
    for k in range(2, max_k + 1):
        if processes is not None:
            break
        if k * best_one < target:  # k processes at best k times one's rate: a probe that cannot pass
            skipped.append(k)       # would only flood the server with a backlog for its whole timeout
            continue
        with DriverPool(endpoint, k, probe_s, endpoint.pids) as pool:
            for _ in range(2):  # sustained twice
                p = pool.probe(target)
                multi.append(p)
                if not (p.sustained and p.achieved_qps >= target):
                    break
            else:
                processes = k
    return DriverCheck(endpoint.shown, endpoint.built_in, cores, probe_s, wrk_s, before, after, wrk_qps, one,
                       target, processes, tuple(multi), tuple(skipped))


def lines(d: DriverCheck) -> list[str]:
    where = "built-in loopback server (one Python process)" if d.built_in else d.endpoint
    out = [f"served driver vs wrk on {where}; {d.cores} cores shared by client and server",
           f"  wrk -t1 -d {d.wrk_s:g}s before the driver: "
           + ", ".join(f"-c {w.connections}: {w.ok_qps:,.0f}/s" + (f" ({w.non_2xx} non-2xx, {w.socket_errors} "
                                                                    "socket errors)" if w.non_2xx or w.socket_errors else "")
                       for w in d.wrk_before)
           + (f"; after: -c {d.wrk_after.connections}: {d.wrk_after.ok_qps:,.0f}/s" if d.wrk_after else ""),
           f"  driver probes (open-loop Poisson, kserve-v2 REST requester; sustained = no failure, send lag p99 "
           f"<= 1 ms, drained within {DRAIN_LIMIT_S * 1e3:g} ms):"]
    out += [f"    {p.describe()}" for p in d.one.probes + d.multi]
    if d.others_cpu is not None and d.others_cpu >= 0.05:
        whose = "other processes" if d.built_in else "other processes (the server's too, where it runs here)"
        out.append(f"  {whose} took {d.others_cpu:.0%} of this machine's CPU during the probes (mean): a driver "
                   "preempted by them lags; run the check on a quiet machine for the driver's own figure")
    if d.not_tried:
        ks = ", ".join(map(str, d.not_tried))
        if d.driver_qps > 0:
            out.append(f"  {ks} processes not tried: even at {max(d.not_tried)} times one process's "
                       f"{d.driver_qps:,.0f}/s they stay under {d.target_qps:,.0f}/s")
        else:
            out.append(f"  {ks} processes not tried: one process sustained no rate")
    k = d.processes
    if d.one.best_qps is None:
        once = [p for p in d.one.probes if p.sustained]
        if once:  # sustained once, not when repeated: the best of those, said as such
            p = max(once, key=lambda p: p.rate_qps)
            at = f" (highest sustained once, not on its repeat: {p.rate_qps:,.0f}/s with lag p99 {p.lag_p99_us:,.0f} µs)"
        else:
            p = min(d.one.probes, key=lambda p: p.rate_qps, default=None)
            at = f" (at {p.rate_qps:,.0f}/s, the lowest tried: lag p99 {p.lag_p99_us:,.0f} µs)" if p else ""
        one = f"driver: 0 req/s sustained twice in 1 process{at} (ratio 0.00)"
    else:
        one = (f"driver: {d.driver_qps:,.0f} req/s in 1 process with lag p99 {d.lag_p99_us:,.0f} µs "
               f"(ratio {d.ratio:.2f})")
    if k is None:
        ks = f"not reached with up to {max(d.cores, 1)} process{'es' if d.cores > 1 else ''}"
    else:
        ks = f"{k} process{'es' if k > 1 else ''}"
    out.append(f"wrk: {d.wrk_qps:,.0f} req/s; {one}; goal: >= {GOAL_SHARE:.0%} of wrk's rate "
               f"({d.target_qps:,.0f}/s) with lag p99 < 1 ms: {met(k is not None)} ({ks})")
    return out


def as_json(d: DriverCheck) -> dict:
    from bench.codec import to_json

    return {**to_json(d), "driver_qps": d.driver_qps, "lag_p99_us": d.lag_p99_us, "ratio": d.ratio,
            "others_cpu": d.others_cpu}


CHECK = Check("driver", False, lambda options: check_driver(), lines, as_json)


def for_url(url: str) -> Check:
    """The check against a user's endpoint (`bench self-check --checks driver --url URL`); a URL
    that is no v2 infer URL is one line (exit 2) before any check runs."""
    parse_infer_url(url)
    return dataclasses.replace(CHECK, run=lambda options: check_driver(url=url))
