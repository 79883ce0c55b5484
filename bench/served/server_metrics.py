"""A served target's own figures: its Prometheus metrics scraped just before and just after a measured
window (never inside the timed loop), and the deltas of what is recognised turned into the server's
mean queue and compute time per request and the split of our mean latency.

What each server exposes, measured on this machine (2026-12-07) by scraping the test servers of
tests/server_venvs.py after a few v2 REST requests (and named from Triton's documentation):

  Triton (:8002/metrics, labels model, version; cumulative counters, microseconds)
    nv_inference_request_success, nv_inference_request_failure, nv_inference_count,
    nv_inference_request_duration_us, nv_inference_queue_duration_us,
    nv_inference_compute_input_duration_us, nv_inference_compute_infer_duration_us,
    nv_inference_compute_output_duration_us. The durations are of successful requests (Triton's
    statistics): their means here are per successful request.
  MLServer 1.7 (its metrics_port, default :8082/metrics; labels model, version)
    model_infer_request_success_total, model_infer_request_failure_total (counters), and
    model_infer_request_duration (a summary, seconds: the data plane's infer, i.e. decode, predict
    and encode inside the server: recorded here as compute). Its transports, without a model label
    (the path is a template): rest_server_requests_total and rest_server_request_duration_seconds
    (histogram, labels method, path "/v2/models/{model_name}/infer", status_code), and
    grpc_server_handled_total / grpc_server_handling_seconds (grpc_method "ModelInfer",
    grpc_code). No queue time (its parallel_request_queue and batch_request_queue, where present,
    are queue sizes, not durations). A request MLServer's REST refuses (422) is counted by
    rest_server_* only, not by model_infer_request_failure_total.
  KServe 0.21 ModelServer (the REST port's /metrics; label model_name)
    request_preprocess_seconds, request_predict_seconds, request_postprocess_seconds,
    request_explain_seconds (histograms, seconds). No request counter, no success/failure, no
    request duration and no queue time: a KServe cell shows compute (pre + predict + post) alone,
    its request count being predict's.

Only metric names this module knows and the model's own label value are kept: no other label or
value from the scrape is recorded, so a secret in some label cannot reach a result. A scrape that
fails is one line on the cell (its URL shown without credentials), never a failed cell.
"""
from __future__ import annotations

import base64
import math
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from bench.results.records import ServerMetrics
from bench.served.endpoint import shown_url

MODEL_LABELS = ("model", "model_name")  # Triton and MLServer; KServe
MAX_BODY_BYTES = 32 * 2**20  # a metrics page past this is not read whole (a misdirected URL)

# sample name -> quantity it adds to (summed over the samples that pass the filters below)
_SAMPLES: dict[str, str] = {
    # Triton
    "nv_inference_request_success": "triton_success",
    "nv_inference_request_failure": "triton_failure",
    "nv_inference_count": "triton_inferences",
    "nv_inference_request_duration_us": "triton_request_us",
    "nv_inference_queue_duration_us": "triton_queue_us",
    "nv_inference_compute_input_duration_us": "triton_compute_input_us",
    "nv_inference_compute_infer_duration_us": "triton_compute_infer_us",
    "nv_inference_compute_output_duration_us": "triton_compute_output_us",
    # MLServer
    "model_infer_request_success_total": "mlserver_success",
    "model_infer_request_failure_total": "mlserver_failure",
    "model_infer_request_duration_sum": "mlserver_model_s",
    "model_infer_request_duration_count": "mlserver_model_count",
    "rest_server_request_duration_seconds_sum": "mlserver_rest_s",
    "rest_server_request_duration_seconds_count": "mlserver_rest_count",
    "grpc_server_handling_seconds_sum": "mlserver_grpc_s",
    "grpc_server_handling_seconds_count": "mlserver_grpc_count",
    "grpc_server_handled_total": "mlserver_grpc_handled",
    # KServe
    "request_preprocess_seconds_sum": "kserve_pre_s",
    "request_preprocess_seconds_count": "kserve_pre_count",
    "request_predict_seconds_sum": "kserve_predict_s",
    "request_predict_seconds_count": "kserve_predict_count",
    "request_postprocess_seconds_sum": "kserve_post_s",
    "request_postprocess_seconds_count": "kserve_post_count",
}
_INFER_PATH_END = "/infer"  # MLServer's rest_server_* path label: "/v2/models/{model_name}/infer"


