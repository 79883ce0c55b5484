"""A served target's endpoint knobs: where the server is, how to reach it, and what is never written.

Read from the [targets.NAME] table like any backend's knobs (bench.backends.options), light to
import (no client library): the config checks them, the runner's pre-flight connects once before
any cell runs (an unreachable URL is bad input, exit 2), and the worker's backend builds its client
from them. Secrets stay out of results: a header's value comes from an environment variable named
in `header_env` (only the variable's name is recorded), a literal Authorization-like header is
refused, and credentials inside the URL are replaced by *** wherever the URL is shown or recorded.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Headers that carry credentials: refused as literals in a suite file (which is often committed
# and whose knobs are recorded), allowed through header_env.
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")
URL_SCHEMES = ("http", "https")


def shown_url(url: str) -> str:
    """The URL with any user:password replaced by ***, for lines, logs, labels and results."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class EndpointOptions:
    """What every served target names. Subclassed by each served backend's knobs record."""

    url: str = ""  # http(s)://host:port[/prefix]; for gRPC, the host:port is taken from it
    model: str = ""  # the model's name on the server
    headers: dict[str, str] = field(default_factory=dict)  # literal, non-secret headers (recorded)
    header_env: dict[str, str] = field(default_factory=dict)  # header name -> environment variable holding its value
    timeout_s: float = 30.0  # one request, send to last byte (a stalled stream times out here)
    connect_timeout_s: float = 5.0  # the pre-flight's and each new connection's
    verify_tls: bool = True
    ca_file: str = ""  # a CA bundle for https (empty: the system's)
    # The server's Prometheus text endpoint (Triton :8002/metrics, MLServer :8082/metrics, KServe
    # the REST port's /metrics): scraped around each measured window (bench.served.server_metrics);
    # empty: none. A failed scrape is a note on the cell, never a failed cell.
    metrics_url: str = ""

    def validate(self) -> tuple[str, str] | None:
        parts = urlsplit(self.url)
        if not self.url:
            return "url", "is required for a served target (e.g. \"http://127.0.0.1:8080\")"
        if parts.scheme not in URL_SCHEMES or not parts.hostname:
            return "url", f"{shown_url(self.url)!r} is not allowed; expected http://HOST:PORT or https://HOST:PORT"
        try:
            parts.port
        except ValueError:
            return "url", f"{shown_url(self.url)!r}: the port is not a number from 0 to 65535"
        if not self.model:
            return "model", "is required: the model's name on the server"
        for name in self.headers:
            if name.lower() in SECRET_HEADERS:
                return f"headers.{name}", ("carries a credential, which a suite file must not hold; name the "
                                           f"environment variable that holds it instead: header_env = {{ {name} = \"VAR\" }}")
        for name, var in self.header_env.items():
            if not var or not all(c.isalnum() or c == "_" for c in var):
                return f"header_env.{name}", f"{var!r} is not an environment variable name"
        if self.metrics_url:
            m = urlsplit(self.metrics_url)
            if m.scheme not in URL_SCHEMES or not m.hostname:
                return "metrics_url", (f"{shown_url(self.metrics_url)!r} is not allowed; expected "
                                       "http://HOST:PORT/metrics or https://HOST:PORT/metrics")
            try:
                m.port
            except ValueError:
                return "metrics_url", f"{shown_url(self.metrics_url)!r}: the port is not a number from 0 to 65535"
        if not 0 < self.timeout_s <= 3600:
            return "timeout_s", f"{self.timeout_s!r} is not allowed; expected seconds > 0 and <= 3600"
        if not 0 < self.connect_timeout_s <= 600:
            return "connect_timeout_s", f"{self.connect_timeout_s!r} is not allowed; expected seconds > 0 and <= 600"
        return None

    # --- what the worker's client uses --------------------------------------------------------

    def resolved_headers(self) -> dict[str, str]:
        """The headers to send, header_env's read now; a variable that is unset is bad input
        (pre-flight calls this too, so it fails before any cell runs)."""
        out = dict(self.headers)
        for name, var in self.header_env.items():
            value = os.environ.get(var)
            if value is None:
                raise LookupError(f"header {name}: environment variable {var} is not set")
            out[name] = value
        return out

    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    def preflight(self) -> str | None:
        """Why the endpoint cannot be used (one line, no secrets), or None: the header variables
        are set and a TCP connection opens within connect_timeout_s. Run once per target, in the
        parent, before any cell."""
        try:
            self.resolved_headers()
        except LookupError as exc:
            return str(exc)
        host, port = self.host_port()
        try:
            with socket.create_connection((host, port), timeout=self.connect_timeout_s):
                pass
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            return f"cannot connect to {shown_url(self.url)} ({why})"
        return None

    # --- the backend knobs record's contract (bench.backends.options) ---------------------------

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        if device != "cpu":
            return "device", (f"{device!r}: a served target runs where its server runs; leave device unset "
                              "(the harness's side is the client, on this machine's CPU)")
        return None

    def cpu_threads(self) -> int:
        return 1  # the driver's event loop: one core

    def serial_only(self) -> str | None:
        return None

    def model_form(self, precision: str) -> str:
        return "onnx"  # inputs and the agreement reference come from the benchmark's model

    def to_dict(self) -> dict[str, Any]:
        """The knobs as recorded: the URL without credentials, header values never (only the
        names of the variables that held them)."""
        d = dataclasses.asdict(self)
        d["url"] = shown_url(self.url)
        d["metrics_url"] = shown_url(self.metrics_url) if self.metrics_url else ""
        d["headers"] = {k: v for k, v in self.headers.items()}
        d["header_env"] = {k: f"${v}" for k, v in self.header_env.items()}
        return d
