"""The kserve-v2 backend's knobs (Open Inference Protocol v2 over REST or gRPC)."""
from __future__ import annotations

from dataclasses import dataclass

from bench.served.endpoint import EndpointOptions


@dataclass(frozen=True)
class KServeV2Options(EndpointOptions):
    protocol: str = "rest"  # "rest" or "grpc"