@dataclass(frozen=True)
class Scrape:
    """One parsed scrape: the recognised quantities, summed over the target's model's samples
    (and, for MLServer's transports, over its inference path: those carry no model label)."""

    values: dict[str, float] = field(default_factory=dict)
    model_filtered: bool = False  # some sample carried a model label that was filtered on


def _keep(name: str, labels: dict[str, str], model: str) -> tuple[bool, bool]:
    """(keep the sample, it was filtered by its model label)."""
    for key in MODEL_LABELS:
        if key in labels:
            return (not model or labels[key] == model), bool(model)
    if name.startswith("rest_server_"):
        return labels.get("method", "POST") == "POST" and labels.get("path", "").endswith(_INFER_PATH_END), False
    if name.startswith("grpc_server_"):
        return labels.get("grpc_method") == "ModelInfer", False
    return True, False


def parse(text: str, model: str = "") -> Scrape:
    """The recognised quantities of a Prometheus text page, for `model` ("" : every model).
    MLServer's failed transport requests are counted apart: rest_server_* with a status_code of
    400 or more, grpc_server_handled_total with a grpc_code other than OK; its REST duration is
    also kept over the 2xx answers alone."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    filtered = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # the parser names a counter's samples NAME_total even where the page has no _total (Triton's)
            quantity = _SAMPLES.get(sample.name) or (_SAMPLES.get(sample.name[:-6]) if sample.name.endswith("_total")
                                                     else None)
            if quantity is None or not math.isfinite(sample.value):
                continue
            keep, by_model = _keep(sample.name, sample.labels, model)
            filtered |= by_model
            if not keep:
                continue
            values[quantity] = values.get(quantity, 0.0) + sample.value
            if quantity in ("mlserver_rest_count", "mlserver_rest_s"):
                failed = sample.labels.get("status_code", "200")[:1] in ("4", "5")
                part = ("mlserver_rest_failed" if failed else "mlserver_rest_ok_count") if quantity.endswith("count") \
                    else (None if failed else "mlserver_rest_ok_s")
                if part:
                    values[part] = values.get(part, 0.0) + sample.value
            if quantity == "mlserver_grpc_handled" and sample.labels.get("grpc_code", "OK") != "OK":
                values["mlserver_grpc_failed"] = values.get("mlserver_grpc_failed", 0.0) + sample.value
    return Scrape(values, filtered)


def server_kind(scrape: Scrape) -> str:
    keys = scrape.values
    if any(k.startswith("triton_") for k in keys):
        return "Triton"
    if any(k.startswith("mlserver_") for k in keys):
        return "MLServer"
    if any(k.startswith("kserve_") for k in keys):
        return "KServe"
    return ""


def _ms_per(total_s: float | None, count: float | None) -> float | None:
    if total_s is None or not count or count <= 0:
        return None
    return total_s / count * 1e3


def deltas(before: Scrape, after: Scrape) -> tuple[dict[str, float], str]:
    """after - before for every quantity in both; a counter that went back (the server restarted,
    or another replica answered the scrape) is one note and no figures."""
    d = {k: after.values[k] - before.values[k] for k in after.values if k in before.values}
    back = sorted(k for k, v in d.items() if v < 0)
    if back:
        return {}, f"the server's counters went back between the scrapes ({', '.join(back[:3])}): restarted?"
    return d, ""


def figures(url: str, model: str, window_s: float, before: Scrape | None, after: Scrape | None,
            ours_mean_ms: float | None = None, ours_sent: int | None = None, note: str = "") -> ServerMetrics:
    """The window's ServerMetrics from the scrapes around it (either None: it failed, `note` says why)."""
    shown = shown_url(url)
    if before is None or after is None:
        return ServerMetrics(metrics_url=shown, server="", model=model, window_s=window_s, client_mean_ms=ours_mean_ms,
                             client_sent=ours_sent, note=note or "not scraped",
                             not_exposed=("requests", "request duration", "queue", "compute"))
    d, back = deltas(before, after)
    kind = server_kind(after)
    get = d.get
    requests = succeeded = failed = None
    request_ms = queue_ms = compute_ms = None
    sources: list[str] = []
    if kind == "Triton":
        succeeded = int(get("triton_success", 0)) if "triton_success" in d else None
        failed = int(get("triton_failure", 0)) if "triton_failure" in d else None
        if succeeded is not None:
            requests = succeeded + (failed or 0)
            sources.append("requests: nv_inference_request_success + nv_inference_request_failure")
        n = succeeded
        request_ms = _ms_per(_us(get("triton_request_us")), n)
        queue_ms = _ms_per(_us(get("triton_queue_us")), n)
        parts = [get(k) for k in ("triton_compute_input_us", "triton_compute_infer_us", "triton_compute_output_us")]
        compute_ms = _ms_per(_us(sum(parts)) if all(p is not None for p in parts) else None, n)
        sources += [s for s, v in (("request: nv_inference_request_duration_us / success", request_ms),
                                   ("queue: nv_inference_queue_duration_us / success", queue_ms),
                                   ("compute: nv_inference_compute_{input,infer,output}_duration_us / success",
                                    compute_ms)) if v is not None]
    elif kind == "MLServer":
        transport = [k for k in ("mlserver_rest", "mlserver_grpc") if get(f"{k}_count")]
        if transport:
            requests = int(sum(get(f"{k}_count", 0) for k in transport))
            failed = int(get("mlserver_rest_failed", 0) + get("mlserver_grpc_failed", 0))
            succeeded = requests - failed
            # over the answered requests (our mean is over the ok ones): REST's 2xx, gRPC's all
            # (grpc_server_handling_seconds has no code label)
            ok_s = get("mlserver_rest_ok_s", 0) + get("mlserver_grpc_s", 0)
            ok_n = get("mlserver_rest_ok_count", 0) + get("mlserver_grpc_count", 0)
            request_ms = _ms_per(ok_s, ok_n)
            names = {"mlserver_rest": "rest_server_request_duration_seconds (POST .../infer; duration over 2xx)",
                     "mlserver_grpc": "grpc_server_handling_seconds (ModelInfer)"}
            sources.append("requests, request: " + " + ".join(names[k] for k in transport) + " (all models: no model label)")
        elif "mlserver_success" in d:
            succeeded = int(get("mlserver_success", 0))
            failed = int(get("mlserver_failure", 0))
            requests = succeeded + failed
            sources.append("requests: model_infer_request_success_total + model_infer_request_failure_total")
        compute_ms = _ms_per(get("mlserver_model_s"), get("mlserver_model_count"))
        if compute_ms is not None:
            sources.append("compute: model_infer_request_duration (the data plane's infer: decode, predict, encode)")
    elif kind == "KServe":
        n = get("kserve_predict_count")
        requests = int(n) if n is not None else None
        parts = [(get(f"kserve_{p}_s"), get(f"kserve_{p}_count")) for p in ("pre", "predict", "post")]
        if all(s is not None and c for s, c in parts):
            compute_ms = sum(s / c for s, c in parts) * 1e3  # each stage's mean, added
            sources.append("compute: request_preprocess_seconds + request_predict_seconds + "
                           "request_postprocess_seconds (each stage's mean)")
        if requests is not None:
            sources.append("requests: request_predict_seconds_count (predict calls; failures not counted)")
    not_exposed = tuple(name for name, v in (("requests", requests), ("success/failure", failed),
                                             ("request duration", request_ms), ("queue", queue_ms),
                                             ("compute", compute_ms)) if v is None)
    notes = [back] if back else []
    if not kind and not back:
        notes.append("no metric this harness recognises (Triton's nv_inference_*, MLServer's, KServe's)")
    elif requests == 0:
        notes.append("the server counted no request of this model in the window (another model name, or another replica?)")
    if note:
        notes.append(note)
    network = (ours_mean_ms - request_ms) if ours_mean_ms is not None and request_ms is not None else None
    outside = (ours_mean_ms - compute_ms) if ours_mean_ms is not None and compute_ms is not None else None
    return ServerMetrics(
        metrics_url=shown, server=kind, model=model, window_s=window_s, requests=requests, succeeded=succeeded,
        failed=failed, request_mean_ms=request_ms, queue_mean_ms=queue_ms, compute_mean_ms=compute_ms,
        client_mean_ms=ours_mean_ms, client_sent=ours_sent, network_client_mean_ms=network,
        outside_compute_mean_ms=outside, sources=tuple(sources), not_exposed=not_exposed, note="; ".join(notes))


