#!/usr/bin/env bash
# Install (if needed) Debian's wrk, the HTTP load tool `bench self-check --checks driver` measures
# the served-target driver against (issue 28, item 8).
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >&2
fi
command -v wrk >/dev/null
