"""kserve-v2: a model behind an Open Inference Protocol v2 server (Triton, KServe, MLServer, Seldon,
OpenVINO Model Server), over REST or gRPC.

load() asks the server whether it is ready, what it is (its metadata: name and version, recorded)
and what the model takes (its model metadata), and plans the tensors from that
(bench.served.v2_inputs): a model the server does not have, or inputs that do not fit, fail the
cell in one line. Every request is encoded once, outside timing (tritonclient's own REST body
encoder; a serialized ModelInferRequest for gRPC), and each response is checked before it counts
(its outputs present and of the sizes their shapes say), so a server that answers garbage is a
"malformed" error, not a fast success.

Two paths, one wire format: bind() gives a synchronous call on one kept-alive connection (the
fallback the in-process scenarios time), requester() the asynchronous one the served driver uses,
with a pool sized for its concurrency. The asynchronous path sends pre-encoded bodies itself (aiohttp
for REST, a grpc.aio channel with pass-through serializers for gRPC) instead of calling
tritonclient's aio clients, which rebuild the body (JSON-encoding every tensor) on every request.

Secrets: header values come from options.resolved_headers() and are sent on every request; they and
any user:password in the URL never appear in an exception, a log line or info() (every reason a
server gives is scrubbed of the header values before it is shown).

Server quirks handled here (MLServer 1.7.1, KServe 0.21.0, measured 2026-12-07 by the kserve tests):
- MLServer's REST refuses binary tensors: binary_data = false (the default) sends JSON.
- KServe's REST answers 500 (a pydantic error: its response wants a string id) when a model echoes
  the id of a request that had none, as KServe's own runtimes do: every REST request carries an id.
- KServe answers gRPC with raw output bytes when the inputs came raw (ours always do); each output is
  also asked with binary_data, which other servers ignore.
- gRPC responses may carry typed `contents` instead of raw bytes (MLServer): both are decoded.
- MLServer gzips responses for a client that accepts it (aiohttp asks by default; tritonclient's
  own http.aio client then fails to decode MLServer's answers): no Accept-Encoding is sent.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import math
import socket
import ssl
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from bench.backends.base import Backend, BackendInfo
from bench.errors import CellFailure, RequestFailed
from bench.served.endpoint import shown_url
from bench.served.v2_inputs import DTYPE_OF_V2, InputMismatch, InputPlan, TensorMeta, plan_inputs

# Typed contents fields of a gRPC InferTensorContents, by v2 datatype (FP16 has none: raw only).
_GRPC_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_REPOSITORY_INDEX_METHODS = ("/inference.GRPCInferenceService/RepositoryIndex",  # Triton
                             "/inference.model_repository.ModelRepositoryService/RepositoryIndex")  # MLServer
_BINARY_HEADER = "Inference-Header-Content-Length"
# Channels of one asyncio gRPC pool: a server allows ~100 concurrent streams on one HTTP/2
# connection by default, so a driver with more in flight spreads them over several channels.
_STREAMS_PER_CHANNEL = 100
_REASON_CHARS = 200
_REQUEST_ID = "bench"


def _tritonclient_version() -> str:
    try:
        return importlib_metadata.version("tritonclient")
    except importlib_metadata.PackageNotFoundError:
        raise CellFailure("kserve-v2 needs the 'served' extra: pip install 'bench-harness[served]' "
                          "(tritonclient and aiohttp)") from None


@dataclass(frozen=True)
class Scrubber:
    """Removes secret header values from any text a server or a library gave us."""

    secrets: tuple[str, ...]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        text = " ".join(text.split())  # one line
        return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."


# --- response checks and decoding (shared by the sync and async paths) -----------------------

def _size(shape: list[int] | tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _rest_header(data: bytes, header_len: int | None) -> tuple[dict, bytes]:
    """The JSON part of a v2 REST response and the binary part after it; RequestFailed("malformed")."""
    try:
        head = json.loads(data[:header_len] if header_len is not None else data)
    except (ValueError, UnicodeDecodeError):
        raise RequestFailed("malformed", f"the response is not v2 JSON ({len(data)} bytes)") from None
    if not isinstance(head, dict) or not isinstance(head.get("outputs"), list):
        raise RequestFailed("malformed", "the response has no 'outputs' list")
    return head, data[header_len:] if header_len is not None else b""


def _rest_outputs(data: bytes, header_len: int | None, expected: tuple[str, ...],
                  decode: bool) -> list[tuple[str, np.ndarray | None]]:
    """Each output's (name, array) — array None when not decode — after checking that the expected
    outputs are there and every tensor holds as many elements as its shape says."""
    head, binary = _rest_header(data, header_len)
    out: list[tuple[str, np.ndarray | None]] = []
    offset = 0
    for o in head["outputs"]:
        try:
            name, datatype, shape = o["name"], o["datatype"], [int(d) for d in o["shape"]]
        except (KeyError, TypeError, ValueError):
            raise RequestFailed("malformed", "an output lacks its name, datatype or shape") from None
        dtype = DTYPE_OF_V2.get(datatype)
        if dtype is None:
            raise RequestFailed("malformed", f"output {name!r} has datatype {datatype!r}, not a numeric one")
        n = _size(shape)
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if size != n * np.dtype(dtype).itemsize or offset + size > len(binary):
                raise RequestFailed("malformed", f"output {name!r}: {size} binary bytes for shape {shape} {datatype}")
            arr = np.frombuffer(binary, dtype, count=n, offset=offset).reshape(shape) if decode else None
            offset += size
        else:
            values = o.get("data")
            if not isinstance(values, list):
                raise RequestFailed("malformed", f"output {name!r} has neither data nor binary_data_size")
            if decode or (values and not isinstance(values[0], list)):
                arr = np.asarray(values, dtype=dtype)
                if arr.size != n:
                    raise RequestFailed("malformed", f"output {name!r}: {arr.size} values for shape {shape}")
                arr = arr.reshape(shape) if decode else None
            else:
                arr = None
        out.append((name, arr))
    _check_names(expected, [name for name, _ in out])
    return out


def _check_names(expected: tuple[str, ...], got: list[str]) -> None:
    missing = [e for e in expected if e not in got]
    if missing:
        raise RequestFailed("malformed", f"the response lacks output {missing[0]!r} (it has {', '.join(got) or 'none'})")


def _grpc_outputs(resp: Any, expected: tuple[str, ...], decode: bool) -> list[tuple[str, np.ndarray | None]]:
    raw = resp.raw_output_contents
    out: list[tuple[str, np.ndarray | None]] = []
    for i, o in enumerate(resp.outputs):
        dtype = DTYPE_OF_V2.get(o.datatype)
        if dtype is None:
            raise RequestFailed("malformed", f"output {o.name!r} has datatype {o.datatype!r}, not a numeric one")
        shape = tuple(int(d) for d in o.shape)
        n = _size(shape)
        if raw:
            if i >= len(raw) or len(raw[i]) != n * np.dtype(dtype).itemsize:
                raise RequestFailed("malformed", f"output {o.name!r}: raw bytes do not match shape {list(shape)} {o.datatype}")
            arr = np.frombuffer(raw[i], dtype).reshape(shape) if decode else None
        else:
            field = _GRPC_CONTENTS.get(o.datatype)
            values = getattr(o.contents, field) if field else ()
            if o.datatype == "FP16" and o.contents.bytes_contents:  # MLServer puts FP16 there
                values = np.frombuffer(b"".join(o.contents.bytes_contents), np.float16)
            if len(values) != n:
                raise RequestFailed("malformed", f"output {o.name!r}: {len(values)} values for shape {list(shape)}")
            arr = np.asarray(values, dtype=dtype).reshape(shape) if decode else None
        out.append((o.name, arr))
    _check_names(expected, [name for name, _ in out])
    return out


# --- the two wire protocols -----------------------------------------------------------------

@dataclass(frozen=True)
class RestBody:
    body: bytes
    headers: dict[str, str]  # content type and, for binary tensors, the JSON part's length


class _Rest:
    """v2 over HTTP/1.1: a synchronous keep-alive connection for load(), bind() and outputs()."""

    protocol = "REST"

    def __init__(self, opts: Any, headers: dict[str, str], scrub: Scrubber):
        parts = urlsplit(opts.url)
        self.opts, self.headers, self.scrub = opts, headers, scrub
        self.https = parts.scheme == "https"
        self.host, self.port = opts.host_port()
        self.prefix = parts.path.rstrip("/")
        model = f"/v2/models/{quote(opts.model, safe='')}"
        if opts.model_version:
            model += f"/versions/{quote(opts.model_version, safe='')}"
        self.model_path = self.prefix + model
        self.infer_path = self.model_path + "/infer"
        self.ssl = ssl_context(opts) if self.https else None
        self._conn: http.client.HTTPConnection | None = None

    # one request, reconnecting once when a kept-alive connection was closed by the server
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout_s: float | None = None) -> tuple[int, Any, bytes]:
        timeout_s = timeout_s or self.opts.timeout_s
        for attempt in (0, 1):
            conn = self._connected()
            # the socket keeps the timeout it was given at connect; each request sets its own
            assert conn.sock is not None
            conn.sock.settimeout(timeout_s)
            try:
                conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                resp = conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt:
                    raise RequestFailed("connect", f"the server closed the connection ({type(exc).__name__})") from None
            except (socket.timeout, TimeoutError):
                self.close()
                raise RequestFailed("timeout", f"no response within {timeout_s:g} s") from None
            except OSError as exc:
                self.close()
                raise RequestFailed("connect", self.scrub(exc.strerror or type(exc).__name__)) from None
            except http.client.HTTPException as exc:
                self.close()
                raise RequestFailed("malformed", f"not an HTTP response ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def for_another_caller(self) -> _Rest:
        return _Rest(self.opts, self.headers, self.scrub)

    def _connected(self) -> http.client.HTTPConnection:
        """The kept-alive connection, opened (TCP and TLS) within connect_timeout_s if it is not."""
        if self._conn is not None and self._conn.sock is not None:
            return self._conn
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.opts.connect_timeout_s,
                                               context=self.ssl)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.opts.connect_timeout_s)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise RequestFailed("connect", _tls_reason(exc, self.opts.url)) from None
        except (socket.timeout, TimeoutError):
            conn.close()
            raise RequestFailed("connect", f"no connection within {self.opts.connect_timeout_s:g} s") from None
        except OSError as exc:
            conn.close()
            raise RequestFailed("connect", self.scrub(exc.strerror or type(exc).__name__)) from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _json(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, {"Content-Type": "application/json"} if body else None)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def ready(self) -> bool:
        status, _, _ = self.request("GET", self.prefix + "/v2/health/ready", timeout_s=self.opts.connect_timeout_s)
        return status == 200

    def model_ready(self) -> bool:
        status, _, _ = self.request("GET", self.model_path + "/ready", timeout_s=self.opts.connect_timeout_s)
        return status == 200

    def server_metadata(self) -> dict:
        status, meta = self._json("GET", self.prefix + "/v2")
        return meta if status == 200 and isinstance(meta, dict) else {}

    def model_metadata(self) -> tuple[int, Any]:
        return self._json("GET", self.model_path)

    def model_names(self) -> list[str] | None:
        """The server's models: the repository index (MLServer, Triton), else KServe's /v2/models."""
        status, index = self._json("POST", self.prefix + "/v2/repository/index", b"{}")
        if status == 200 and isinstance(index, list):
            return sorted({str(m.get("name")) for m in index if isinstance(m, dict) and m.get("name")})
        status, listing = self._json("GET", self.prefix + "/v2/models")
        if status == 200 and isinstance(listing, dict) and isinstance(listing.get("models"), list):
            return sorted(str(m) for m in listing["models"])
        return None

    def encode(self, tensors: list[tuple[str, str, np.ndarray]], outputs: tuple[str, ...]) -> RestBody:
        import tritonclient.http as httpclient

        binary = self.opts.binary_data
        inputs = []
        for name, datatype, arr in tensors:
            t = httpclient.InferInput(name, list(arr.shape), datatype)
            t.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(t)
        requested = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
        # No declared outputs: the server returns all; tritonclient then asks them binary, which
        # only a binary-capable server may be asked.
        # An id on every request: KServe's REST answers 500 (its response model wants a string id)
        # when a model echoes the id of a request that had none, as KServe's own examples do.
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            inputs, outputs=requested or None, request_id=_REQUEST_ID, parameters=None)
        if not requested and not binary:
            head = json.loads(body)
            head.get("parameters", {}).pop("binary_data_output", None)
            if not head.get("parameters"):
                head.pop("parameters", None)
            body, json_size = json.dumps(head).encode(), None
        headers = {"Content-Type": "application/json"}
        if json_size is not None:
            headers = {"Content-Type": "application/octet-stream", _BINARY_HEADER: str(json_size)}
        return RestBody(body if isinstance(body, bytes) else bytes(body), headers)

    def infer(self, prepared: RestBody, expected: tuple[str, ...], decode: bool) -> list[tuple[str, np.ndarray | None]]:
        status, headers, data = self.request("POST", self.infer_path, prepared.body, prepared.headers)
        if status != 200:
            raise RequestFailed("http_status", f"HTTP {status}: {self.scrub(_error_text(data))}")
        return _rest_outputs(data, _header_len(headers.get(_BINARY_HEADER)), expected, decode)


class _Grpc:
    """v2 over gRPC: a synchronous channel for load(), bind() and outputs()."""

    protocol = "gRPC"

    def __init__(self, opts: Any, headers: dict[str, str], scrub: Scrubber):
        quiet_grpc()
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.grpc, self.pb = grpc, service_pb2
        self.opts, self.scrub = opts, scrub
        self.https = urlsplit(opts.url).scheme == "https"
        host, port = opts.host_port()
        self.target = f"{host}:{port}"
        # gRPC metadata keys are lower case; values as given
        self.metadata = tuple((k.lower(), v) for k, v in headers.items())
        self.channel = self._channel(grpc)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self._infer = self.channel.unary_unary(_INFER_METHOD, request_serializer=None, response_deserializer=None)

    def _channel(self, grpc: Any) -> Any:
        if self.https:
            return grpc.secure_channel(self.target, grpc_credentials(grpc, self.opts), options=GRPC_OPTIONS)
        return grpc.insecure_channel(self.target, options=GRPC_OPTIONS)

    def close(self) -> None:
        self.channel.close()

    def for_another_caller(self) -> _Grpc:
        return self

    def failed(self, exc: Any) -> RequestFailed:
        return grpc_failure(self.grpc, exc, self.scrub, self.opts)

    def _call(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=timeout_s or self.opts.timeout_s)
        except self.grpc.RpcError as exc:
            raise self.failed(exc) from None

    def ready(self) -> bool:
        return bool(self._call(self.stub.ServerReady, self.pb.ServerReadyRequest(),
                               self.opts.connect_timeout_s).ready)

    def model_ready(self) -> bool:
        req = self.pb.ModelReadyRequest(name=self.opts.model, version=self.opts.model_version)
        try:
            return bool(self._call(self.stub.ModelReady, req, self.opts.connect_timeout_s).ready)
        except RequestFailed as exc:
            if exc.kind == "http_status":  # a server that answers NOT_FOUND instead of "not ready"
                return False
            raise

    def server_metadata(self) -> dict:
        try:
            m = self._call(self.stub.ServerMetadata, self.pb.ServerMetadataRequest())
        except RequestFailed:
            return {}
        return {"name": m.name, "version": m.version}

    def model_metadata(self) -> tuple[int, Any]:
        req = self.pb.ModelMetadataRequest(name=self.opts.model, version=self.opts.model_version)
        try:
            m = self._call(self.stub.ModelMetadata, req)
        except RequestFailed as exc:
            return 404, {"error": exc.reason}
        tensors = lambda ts: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts]  # noqa: E731
        return 200, {"name": m.name, "versions": list(m.versions), "platform": m.platform,
                     "inputs": tensors(m.inputs), "outputs": tensors(m.outputs)}

    def model_names(self) -> list[str] | None:
        # Triton's RepositoryIndex is part of its GRPCInferenceService; MLServer and KServe keep
        # theirs elsewhere or not at all, so None here means "not listed over gRPC".
        # MLServer's ModelRepositoryService has the same messages (field for field) under
        # another service name.
        request = self.pb.RepositoryIndexRequest().SerializeToString()
        for method in _REPOSITORY_INDEX_METHODS:
            call = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            try:
                data = self._call(call, request, self.opts.connect_timeout_s)
                index = self.pb.RepositoryIndexResponse.FromString(data)
            except Exception:  # UNIMPLEMENTED, or an answer that is not an index: not listed here
                continue
            return sorted({m.name for m in index.models})
        return None

    def encode(self, tensors: list[tuple[str, str, np.ndarray]], outputs: tuple[str, ...]) -> bytes:
        req = self.pb.ModelInferRequest(model_name=self.opts.model, model_version=self.opts.model_version)
        for name, datatype, arr in tensors:
            t = req.inputs.add()
            t.name, t.datatype = name, datatype
            t.shape.extend(arr.shape)
            req.raw_input_contents.append(arr.tobytes())  # little-endian C order, as v2 raw tensors are
        for name in outputs:
            o = req.outputs.add()
            o.name = name
            o.parameters["binary_data"].bool_param = True  # KServe: raw output bytes only when asked
        return req.SerializeToString()

    def infer(self, prepared: bytes, expected: tuple[str, ...], decode: bool) -> list[tuple[str, np.ndarray | None]]:
        data = self._call(self._infer, prepared)
        return _grpc_outputs(_parse_grpc(self.pb, data), expected, decode)


def quiet_grpc() -> None:
    """gRPC's C core logs each failed TLS handshake or connection on stderr at INFO (grpcio
    1.85): the cell's one-line reason says it already. Read when grpc is first imported."""
    import os

    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


