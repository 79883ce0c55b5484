#!/usr/bin/env bash
# Install (if needed) Debian's chromium for the HTML report's browser tests (driven by Playwright,
# which is told to use this binary and never downloads one), then print its path. Fonts: DejaVu,
# so that the reports' text has the same metrics in every run.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core) >&2
fi
command -v chromium
