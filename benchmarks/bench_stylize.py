"""Wall time and peak memory of ``batchstyle stylize``, optionally side by side with another command.

    python -m benchmarks.bench_stylize [--repeats 3] [--compare "python other_impl.py ..."] [-- STYLIZE ARGS]

Without arguments it measures ``-s 256 -ii 150 -i 75`` (scales 128, 181, 256) on the CPU, with the
demo batch's chelsea_cat.jpg and van_gogh_starry_night.jpg (``jobs/demo/``). Runs
alternate between the commands so that machine noise hits both alike. Reports the median wall
time, the median peak resident memory (of the process and its children), and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "jobs" / "demo"


def default_args(out: Path) -> list[str]:
    return [str(DEMO / "content" / "chelsea_cat.jpg"), str(DEMO / "styles" / "van_gogh_starry_night.jpg"),
            "-s", "256", "-ii", "150", "-i", "75", "--devices", "cpu", "-q", "-o", str(out)]


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of one run (os.wait4 gives this child's own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {shlex.join(command)}")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", help="another command to run alternately (a shell-quoted string)")
    parser.add_argument("stylize_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = [a for a in args.stylize_args if a != "--"] or default_args(Path(tmp) / "out.png")
        commands = {"batchstyle": [sys.executable, "-m", "batchstyle", "stylize", *extra]}
        if args.compare:
            commands["compare"] = shlex.split(args.compare)
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        for r in range(args.repeats):
            for name, command in commands.items():
                results[name].append(measure(command))
                print(f"run {r + 1} {name}: {results[name][-1][0]:.1f} s, "
                      f"{results[name][-1][1] / 2**20:.0f} MiB", flush=True)
    medians = {name: (statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs))
               for name, runs in results.items()}
    for name, (seconds, memory) in medians.items():
        print(f"{name}: median {seconds:.1f} s, peak RSS {memory / 2**20:.0f} MiB ({shlex.join(commands[name])})")
    if "compare" in medians:
        print(f"batchstyle / compare wall time: {medians['batchstyle'][0] / medians['compare'][0]:.3f}")


if __name__ == "__main__":
    main()