# Tensors of any size: gRPC's default 4 MB receive limit would fail a large batch's outputs.
GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def grpc_credentials(grpc: Any, opts: Any) -> Any:
    """TLS credentials for an https URL: the system's roots, or ca_file's (grpcio cannot skip
    verification, which the options refuse for gRPC)."""
    ca = None
    if opts.ca_file:
        with open(opts.ca_file, "rb") as f:
            ca = f.read()
    return grpc.ssl_channel_credentials(root_certificates=ca)


def _parse_grpc(pb: Any, data: bytes) -> Any:
    try:
        return pb.ModelInferResponse.FromString(data)
    except Exception:  # protobuf's DecodeError, whichever implementation is installed
        raise RequestFailed("malformed", f"the response is not a ModelInferResponse ({len(data)} bytes)") from None


def grpc_failure(grpc: Any, exc: Any, scrub: Scrubber, opts: Any) -> RequestFailed:
    code = exc.code() if hasattr(exc, "code") else None
    details = scrub(exc.details() or "") if hasattr(exc, "details") else ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RequestFailed("timeout", f"no response within {opts.timeout_s:g} s")
    if code == grpc.StatusCode.UNAVAILABLE:
        low = details.lower()
        if "ssl" in low or "handshake" in low or "tls" in low:
            why = "WRONG_VERSION_NUMBER; is the server speaking plain gRPC?" if "wrong_version" in low else details
            return RequestFailed("connect", f"TLS handshake with {shown_url(opts.url)} failed ({why})")
        return RequestFailed("connect", f"gRPC UNAVAILABLE: {details}")
    name = code.name if code is not None else type(exc).__name__
    return RequestFailed("http_status", f"gRPC {name}: {details}")


