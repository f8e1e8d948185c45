"""``batchstyle run`` and ``status`` with the manifest, the inputs and the output directory in a
bucket, as a user runs them, on every object store the README names: real processes, real Ray, a
real server of each store (moto's S3, Azurite, fake-gcs-server; one per store for the module,
reached through the store's standard environment variables, tests/support/store_servers.py), the fake
backend."""

from __future__ import annotations

import json
import io
import os
import signal
import subprocess
import sys
import uuid

import pytest
from PIL import Image

from support.store_servers import bucket_with_a_job
from support.photos import make_photo
from support.processes import batchstyle, kill_session, start, wait_for

pytestmark = pytest.mark.ray
FAKE = "iters=8,sleep=0.03,scales=2"


@pytest.fixture
def job(store):
    """A bucket with ``jobs/manifest.csv`` over ``jobs/photos/`` (8 photos) and ``jobs/style.png``."""
    bucket = bucket_with_a_job(store, f"night-{uuid.uuid4().hex[:10]}", 8, (48, 36), "jobs/manifest.csv")
    return bucket, store


def records(store, bucket: str) -> dict[str, dict]:
    found = {}
    for key in store.keys(bucket, "out/.batchstyle/done/"):
        record = json.loads(store.get(bucket, key))
        found[record["id"]] = record
    return found


def assert_gallery_in_bucket(store, bucket: str) -> None:
    """The gallery is in the output prefix: the page, its data naming every image with its
    thumbnail, and the thumbnails (8 photos, 8 results, one style)."""
    stored = store.keys(bucket, "out/")
    assert "out/index.html" in stored
    summary = store.get(bucket, "out/.batchstyle/gallery/summary.js").decode()
    assert '"total":8' in summary and '"done":8' in summary
    shard = store.get(bucket, "out/.batchstyle/gallery/shard-00000.js").decode()
    rows = json.loads(shard[shard.index(".shards[0]=") + len(".shards[0]="):].rstrip().rstrip(";"))
    assert sorted(row["output"] for row in rows) == [f"p{i}__style.png" for i in range(8)]
    assert all(row.get("thumb") and row.get("content_thumb") for row in rows)
    thumbs = [k for k in stored if k.startswith("out/.batchstyle/thumbs/") and k.endswith(".jpg")]
    assert len(thumbs) == 8 + 8 + 1


def test_a_batch_in_a_bucket_runs_into_the_bucket_and_status_reads_it(job):
    bucket, store = job
    args = ["run", f"{store.scheme}://{bucket}/jobs/manifest.csv", "-o", f"{store.scheme}://{bucket}/out/", "--plain"]
    first = batchstyle(*args, fake=FAKE)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"8 to make, into {store.scheme}://{bucket}/out" in first.stdout
    done = records(store, bucket)
    assert {r["output"] for r in done.values()} == {f"p{i}__style.png" for i in range(8)}
    for record in done.values():
        assert record["content"].startswith(f"{store.scheme}://{bucket}/jobs/photos/") and record["output_tag"]
        body = store.get(bucket, f"out/{record['output']}")
        assert len(body) == record["output_bytes"]
        Image.open(io.BytesIO(body)).load()
    status = batchstyle("status", f"{store.scheme}://{bucket}/out")
    assert status.returncode == 0 and "8 image(s) in the latest run: 8 done, 0 failed, 0 pending" in status.stdout
    assert_gallery_in_bucket(store, bucket)
    store.delete(bucket, "out/index.html")
    rebuilt = batchstyle("status", f"{store.scheme}://{bucket}/out", "--html")
    assert rebuilt.returncode == 0 and f"Wrote {store.scheme}://{bucket}/out/index.html (8 image(s))" in rebuilt.stdout
    assert_gallery_in_bucket(store, bucket)
    again = batchstyle(*args, fake=FAKE)
    assert again.returncode == 0 and "8 already done (skipped), 0 to make" in again.stdout
    everything = first.stdout + first.stderr + status.stdout + again.stdout + again.stderr
    assert store.secret not in everything