def _us(value: float | None) -> float | None:
    return None if value is None else value / 1e6


# --- fetching ---------------------------------------------------------------------------------

def _request(url: str, timeout_s: float, context: ssl.SSLContext | None) -> str:
    """GET the page (credentials in the URL become HTTP Basic, never part of the request line)."""
    parts = urlsplit(url)
    headers = {"Accept": "text/plain; version=0.0.4"}
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:
        body = resp.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"the page is over {MAX_BODY_BYTES // 2**20} MiB")
    return body.decode("utf-8", errors="replace")


def fetch(url: str, model: str, timeout_s: float = 5.0, context: ssl.SSLContext | None = None) -> Scrape:
    """One scrape, parsed; raises ScrapeFailed with one line (no secrets) when it cannot."""
    try:
        text = _request(url, timeout_s, context)
    except urllib.error.HTTPError as exc:
        raise ScrapeFailed(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        why = exc.reason if isinstance(exc.reason, str) else (getattr(exc.reason, "strerror", None)
                                                             or type(exc.reason).__name__)
        raise ScrapeFailed(str(why)) from None
    except (OSError, ValueError) as exc:
        raise ScrapeFailed(getattr(exc, "strerror", None) or type(exc).__name__ if isinstance(exc, OSError)
                           else str(exc)) from None
    try:
        return parse(text, model)
    except Exception as exc:  # the parser's ValueError and friends: a page that is not Prometheus text
        raise ScrapeFailed(f"not Prometheus text ({type(exc).__name__})") from None


class ScrapeFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split())[:200])
        self.reason = " ".join(str(reason).split())[:200]