def _header_len(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise RequestFailed("malformed", f"{_BINARY_HEADER} {value!r} is not a number") from None


def _error_text(data: bytes) -> str:
    try:
        err = json.loads(data)
        if isinstance(err, dict) and "error" in err:
            return str(err["error"])
        if isinstance(err, dict) and "detail" in err:
            return str(err["detail"])
    except ValueError:
        pass
    return data[:_REASON_CHARS].decode("utf-8", "replace")


def _basic_auth(url: str) -> tuple[str, ...] | None:
    """The Authorization header value for a URL's user:password, and the secrets it holds."""
    import base64
    from urllib.parse import unquote

    parts = urlsplit(url)
    if parts.username is None:
        return None
    user, password = unquote(parts.username), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (f"Basic {token}", token, *([password] if password else []))


def ssl_context(opts: Any) -> ssl.SSLContext:
    if not opts.verify_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=opts.ca_file or None)


def _tls_reason(exc: BaseException, url: str) -> str:
    why = getattr(exc, "reason", None) or type(exc).__name__
    hint = "; is the server speaking plain http?" if "WRONG_VERSION" in str(why).upper() else ""
    return f"TLS handshake with {shown_url(url)} failed ({why}{hint})"


# --- the backend ----------------------------------------------------------------------------

