"""Screenshots of HTML reports, taken offline by the headless chromium the browser tests use.

    python scripts/report_screenshots.py REPORT.html OUT.png [--height PX] [REPORT.html OUT.png ...]

The page opens with the network cut (as in tests/test_html_browser.py); the script fails when the
page makes any request but its own file or logs a console error, so a screenshot is never taken
of a report that would not render offline. --height crops to the top PX pixels (the whole page
by default). The browser: $BENCH_TEST_CHROMIUM, else chromium on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def _palette(path: str) -> None:
    """Down to 256 colours (a report is flat colours and text): a quarter of the bytes, for docs/."""
    from PIL import Image  # pillow: matplotlib's own dependency

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pairs", nargs="+", help="REPORT.html OUT.png, repeated")
    p.add_argument("--height", type=int, help="crop to the top PX pixels")
    p.add_argument("--width", type=int, default=1400)
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give REPORT.html OUT.png pairs")
    exe = os.environ.get("BENCH_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("no chromium: apt-get install chromium, or set BENCH_TEST_CHROMIUM", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        for report, out in zip(args.pairs[::2], args.pairs[1::2]):
            context = browser.new_context(offline=True, viewport={"width": args.width, "height": args.height or 900})
            page = context.new_page()
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            url = Path(report).resolve().as_uri()
            page.goto(url, wait_until="load")
            if requests != [url] or errors:
                print(f"{report}: requests {requests}, console errors {errors}", file=sys.stderr)
                return 1
            page.screenshot(path=out, full_page=args.height is None)
            context.close()
            _palette(out)
            print(f"{out}: {Path(out).stat().st_size:,} bytes")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
