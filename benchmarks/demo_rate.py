"""Images per hour of the demo batch under each schedule, the real command end to end.

    python -m benchmarks.demo_rate [--schedules fixed,adaptive] [--repeats 3] [--manifest jobs/demo/manifest.csv]
                                   [--json FILE] [-- RUN OPTIONS]

Runs ``batchstyle run MANIFEST -o TMP --force --schedule S`` for each schedule in turn, ``--repeats``
rounds alternating the schedules so that machine noise hits both alike, and reads each run's images
per hour from its records (the images made between the first start and the last end, on all its
workers: what ``batchstyle status`` reports as the run's pace). Prints each run, the medians and each
schedule's ratio against the first. Real VGG-19 weights come from ``$BATCHSTYLE_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(manifest: Path, schedule: str, extra: list[str]) -> dict:
    from batchstyle.batch.outdir import open_output_dir
    from batchstyle.batch.progress import pace_of

    with tempfile.TemporaryDirectory(prefix="demo-rate-") as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "batchstyle", "run", str(manifest), "-o", tmp, "--force",
                        "--schedule", schedule, *extra], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        records = list(open_output_dir(tmp).records().values())
    return {"schedule": schedule, "images": len(records), "wall_seconds": wall, "images_per_hour": pace_of(records),
            "iterations": sum(r.iterations for r in records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=lambda t: [s.strip() for s in t.split(",")], default=["fixed", "adaptive"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--manifest", type=Path, default=ROOT / "jobs" / "demo" / "manifest.csv")
    parser.add_argument("--json", type=Path)
    parser.add_argument("extra", nargs="*", help="more options for batchstyle run (after --)")
    args = parser.parse_args()
    runs = []
    for round_ in range(args.repeats):
        for schedule in args.schedules:
            run = one_run(args.manifest, schedule, args.extra)
            runs.append(run)
            print(f"round {round_ + 1} {schedule}: {run['images']} images, {run['images_per_hour']:.1f} images/h, "
                  f"{run['iterations']} iterations, {run['wall_seconds']:.0f} s wall", flush=True)
    medians = {s: statistics.median(r["images_per_hour"] for r in runs if r["schedule"] == s) for s in args.schedules}
    first = args.schedules[0]
    for schedule, rate in medians.items():
        print(f"{schedule}: median {rate:.1f} images/h ({rate / medians[first]:.2f}x {first})")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
