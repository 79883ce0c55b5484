"""A tiny deterministic generator behind LitServe's OpenAI spec, for tests/test_served_openai.py.

Run in LitServe's own venv (never imported by the harness):
    python tests/litserve_app.py --port PORT [--first-ms 40] [--gap-ms 10]
It answers /v1/chat/completions, streaming one event per token: the first token after --first-ms,
each later one --gap-ms after the one before; max_tokens tokens (" t0", " t1", ...), with usage
(prompt tokens = the prompt's words, completion tokens so far) on every item, which LitServe puts
in the stream's last event. LitServe starts worker processes that outlive this one's PID: start it
in a new session and stop its process group.
"""
from __future__ import annotations

import argparse
import os
import time

import litserve as ls
from litserve.specs.openai import OpenAISpec


class Counter(ls.LitAPI):
    def setup(self, device):
        # Read here, in the inference worker: LitServe spawns it, so it re-imports this module and
        # sees neither main()'s arguments nor class attributes set there; the environment it inherits.
        self.first_s = float(os.environ["LITSERVE_APP_FIRST_MS"]) / 1e3
        self.gap_s = float(os.environ["LITSERVE_APP_GAP_MS"]) / 1e3

    def predict(self, request):
        n = request.max_tokens or request.max_completion_tokens or 16
        words = len(str(request.messages[-1].content or "").split())
        for i in range(n):
            time.sleep(self.first_s if i == 0 else self.gap_s)
            yield {"role": "assistant", "content": f" t{i}", "prompt_tokens": words, "completion_tokens": i + 1,
                   "total_tokens": words + i + 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--first-ms", type=float, default=40.0)
    ap.add_argument("--gap-ms", type=float, default=10.0)
    args = ap.parse_args()
    os.environ["LITSERVE_APP_FIRST_MS"], os.environ["LITSERVE_APP_GAP_MS"] = str(args.first_ms), str(args.gap_ms)
    try:  # LitServe >= 0.2.9: the spec belongs to the API
        server = ls.LitServer(Counter(spec=OpenAISpec()), accelerator="cpu")
    except TypeError:
        server = ls.LitServer(Counter(), spec=OpenAISpec(), accelerator="cpu")
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, num_api_servers=1)


if __name__ == "__main__":
    main()
