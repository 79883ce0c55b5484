"""The kserve-v2 backend's knobs (Open Inference Protocol v2 over REST or gRPC)."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.served.endpoint import EndpointOptions

PROTOCOLS = ("rest", "grpc")


@dataclass(frozen=True)
class KServeV2Options(EndpointOptions):
    # "rest": url is the HTTP address (a path prefix allowed, e.g. behind an ingress);
    # "grpc": url is the gRPC address, http://HOST:PORT (plain) or https://HOST:PORT (TLS).
    protocol: str = "rest"
    model_version: str = ""  # empty: the server's choice (its latest or only version)
    # REST only: tensors in the v2 binary extension (raw bytes after a JSON header) instead of
    # JSON lists. Off by default because MLServer's REST refuses binary tensors; KServe and Triton
    # take it, and it spares both sides JSON-encoding every element. gRPC is always raw bytes.
    binary_data: bool = False

    def validate(self) -> tuple[str, str] | None:
        problem = super().validate()
        if problem:
            return problem
        if self.protocol not in PROTOCOLS:
            return "protocol", f"{self.protocol!r} is not allowed (allowed: {', '.join(PROTOCOLS)})"
        if self.model_version and not all(c.isalnum() or c in "-_." for c in self.model_version):
            return "model_version", f"{self.model_version!r} is not a version name (letters, digits, '-', '_', '.')"
        if self.protocol == "grpc":
            if urlsplit(self.url).path not in ("", "/"):
                return "url", ("a gRPC address has no path; give http://HOST:PORT (or https://) of the "
                               "server's gRPC port")
            if self.binary_data:
                return "binary_data", "applies to protocol = \"rest\" (gRPC always sends raw tensor bytes)"
            if not self.verify_tls:
                return "verify_tls", ("cannot be false over gRPC (grpcio has no way to skip verification); "
                                      "give the server's CA as ca_file instead")
        return None
