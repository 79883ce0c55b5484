"""The openai backend's knobs (OpenAI-compatible /v1/completions and /v1/chat/completions, streamed)."""
from __future__ import annotations

from dataclasses import dataclass

from bench.served.endpoint import EndpointOptions


@dataclass(frozen=True)
class OpenAIOptions(EndpointOptions):
    api: str = "completions"  # "completions" or "chat"
