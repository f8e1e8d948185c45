"""Scheduling must cost nothing next to stylization: planning, resume scans and dispatch, measured.

    python -m benchmarks.bench_batch [--rows 10000] [--dispatch-items 300] [--repeats 3]

1. validate a manifest of ``--rows`` rows (one distinct photo each) and plan it (hash inputs, item
   ids), cold and with the hash cache warm;
2. scan an output directory holding ``--rows`` done items (what a rerun and ``batchstyle status`` do);
3. dispatch overhead: ``--dispatch-items`` items that do no work, through real Ray workers with the
   fake backend; overhead per item = wall time / items per worker.

Reports medians of ``--repeats`` runs (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import ItemRecord, open_output_dir
from batchstyle.batch.plan import make_plan
# The fake backend of the tests; Ray's workers import it from the repository root as well (the driver's
# working directory is on their path).
from tests.support.fake_backend import Fake


def make_job(root: Path, rows: int) -> Path:
    photos = root / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for i in range(rows):
        pixels = base.copy()
        pixels[0, 0] = (i % 256, i // 256 % 256, i // 65536)  # distinct bytes, distinct ids
        Image.fromarray(pixels).save(photos / f"p{i:05d}.png", compress_level=1)
    Image.fromarray(base).save(root / "style.png")
    manifest = root / "manifest.csv"
    manifest.write_text("content,style,output\n" +
                        "".join(f"photos/p{i:05d}.png,style.png,out/p{i:05d}.png\n" for i in range(rows)))
    return manifest


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_planning(root: Path, manifest: Path, repeats: int) -> dict:
    out = open_output_dir(root / "out")
    validate, plan_cold, plan_warm = [], [], []
    for _ in range(repeats):
        (out.meta / "hashes.json").unlink(missing_ok=True)
        seconds, items = timed(lambda: read_manifest(manifest))
        validate.append(seconds)
        plan_cold.append(timed(lambda: make_plan(items, out, "bench"))[0])
        plan_warm.append(timed(lambda: make_plan(items, out, "bench"))[0])
    return {"rows": len(items), "validate_s": statistics.median(validate),
            "plan_cold_s": statistics.median(plan_cold), "plan_warm_s": statistics.median(plan_warm)}


def bench_scan(root: Path, manifest: Path, repeats: int) -> dict:
    out = open_output_dir(root / "out")
    items = read_manifest(manifest)
    plan = make_plan(items, out, "bench")
    for item in plan.todo:  # fill the directory with done items (tiny stand-in images)
        out.write_result(ItemRecord(id=item.id, output=item.output, line=item.line,
                                    content=str(item.content), styles=[], settings={}, weights="bench"),
                         b"\x89PNG stand-in")
    scans, replans, status = [], [], []
    for _ in range(repeats):
        scans.append(timed(lambda: out.done_ids())[0])
        seconds, again = timed(lambda: make_plan(read_manifest(manifest), out, "bench"))
        assert not again.todo
        replans.append(seconds)
        status.append(timed(lambda: subprocess.run([sys.executable, "-m", "batchstyle", "status", str(out.root)],
                                                   capture_output=True, check=True))[0])
    return {"done_items": len(plan.todo), "scan_s": statistics.median(scans),
            "rerun_validate_and_plan_s": statistics.median(replans), "status_command_s": statistics.median(status)}


def bench_dispatch(root: Path, n: int, workers: int, repeats: int) -> dict:
    import ray

    from batchstyle.batch.scheduler import Scheduler
    from batchstyle.batch.state import BatchOptions

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    job = root / "dispatch"
    manifest = make_job(job, n)
    ray.init(address="local", num_cpus=workers, num_gpus=workers, include_dashboard=False, log_to_driver=False)

    class Quiet:
        def update(self, state):
            pass

        def log(self, text):
            pass

    per_item = []
    try:
        for r in range(repeats):
            out = open_output_dir(job / f"out{r}")
            plan = make_plan(read_manifest(manifest), out, "bench")
            scheduler = Scheduler(plan.todo, 0, out, None, "bench",
                                  BatchOptions(backend=Fake("iters=1,sleep=0,scales=1"), workers=workers), Quiet())
            # start the workers first so that their start-up is not counted
            scheduler.pool.adjust(scheduler._need())
            ray.get([w.info_ref for w in scheduler.workers])
            seconds, state = timed(scheduler.run)
            assert state.done == n, state
            per_item.append(seconds / (n / workers))
    finally:
        ray.shutdown()
    return {"items": n, "workers": workers, "seconds_per_item_per_worker": statistics.median(per_item),
            "runs": per_item}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dispatch-items", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seconds, manifest = timed(lambda: make_job(root / "job", args.rows))
        results = {"setup_s": seconds}
        results["planning"] = bench_planning(root / "job", manifest, args.repeats)
        results["scan"] = bench_scan(root / "job", manifest, args.repeats)
        results["dispatch"] = bench_dispatch(root, args.dispatch_items, args.workers, args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    p, s, d = results["planning"], results["scan"], results["dispatch"]
    print(f"validate {p['rows']} rows: {p['validate_s']:.2f} s; plan (hash + ids) cold {p['plan_cold_s']:.2f} s, "
          f"warm {p['plan_warm_s']:.2f} s")
    print(f"scan {s['done_items']} done items: {s['scan_s']:.2f} s; rerun validate+plan {s['rerun_validate_and_plan_s']:.2f} s; "
          f"'batchstyle status' {s['status_command_s']:.2f} s")
    print(f"dispatch: {d['seconds_per_item_per_worker'] * 1000:.1f} ms per item per worker "
          f"({d['items']} items, {d['workers']} workers, median of {len(d['runs'])})")


if __name__ == "__main__":
    main()