def test_a_killed_driver_then_a_rerun_does_every_image_exactly_once(job, tmp_path):
    bucket, store = job
    log = tmp_path / "log"
    log.mkdir()
    args, fake = ["run", f"{store.scheme}://{bucket}/jobs/manifest.csv", "-o", f"{store.scheme}://{bucket}/out", "--plain"], f"{FAKE},log={log}"
    proc = start(*args, fake=fake)
    try:
        wait_for(lambda: len(records(store, bucket)) >= 2, 120, "two finished images")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        kill_session(proc)
    done_first = set(records(store, bucket))
    assert 2 <= len(done_first) < 8
    logged_first = {p.name for p in log.iterdir()}
    second = batchstyle(*args, fake=fake)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Taking over {store.scheme}://{bucket}/out from a run that ended without cleaning up (pid {proc.pid}" in second.stdout
    assert f"{len(done_first)} already done (skipped)" in second.stdout
    done = records(store, bucket)
    assert len(done) == 8 and {r["output"] for r in done.values()} == {f"p{i}__style.png" for i in range(8)}
    started_second = {name.split(".")[0] for name in {p.name for p in log.iterdir()} - logged_first}
    assert not done_first & started_second  # nothing finished before the kill was made again
    assert started_second | done_first == set(done)
    assert store.keys(bucket, "out/.batchstyle/checkpoints/") == []
    assert len(store.keys(bucket, "out/.batchstyle/done/")) == 8  # one record per image, no leftovers


_HOLD_LEASE = """
import sys, time
from batchstyle.batch.outdir import open_output_dir
lease = open_output_dir(sys.argv[1]).lock().acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_is_refused_while_the_first_holds_the_prefix(job):
    """(A stale lease of another machine is taken over: tests/test_object_stores.py, on every store.)"""
    bucket, store = job
    out = f"{store.scheme}://{bucket}/out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LEASE, out], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = batchstyle("run", f"{store.scheme}://{bucket}/jobs/manifest.csv", "-o", out, fake=FAKE)
        assert refused.returncode == 2
        assert f"{out} is in use by another batchstyle run (pid {holder.pid} on " in refused.stderr
        assert "Wait for it to finish or stop it, or use another output location." in refused.stderr
        assert store.keys(bucket, "out/.batchstyle/plan.json") == []  # nothing was started
        assert f"A run is in progress (pid {holder.pid} on " in batchstyle("status", out).stdout
    finally:
        holder.kill()
        holder.wait()


def test_a_missing_bucket_or_denied_access_is_one_line_and_starts_nothing(job, tmp_path):
    bucket, store = job
    manifest = f"{store.scheme}://{bucket}/jobs/manifest.csv"
    missing = batchstyle("run", manifest, "-o", f"{store.scheme}://no-such-bucket-anywhere/out", fake=FAKE)
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()  # said where the output directory is first used
    assert line.startswith("error: ") and f"{store.scheme}://no-such-bucket-anywhere/out" in line
    assert line.endswith(": the bucket does not exist; create it or correct the URL"), line
    denied = f"denied-{uuid.uuid4().hex[:10]}"
    store.make_bucket(denied)
    make_photo(40, 30, 1).save(tmp_path / "photo.png")
    make_photo(32, 32, 2).save(tmp_path / "style.png")
    (tmp_path / "m.csv").write_text("content,style\nphoto.png,style.png\n")  # only the output is in the store
    refused = batchstyle("run", tmp_path / "m.csv", "-o", f"{store.scheme}://{denied}/out", fake=FAKE,
                         env=store.denied(denied))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(f"error: cannot use {store.scheme}://{denied}/out as the output directory: "
                                     f"access denied; give the credentials this machine uses (environment, profile "
                                     f"or instance role) permission"), refused.stderr
    assert store.secret not in refused.stderr + missing.stderr
