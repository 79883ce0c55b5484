"""The openai backend's knobs (OpenAI-compatible /v1/completions and /v1/chat/completions, streamed).

Beyond the endpoint's (url, model, headers, header_env, timeouts, TLS):
  api             "completions" (POST /v1/completions, `prompt`) or "chat" (POST
                  /v1/chat/completions, one user message)
  include_usage   ask for the token counts in the stream's last event
                  (stream_options.include_usage, OpenAI's and vLLM's); servers that refuse the field
                  (400) need false, and then the tokenizer counts
  ignore_eos      send ignore_eos = true and min_tokens = max_tokens (vLLM's and SGLang's
                  extensions) so every answer runs to its drawn output length; servers without them
                  ignore or refuse them, and an answer may then stop early (its real length is what
                  the figures use)
  tokenizer       a local Hugging Face tokenizer (a directory, or a tokenizer.json) that counts the
                  tokens each event carries when the server sends no usage; never downloaded
  idle_timeout_s  the longest silence allowed between two chunks of one answer (a stalled stream
                  fails as a "timeout" then, counted); 0: timeout_s, the whole request's limit
  temperature     sampling temperature sent (0: greedy, so two servers' answers can be compared)
  extra_body      more fields for the request body, recorded (e.g. { top_k = 1 }); never the
                  fields the harness sets itself
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.served.endpoint import EndpointOptions

APIS = ("completions", "chat")
# Fields the backend writes into every request body: extra_body may not replace them.
OWN_FIELDS = ("model", "prompt", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
              "min_tokens", "ignore_eos", "temperature", "n")


@dataclass(frozen=True)
class OpenAIOptions(EndpointOptions):
    api: str = "completions"  # "completions" or "chat"
    include_usage: bool = True
    ignore_eos: bool = False
    tokenizer: str = ""
    idle_timeout_s: float = 0.0
    temperature: float = 0.0
    extra_body: dict[str, str | int | float | bool] = field(default_factory=dict)

    def validate(self) -> tuple[str, str] | None:
        problem = super().validate()
        if problem is not None:
            return problem
        if self.api not in APIS:
            return "api", f"{self.api!r} is not allowed (allowed: {', '.join(APIS)})"
        if not (math.isfinite(self.idle_timeout_s) and 0 <= self.idle_timeout_s <= 3600):
            return "idle_timeout_s", f"{self.idle_timeout_s!r} is not allowed; expected seconds >= 0 and <= 3600 (0: timeout_s)"
        if not (math.isfinite(self.temperature) and 0 <= self.temperature <= 2):
            return "temperature", f"{self.temperature!r} is not allowed; expected a number from 0 to 2"
        for name in self.extra_body:
            if name in OWN_FIELDS:
                return f"extra_body.{name}", "is set by the harness itself (from the workload and the other knobs)"
        if self.tokenizer and not Path(self.tokenizer).exists():
            return "tokenizer", (f"{self.tokenizer!r}: no such file or directory (a local Hugging Face tokenizer: "
                                 "a directory holding tokenizer.json, or the file itself)")
        return None

    def model_form(self, precision: str) -> str:
        # The benchmark's decoder is prepared for the generate scenario's bookkeeping only (its
        # length limit, the session's inputs): the server generates. The torch form skips an ONNX
        # export nobody would load (14 s of a LitServe run's 17 s of model build, measured here).
        return "torch"

    def idle_limit_s(self) -> float:
        return self.idle_timeout_s or self.timeout_s

    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