class KServeV2Backend(Backend):
    def __init__(self) -> None:
        self._wire: _Rest | _Grpc | None = None
        self._plan: InputPlan | None = None
        self._outputs: tuple[str, ...] = ()
        self._info = BackendInfo()
        self._opts: Any = None
        self._headers: dict[str, str] = {}
        self._scrub = Scrubber(())

    def load(self, model: Any, target: Any) -> None:
        opts = self._opts = target.options
        client_version = _tritonclient_version()
        shown = shown_url(opts.url)
        try:
            self._headers = opts.resolved_headers()
        except LookupError as exc:
            raise CellFailure(str(exc)) from None
        secrets = [self._headers[h] for h in opts.header_env]
        basic = _basic_auth(opts.url)
        if basic is not None and opts.protocol == "rest" and not any(h.lower() == "authorization" for h in self._headers):
            # user:password in an http(s) URL means HTTP Basic authentication, as curl reads it
            self._headers["Authorization"] = basic[0]
            secrets.extend(basic)
        self._scrub = Scrubber(tuple(s for s in secrets if len(s) >= 3))
        try:
            self._wire = wire = _Rest(opts, self._headers, self._scrub) if opts.protocol == "rest" \
                else _Grpc(opts, self._headers, self._scrub)
            if not wire.ready():
                raise CellFailure(f"the server at {shown} is not ready (v2 health/ready said no)")
            server = wire.server_metadata()
            status, meta = wire.model_metadata()
            if status != 200 or not isinstance(meta, dict):
                raise CellFailure(self._not_there(wire, status, meta, shown))
            if not wire.model_ready():
                raise CellFailure(f"model {opts.model!r} is on the server at {shown} but not ready "
                                  "(v2 models/ready said no: still loading, or its load failed)")
        except RequestFailed as exc:
            raise CellFailure(f"cannot use the server at {shown} over {'gRPC' if opts.protocol == 'grpc' else 'REST'}: "
                              f"{exc.reason}") from None
        try:
            inputs = _tensor_metas(meta.get("inputs"))
            self._outputs = tuple(t.name for t in _tensor_metas(meta.get("outputs")))
            self._plan = plan_inputs(tuple(model.inputs), inputs, opts.model)
        except InputMismatch as exc:
            raise CellFailure(f"{shown}: {exc}") from None
        server_name = f"{server.get('name', 'unknown')} {server.get('version', '')}".strip() or "unknown"
        self._info = BackendInfo(
            runtime=f"tritonclient {client_version} ({wire.protocol}) -> server {server_name}",
            details={  # beside the knobs (url, model, protocol), what the server said and what was sent
                "model_platform": str(meta.get("platform") or "") or None,
                "server_versions": [str(v) for v in meta.get("versions") or []] or None,
                "tensors": ("raw bytes (gRPC)" if opts.protocol == "grpc"
                            else "binary (v2 binary extension)" if opts.binary_data else "JSON"),
                "inputs": [f"{w.name} {w.datatype}" for w in self._plan.inputs],
                "outputs_requested": list(self._outputs) or None,
                "input_notes": list(self._plan.notes) or None,
                "tls_verified": (opts.verify_tls if urlsplit(opts.url).scheme == "https" else None),
            },
        )

    def _not_there(self, wire: _Rest | _Grpc, status: int, meta: Any, shown: str) -> str:
        names = wire.model_names()
        model = self._opts.model
        if names is not None and model not in names:
            return f"model {model!r} is not on the server at {shown} (it has: {', '.join(names) or 'no models'})"
        why = self._scrub(_error_text(json.dumps(meta).encode()) if meta is not None else f"HTTP {status}")
        listed = "" if names is not None else " (the server does not list its models here)"
        return f"model {model!r}: the server at {shown} gave no metadata for it{listed}: {why}"

    def _prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        assert self._wire is not None and self._plan is not None, "load() first"
        try:
            tensors = self._plan.tensors(feeds)
        except InputMismatch as exc:
            raise CellFailure(str(exc)) from None
        return self._wire.encode(tensors, self._outputs)

    def bind(self, feeds: dict[str, np.ndarray]):
        prepared = self._prepare(feeds)
        assert self._wire is not None
        # A connection of its own for each bound call: scenarios call several from threads at
        # once, and one http.client connection carries one request at a time (a gRPC channel
        # multiplexes, so it is shared).
        wire, expected = self._wire.for_another_caller(), self._outputs
        return lambda: wire.infer(prepared, expected, False)

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self._wire is not None
        try:
            got = self._wire.infer(self._prepare(feeds), self._outputs, True)
        except RequestFailed as exc:
            raise CellFailure(f"the reference request to {shown_url(self._opts.url)} failed: {exc}") from None
        by_name = dict(got)
        order = self._outputs or tuple(name for name, _ in got)
        return [np.asarray(by_name[name], dtype=np.float64) for name in order]

    def requester(self) -> Any:
        assert self._wire is not None, "load() first"
        if isinstance(self._wire, _Grpc):
            return GrpcRequester(self._opts, self._headers, self._scrub, self._prepare, self._outputs)
        return RestRequester(self._wire, self._prepare, self._outputs)

    def endpoint_options(self) -> Any:
        """The target's endpoint knobs (bench.served.kserve_options), for what scrapes beside it."""
        return self._opts

    def info(self) -> BackendInfo:
        return self._info

    def __del__(self) -> None:
        if self._wire is not None:
            try:
                self._wire.close()
            except Exception:
                pass


