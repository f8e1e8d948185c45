"""Does watching a batch slow it down? Images per hour of a batch with ``--web`` and a browser watching
the dashboard, against the same batch without, alternating, in fresh output directories.

    python -m benchmarks.bench_web [--manifest jobs/demo/manifest.csv] [--repeats 3] [-- extra run options]

Each run is ``python -m batchstyle run MANIFEST -o TMPDIR --plain --force [extra options]``, with
``--web --port 0`` and a headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven by Selenium)
kept on the dashboard for the whole run on one side. Reports each run's images per hour (from the
run's own summary), the medians and their ratio (JSON with ``--json``). Needs the real weights
(``BATCHSTYLE_WEIGHTS``) for the real engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chromium-')}"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))


def one_run(manifest: Path, extra: list[str], web: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as out:
        command = [sys.executable, "-m", "batchstyle", "run", str(manifest), "-o", out, "--plain", "--force", *extra]
        if web:
            command += ["--web", "--port", "0"]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        watcher, polls = None, 0
        if web:
            while not any(line.startswith("Live dashboard at ") for line in lines):
                if proc.poll() is not None:
                    raise RuntimeError("".join(lines))
                time.sleep(0.05)
            url = next(line.split()[-1] for line in lines if line.startswith("Live dashboard at "))
            watcher = browser()
            watcher.get(url)
        while proc.poll() is None:
            if watcher is not None:  # the page polls by itself; this only checks that it is alive
                polls += 1
                watcher.execute_script("return document.getElementById('counts').textContent")
            time.sleep(1.0)
        reader.join(10)
        if watcher is not None:
            watcher.quit()
        text = "".join(lines)
        if proc.returncode != 0:
            raise RuntimeError(text)
        match = re.search(r"images per hour\s*│\s*([\d.]+)", text)
        return {"web": web, "images_per_hour": float(match.group(1)), "wall_s": time.perf_counter() - started,
                "done": int(re.search(r"│ done\s*│\s*(\d+)", text).group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "jobs" / "demo" / "manifest.csv")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("extra", nargs="*", help="options for batchstyle run (after --)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runs = []
    for k in range(args.repeats):
        for web in (False, True) if k % 2 == 0 else (True, False):  # alternate which goes first
            runs.append(one_run(args.manifest, args.extra, web))
            if not args.json:
                print(f"{'with --web and a browser' if web else 'without --web':>26}: "
                      f"{runs[-1]['images_per_hour']:.1f} images/hour ({runs[-1]['wall_s']:.0f} s)", flush=True)
    without = statistics.median(r["images_per_hour"] for r in runs if not r["web"])
    watched = statistics.median(r["images_per_hour"] for r in runs if r["web"])
    result = {"runs": runs, "median_without": without, "median_with_web_and_browser": watched,
              "ratio": watched / without}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"median of {args.repeats}: {without:.1f} images/hour without, {watched:.1f} with --web and a browser "
              f"watching (ratio {watched / without:.3f})")


if __name__ == "__main__":
    main()
