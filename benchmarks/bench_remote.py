"""What a batch in object storage costs the driver: planning and resuming a manifest whose inputs are
in a bucket, ``batchstyle status`` on a prefix full of records, and the per-image cost of writing
results to a bucket instead of a local directory. The bucket is moto's S3 server on 127.0.0.1,
started here: request latency is that of a local server, not of a cloud region.

    python -m benchmarks.bench_remote [--rows 10000] [--writes 50] [--repeats 3] [--json]

1. plan a ``--rows``-row manifest (one distinct photo per row, all in one folder of the bucket)
   into an empty prefix: one listing of the folder, a 64 KiB range read per image (16 at a time);
2. resume it: the output prefix holds a record for every image; validate and plan again from
   listings alone (headers from the cache kept in the prefix);
   (the listings alone are timed too: on moto's server they are most of it);
3. ``batchstyle status`` on that prefix (a separate process);
4. write ``--writes`` results (a 512x512 PNG each: the image, then its record) to a local
   directory and to the bucket; median seconds per image.

Reports medians of ``--repeats`` runs (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import ItemRecord, open_output_dir
from batchstyle.batch.plan import make_plan
from tests.support.moto_s3 import MotoServer, moto_environment

BUCKET = "bench"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def upload_job(client, rows: int) -> str:
    """``rows`` distinct 64x48 photos, a style and a manifest naming each photo, in the bucket."""
    base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    def put(i: int) -> None:
        pixels = base.copy()
        pixels[0, 0] = (i % 256, i // 256 % 256, i // 65536)  # distinct bytes, distinct ids
        client.put_object(Bucket=BUCKET, Key=f"jobs/photos/p{i:05d}.png", Body=png(pixels))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(rows)))
    client.put_object(Bucket=BUCKET, Key="jobs/style.png", Body=png(base))
    manifest = "content,style,output\n" + "".join(f"photos/p{i:05d}.png,style.png,p{i:05d}.png\n" for i in range(rows))
    client.put_object(Bucket=BUCKET, Key="jobs/manifest.csv", Body=manifest.encode())
    return f"s3://{BUCKET}/jobs/manifest.csv"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fresh() -> None:
    """A new run: nothing remembered from an earlier listing."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def plan_once(manifest: str, prefix: str):
    fresh()
    out = open_output_dir(prefix)
    return make_plan(read_manifest(manifest, headers=out.headers), out, "bench")


def fill(prefix: str, plan) -> None:
    """A record (and a tiny stand-in image) for every item, written as a run writes them."""
    out = open_output_dir(prefix)
    out.create()
    out.done_ids()  # the listing the writes keep up to date

    def write(item) -> None:
        out.write_result(ItemRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                                    styles=[], settings={}, weights="bench"), b"\x89PNG stand-in " + item.id.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, plan.todo))


def listing_seconds(prefix: str) -> float:
    """The part of a resume that is the store's listing: the inputs' folder and the output prefix."""
    from batchstyle.batch.outdir.object_stores import remote_folder

    folder = remote_folder(prefix)
    folder.listing(".batchstyle/lease.json")  # the client is made (not timed)
    return timed(lambda: (folder.fs.find(f"{BUCKET}/jobs/photos", detail=True), folder.listing()))[0]


def bench_planning(manifest: str, repeats: int) -> dict:
    cold, resume, status, listing = [], [], [], []
    for r in range(repeats):
        prefix = f"s3://{BUCKET}/out{r}"
        seconds, plan = timed(lambda: plan_once(manifest, prefix))
        cold.append(seconds)
        fill(prefix, plan)
        seconds, again = timed(lambda: plan_once(manifest, prefix))
        assert not again.todo and len(again.done) == len(plan.all), (len(again.todo), len(again.done))
        resume.append(seconds)
        listing.append(listing_seconds(prefix))
        status.append(timed(lambda: subprocess.run([sys.executable, "-m", "batchstyle", "status", prefix],
                                                   capture_output=True, check=True))[0])
    return {"rows": len(plan.all), "plan_cold_s": statistics.median(cold), "resume_plan_s": statistics.median(resume),
            "status_command_s": statistics.median(status), "listing_s": statistics.median(listing),
            "runs": {"cold": cold, "resume": resume, "status": status, "listing": listing}}


def bench_writes(root: Path, n: int, repeats: int) -> dict:
    image = png(np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    medians = {}
    for kind in ("local", "s3"):
        runs = []
        for r in range(repeats):
            out = open_output_dir(root / f"local{r}" if kind == "local" else f"s3://{BUCKET}/writes{r}")
            out.create()
            out.done_ids()
            per = []
            for i in range(n):
                record = ItemRecord(id=f"{r:02d}{i:022d}", output=f"img/{i:05d}.png", line=i, content="c", styles=[],
                                    settings={}, weights="bench")
                per.append(timed(lambda: out.write_result(record, image))[0])
            runs.append(statistics.median(per))
        medians[kind] = statistics.median(runs)
    return {"image_bytes": len(image), "writes": n, "local_s": medians["local"], "s3_s": medians["s3"],
            "overhead_s": medians["s3"] - medians["local"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = MotoServer()
    try:
        with moto_environment(server), tempfile.TemporaryDirectory() as tmp:
            client = server.client()
            client.create_bucket(Bucket=BUCKET)
            seconds, manifest = timed(lambda: upload_job(client, args.rows))
            results = {"upload_s": seconds, "planning": bench_planning(manifest, args.repeats),
                       "writes": bench_writes(Path(tmp), args.writes, args.repeats)}
    finally:
        server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    p, w = results["planning"], results["writes"]
    print(f"plan {p['rows']} rows with inputs in the bucket: cold {p['plan_cold_s']:.2f} s (listing + header range "
          f"reads), resume {p['resume_plan_s']:.2f} s (listings only, all done; of which listing the inputs' folder "
          f"and the output prefix {p['listing_s']:.2f} s); 'batchstyle status' {p['status_command_s']:.2f} s")
    print(f"write one result ({w['image_bytes'] / 1024:.0f} KiB PNG + record): local {w['local_s'] * 1000:.1f} ms, "
          f"bucket {w['s3_s'] * 1000:.1f} ms, overhead {w['overhead_s'] * 1000:.1f} ms per image "
          f"(median of {w['writes']} writes, median of {args.repeats} runs)")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
