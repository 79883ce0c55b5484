"""A monitor's figures on a Prometheus endpoint (prometheus-client), updated window by window.

Metric names follow Prometheus conventions (base units in the name, `_total` on counters,
`_seconds` on durations); every series carries the labels benchmark, target and batch:

  bench_monitor_request_latency_seconds        histogram; buckets bench.scenarios.monitor.PROM_BUCKETS_S
                                               (100 µs to 10 s); cumulative over the whole monitor
  bench_monitor_requests_total                 counter: completed requests
  bench_monitor_request_errors_total           counter: requests whose call raised
  bench_monitor_windows_total                  counter: windows summarised
  bench_monitor_throughput_samples_per_second  gauge: the last window's samples (requests x batch) / s
  bench_monitor_window_latency_seconds         gauge, label quantile ("0.5", "0.9", "0.99"): the last window's
  bench_monitor_worker_resident_memory_bytes   gauge: the worker's RSS at the last window's end
  bench_monitor_gpu_utilization_ratio          gauge (GPU targets): the last window's mean utilization, 0 to 1
  bench_monitor_gpu_sm_clock_hertz             gauge (GPU targets): the last window's mean SM clock
  bench_monitor_gpu_power_watts                gauge (GPU targets): the last window's mean power
  bench_monitor_gpu_temperature_celsius        gauge (GPU targets): the last window's highest temperature
  bench_monitor_gpu_memory_used_bytes          gauge (GPU targets): the worker's GPU memory (NVML) at most in the window
  bench_monitor_alarm                          gauge, labels kind ("drift", "leak", "error_rate") and figure: 1 while raised
  bench_monitor_alarms_total                   counter: alarms raised

The endpoint binds 127.0.0.1 unless told otherwise (the command warns when it is not loopback).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

ALARM_FIGURES = (("drift", "p99"), ("drift", "throughput"), ("leak", "rss"), ("leak", "gpu_memory"),
                 ("error_rate", "errors"))  # error_rate: a served target's failed-request share (bench monitor)
# (summary field, metric, help, scale to the metric's unit)
GPU_GAUGES = (
    ("gpu_utilization_pct", "bench_monitor_gpu_utilization_ratio", "The last window's mean GPU utilization (0 to 1)", 0.01),
    ("gpu_sm_clock_mhz", "bench_monitor_gpu_sm_clock_hertz", "The last window's mean SM clock, hertz", 1e6),
    ("gpu_power_w", "bench_monitor_gpu_power_watts", "The last window's mean GPU power, watts", 1.0),
    ("gpu_temperature_c", "bench_monitor_gpu_temperature_celsius", "The last window's highest GPU temperature", 1.0),
    ("gpu_memory_bytes", "bench_monitor_gpu_memory_used_bytes", "The worker's GPU memory at most in the last window", 1.0),
)


class MonitorMetrics(Collector):
    """The state the endpoint reports, updated from window summaries (thread-safe)."""

    def __init__(self, benchmark: str, target: str, batch: int, buckets_s: tuple[float, ...]):
        self.labels = {"benchmark": benchmark, "target": target, "batch": str(batch)}
        self.buckets_s = buckets_s
        self._lock = threading.Lock()
        self._bucket_counts = [0] * len(buckets_s)
        self._count = 0
        self._sum_s = 0.0
        self._errors = 0
        self._windows = 0
        self._throughput = 0.0
        self._quantiles: dict[str, float] = {}
        self._rss = 0.0
        self._gpu: dict[str, float] = {}
        self._alarms = {k: 0 for k in ALARM_FIGURES}
        self._alarms_total = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def update(self, window: dict) -> None:
        with self._lock:
            for i, c in enumerate(window["buckets"]):
                self._bucket_counts[i] += c
            self._count += window["requests"]
            self._sum_s += window["sum_s"]
            self._errors += window["errors"]
            self._windows += 1
            self._throughput = window["samples"] / window["span_s"] if window["span_s"] > 0 else 0.0
            self._quantiles = {q: window[k] / 1e3 for q, k in (("0.5", "p50_ms"), ("0.9", "p90_ms"), ("0.99", "p99_ms"))
                               if window.get(k) is not None}
            self._rss = float(window["rss_bytes"])
            self._gpu = {metric: float(window[key]) * scale for key, metric, _, scale in GPU_GAUGES
                         if window.get(key) is not None}

    def set_alarm(self, kind: str, figure: str, raised: bool) -> None:
        with self._lock:
            if raised and not self._alarms.get((kind, figure)):
                self._alarms_total += 1
            self._alarms[(kind, figure)] = 1 if raised else 0

    def collect(self) -> Iterable:
        names, values = list(self.labels), list(self.labels.values())
        with self._lock:
            h = HistogramMetricFamily("bench_monitor_request_latency_seconds",
                                      "Request latency (from the scheduled arrival in open loop), seconds", labels=names)
            buckets = [(f"{b:g}", float(c)) for b, c in zip(self.buckets_s, self._bucket_counts)]
            buckets.append(("+Inf", float(self._count)))
            h.add_metric(values, buckets, self._sum_s)
            yield h
            for name, doc, value in (("bench_monitor_requests", "Completed requests", self._count),
                                     ("bench_monitor_request_errors", "Requests that failed (raised, or a served request's error)",
                                      self._errors),
                                     ("bench_monitor_windows", "Windows summarised", self._windows),
                                     ("bench_monitor_alarms", "Alarms raised", self._alarms_total)):
                c = CounterMetricFamily(name, doc, labels=names)
                c.add_metric(values, float(value))
                yield c
            g = GaugeMetricFamily("bench_monitor_throughput_samples_per_second",
                                  "The last window's samples (requests x batch) per second", labels=names)
            g.add_metric(values, self._throughput)
            yield g
            g = GaugeMetricFamily("bench_monitor_window_latency_seconds", "The last window's latency quantiles, seconds",
                                  labels=names + ["quantile"])
            for q, v in self._quantiles.items():
                g.add_metric(values + [q], v)
            yield g
            g = GaugeMetricFamily("bench_monitor_worker_resident_memory_bytes",
                                  "The worker process's resident memory at the last window's end, bytes", labels=names)
            g.add_metric(values, self._rss)
            yield g
            for _, metric, doc, _ in GPU_GAUGES:
                if metric in self._gpu:
                    g = GaugeMetricFamily(metric, doc, labels=names)
                    g.add_metric(values, self._gpu[metric])
                    yield g
            g = GaugeMetricFamily("bench_monitor_alarm", "1 while an alarm is raised", labels=names + ["kind", "figure"])
            for (kind, figure), v in self._alarms.items():
                g.add_metric(values + [kind, figure], float(v))
            yield g

    def serve(self, host: str, port: int):
        """Start the endpoint (a daemon thread); raises OSError when the address cannot be bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server