def _tensor_metas(raw: Any) -> tuple[TensorMeta, ...]:
    if not raw:
        return ()
    try:
        return tuple(TensorMeta(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape") or ()))
                     for t in raw)
    except (KeyError, TypeError, ValueError):
        raise InputMismatch("the server's model metadata lists tensors without a name, datatype or numeric shape") from None


# --- the asynchronous request paths the served driver uses -----------------------------------

class RestRequester:
    """v2 REST from one asyncio loop: aiohttp with a connection pool sized for the concurrency,
    bodies encoded once by prepare()."""

    def __init__(self, wire: _Rest, prepare: Any, expected: tuple[str, ...]):
        self._wire, self._prepare, self._expected = wire, prepare, expected
        self._session: Any = None
        self._url = f"{'https' if wire.https else 'http'}://{_netloc(wire.host, wire.port)}{wire.infer_path}"

    async def open(self, concurrency: int) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        opts = self._wire.opts
        connector = aiohttp.TCPConnector(limit=max(1, concurrency), limit_per_host=max(1, concurrency),
                                         ssl=self._wire.ssl if self._wire.https else False)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._wire.headers,
            timeout=aiohttp.ClientTimeout(total=opts.timeout_s, sock_connect=opts.connect_timeout_s),
            # no Accept-Encoding: a server that compresses (MLServer gzips) would spend the
            # benchmark's CPU on it, and the synchronous path asks for none either
            skip_auto_headers=("User-Agent", "Accept-Encoding"))

    def prepare(self, feeds: dict[str, np.ndarray]) -> RestBody:
        return self._prepare(feeds)

    async def send(self, prepared: RestBody) -> None:
        aiohttp = self._aiohttp
        scrub = self._wire.scrub
        try:
            async with self._session.post(self._url, data=prepared.body, headers=prepared.headers) as resp:
                data = await resp.read()
                status, header = resp.status, resp.headers.get(_BINARY_HEADER)
        except (asyncio.TimeoutError, TimeoutError):
            if _connect_timeout(aiohttp):
                raise RequestFailed("connect", f"no connection within {self._wire.opts.connect_timeout_s:g} s") from None
            raise RequestFailed("timeout", f"no response within {self._wire.opts.timeout_s:g} s") from None
        except aiohttp.ClientConnectorSSLError as exc:
            raise RequestFailed("connect", _tls_reason(exc, self._wire.opts.url)) from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            raise RequestFailed("connect", scrub(type(exc).__name__ + (f" ({exc.strerror})" if getattr(exc, "strerror", None) else ""))) from None
        except aiohttp.ClientPayloadError as exc:
            raise RequestFailed("malformed", f"the response body broke off ({type(exc).__name__})") from None
        except aiohttp.ClientResponseError as exc:
            raise RequestFailed("malformed", f"not an HTTP response ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise RequestFailed("connect", type(exc).__name__) from None
        if status != 200:
            raise RequestFailed("http_status", f"HTTP {status}: {scrub(_error_text(data))}")
        _rest_outputs(data, _header_len(header), self._expected, False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _connect_timeout(aiohttp: Any) -> bool:
    # aiohttp >= 3.10 raises ConnectionTimeoutError for sock_connect; the caller's except clause
    # has caught it as a TimeoutError, so look at what is being handled
    import sys

    cls = getattr(aiohttp, "ConnectionTimeoutError", None)
    return cls is not None and isinstance(sys.exc_info()[1], cls)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcRequester:
    """v2 gRPC from one asyncio loop: grpc.aio channels (one per ~100 requests in flight), each
    request a ModelInferRequest serialized once by prepare() and sent through a pass-through
    serializer; the response parsed and checked."""

    def __init__(self, opts: Any, headers: dict[str, str], scrub: Scrubber, prepare: Any, expected: tuple[str, ...]):
        self._opts, self._headers, self._scrub = opts, headers, scrub
        self._prepare, self._expected = prepare, expected
        self._channels: list[Any] = []
        self._calls: list[Any] = []
        self._next = 0

    async def open(self, concurrency: int) -> None:
        quiet_grpc()
        import grpc
        import grpc.aio
        from tritonclient.grpc import service_pb2

        self._grpc, self._pb = grpc, service_pb2
        https = urlsplit(self._opts.url).scheme == "https"
        host, port = self._opts.host_port()
        target = f"{host}:{port}"
        self._metadata = tuple((k.lower(), v) for k, v in self._headers.items())
        for _ in range(max(1, math.ceil(concurrency / _STREAMS_PER_CHANNEL))):
            if https:
                ch = grpc.aio.secure_channel(target, grpc_credentials(grpc, self._opts), options=GRPC_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(target, options=GRPC_OPTIONS)
            self._channels.append(ch)
            self._calls.append(ch.unary_unary(_INFER_METHOD, request_serializer=None, response_deserializer=None))

    def prepare(self, feeds: dict[str, np.ndarray]) -> bytes:
        return self._prepare(feeds)

    async def send(self, prepared: bytes) -> None:
        call = self._calls[self._next]
        self._next = (self._next + 1) % len(self._calls)
        try:
            data = await call(prepared, metadata=self._metadata, timeout=self._opts.timeout_s)
        except self._grpc.RpcError as exc:
            raise grpc_failure(self._grpc, exc, self._scrub, self._opts) from None
        _grpc_outputs(_parse_grpc(self._pb, data), self._expected, False)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
        self._channels, self._calls = [], []