def ssl_context_for(opts: Any) -> ssl.SSLContext | None:
    """The endpoint's TLS settings (verify_tls, ca_file) for an https metrics URL."""
    if urlsplit(getattr(opts, "metrics_url", "") or "").scheme != "https":
        return None
    ctx = ssl.create_default_context(cafile=getattr(opts, "ca_file", "") or None)
    if not getattr(opts, "verify_tls", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Scraper:
    """Scrapes around one measured window: before() as the window opens, after() once it has
    closed (the driver's on_window_start / on_window_end, outside its timed loop); window() then
    gives the ServerMetrics. A failed scrape is kept as its one-line reason."""

    def __init__(self, url: str, model: str, timeout_s: float = 5.0, context: ssl.SSLContext | None = None,
                 fetcher: Callable[[str, str, float, Any], Scrape] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.url, self.model, self.timeout_s, self.context = url, model, timeout_s, context
        self._fetch = fetcher or fetch
        self._clock = clock
        self._before: Scrape | None = None
        self._after: Scrape | None = None
        self._t0 = self._t1 = 0.0
        self.note = ""

    @classmethod
    def for_options(cls, opts: Any) -> Scraper | None:
        """A scraper for a served target's options that name metrics_url; None where none is named."""
        url = getattr(opts, "metrics_url", "") or ""
        if not url:
            return None
        return cls(url, getattr(opts, "model", "") or "", float(getattr(opts, "connect_timeout_s", 5.0) or 5.0),
                   ssl_context_for(opts))

    def _one(self) -> Scrape | None:
        try:
            return self._fetch(self.url, self.model, self.timeout_s, self.context)
        except ScrapeFailed as exc:
            if not self.note:
                self.note = f"metrics not scraped from {shown_url(self.url)}: {exc.reason}"
            return None

    def before(self) -> None:
        self.note = ""
        self._before, self._after = self._one(), None
        self._t0 = self._clock()

    def after(self) -> None:
        self._t1 = self._clock()
        self._after = self._one() if self._before is not None else None

    def window(self, ours_mean_ms: float | None = None, ours_sent: int | None = None) -> ServerMetrics:
        return figures(self.url, self.model, max(self._t1 - self._t0, 0.0), self._before, self._after,
                       ours_mean_ms, ours_sent, self.note)


def endpoint_options(backend: Any) -> Any:
    """A served backend's endpoint knobs (bench.served.endpoint.EndpointOptions), or None.
    A served backend says them with endpoint_options()."""
    from bench.served.endpoint import EndpointOptions

    getter = getattr(backend, "endpoint_options", None)  # a user backend may predate the capability
    opts = getter() if callable(getter) else None
    return opts if isinstance(opts, EndpointOptions) else None


def rows(s: ServerMetrics) -> tuple[tuple[str, str], ...]:
    """The report's detail rows of a cell's (or a window's) server metrics."""
    if not s.server:
        return (("server", s.note or f"no server metrics from {s.metrics_url}"),)
    counted = "not exposed" if s.requests is None else f"{s.requests:,} requests"
    if s.failed is not None and s.requests:
        counted += f", {s.failed:,} failed"
    if s.client_sent is not None:
        counted += f" (ours: {s.client_sent:,} sent)"
    fmt = lambda v: "not exposed" if v is None else f"{v:.3f} ms"  # noqa: E731
    text = (f"{s.server} at {s.metrics_url}{f' (model {s.model})' if s.model else ''}: {counted}; per request: "
            f"request {fmt(s.request_mean_ms)}, queue {fmt(s.queue_mean_ms)}, compute {fmt(s.compute_mean_ms)}")
    out = [("server", text)]
    if s.client_mean_ms is not None:
        split = [f"ours {s.client_mean_ms:.3f} ms"]
        split.append("network+client " + (fmt(s.network_client_mean_ms) if s.network_client_mean_ms is not None
                                          else "not exposed (no server request duration)"))
        if s.queue_mean_ms is not None:
            split.append(f"queue {s.queue_mean_ms:.3f} ms")
        if s.compute_mean_ms is not None:
            split.append(f"compute {s.compute_mean_ms:.3f} ms")
            if s.network_client_mean_ms is None:
                split.append(f"outside compute {s.outside_compute_mean_ms:.3f} ms")
        out.append(("latency split", ", ".join(split) + " (means)"))
    if s.note:
        out.append(("server note", s.note))
    return tuple(out)


def combine(per_window: list, what: str = "windows") -> ServerMetrics:
    """Server figures over several windows (a monitor's windows, a cell's processes): counts summed,
    each mean weighted by the requests of the windows that have it."""
    from dataclasses import replace

    scraped = [s for s in per_window if s.server]
    if not scraped:
        return per_window[-1]

    def total(name: str) -> int | None:
        vals = [getattr(s, name) for s in scraped if getattr(s, name) is not None]
        return sum(vals) if vals else None

    def mean(name: str, weight: str) -> float | None:
        pairs = [(getattr(s, name), getattr(s, weight) or 0) for s in scraped if getattr(s, name) is not None]
        w = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / w if pairs and w else None

    ours = mean("client_mean_ms", "client_sent")
    request, compute = mean("request_mean_ms", "requests"), mean("compute_mean_ms", "requests")
    notes = sorted({s.note for s in per_window if s.note})
    failed_scrapes = len(per_window) - len(scraped)
    if failed_scrapes:
        notes.insert(0, f"{failed_scrapes} of {len(per_window)} {what} not scraped")
    return replace(scraped[-1], window_s=sum(s.window_s for s in per_window), requests=total("requests"),
                   succeeded=total("succeeded"), failed=total("failed"), request_mean_ms=request,
                   queue_mean_ms=mean("queue_mean_ms", "requests"), compute_mean_ms=compute, client_mean_ms=ours,
                   client_sent=total("client_sent"),
                   network_client_mean_ms=None if ours is None or request is None else ours - request,
                   outside_compute_mean_ms=None if ours is None or compute is None else ours - compute,
                   note="; ".join(notes)[:500])
