"""``batchstyle run`` and ``status`` with the manifest, the inputs and the output directory in a
bucket, as a user runs them: real processes, real Ray, a real S3 API (moto's server, one for the
module, reached through the standard AWS environment variables), the fake backend."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from PIL import Image

from support.moto_s3 import bucket_with_a_job
from support.photos import make_photo
from support.processes import batchstyle, kill_session, start, wait_for

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytestmark = pytest.mark.ray
FAKE = "iters=8,sleep=0.03,scales=2"


@pytest.fixture
def job(s3, tmp_path):
    """A bucket with ``jobs/manifest.csv`` over ``jobs/photos/`` (8 photos) and ``jobs/style.png``."""
    client = s3.client()
    bucket = bucket_with_a_job(client, f"night-{uuid.uuid4().hex[:10]}", 8, (48, 36), "jobs/manifest.csv")
    return bucket, client


def keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def records(client, bucket: str) -> dict[str, dict]:
    found = {}
    for key in keys(client, bucket, "out/.batchstyle/done/"):
        record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        found[record["id"]] = record
    return found


def assert_gallery_in_bucket(client, bucket: str) -> None:
    """The gallery is in the output prefix: the page, its data naming every image with its
    thumbnail, and the thumbnails (8 photos, 8 results, one style)."""
    stored = keys(client, bucket, "out/")
    assert "out/index.html" in stored
    summary = client.get_object(Bucket=bucket, Key="out/.batchstyle/gallery/summary.js")["Body"].read().decode()
    assert '"total":8' in summary and '"done":8' in summary
    shard = client.get_object(Bucket=bucket, Key="out/.batchstyle/gallery/shard-00000.js")["Body"].read().decode()
    rows = json.loads(shard[shard.index(".shards[0]=") + len(".shards[0]="):].rstrip().rstrip(";"))
    assert sorted(row["output"] for row in rows) == [f"p{i}__style.png" for i in range(8)]
    assert all(row.get("thumb") and row.get("content_thumb") for row in rows)
    thumbs = [k for k in stored if k.startswith("out/.batchstyle/thumbs/") and k.endswith(".jpg")]
    assert len(thumbs) == 8 + 8 + 1


def test_a_batch_in_a_bucket_runs_into_the_bucket_and_status_reads_it(job):
    bucket, client = job
    args = ["run", f"s3://{bucket}/jobs/manifest.csv", "-o", f"s3://{bucket}/out/", "--plain"]
    first = batchstyle(*args, fake=FAKE)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"8 to make, into s3://{bucket}/out" in first.stdout
    done = records(client, bucket)
    assert {r["output"] for r in done.values()} == {f"p{i}__style.png" for i in range(8)}
    for record in done.values():
        assert record["content"].startswith(f"s3://{bucket}/jobs/photos/") and record["output_tag"]
        body = client.get_object(Bucket=bucket, Key=f"out/{record['output']}")["Body"].read()
        assert len(body) == record["output_bytes"]
        Image.open(io.BytesIO(body)).load()
    status = batchstyle("status", f"s3://{bucket}/out")
    assert status.returncode == 0 and "8 image(s) in the latest run: 8 done, 0 failed, 0 pending" in status.stdout
    assert_gallery_in_bucket(client, bucket)
    client.delete_object(Bucket=bucket, Key="out/index.html")
    rebuilt = batchstyle("status", f"s3://{bucket}/out", "--html")
    assert rebuilt.returncode == 0 and f"Wrote s3://{bucket}/out/index.html (8 image(s))" in rebuilt.stdout
    assert_gallery_in_bucket(client, bucket)
    again = batchstyle(*args, fake=FAKE)
    assert again.returncode == 0 and "8 already done (skipped), 0 to make" in again.stdout
    everything = first.stdout + first.stderr + status.stdout + again.stdout + again.stderr
    assert "testing-secret" not in everything


def test_a_killed_driver_then_a_rerun_does_every_image_exactly_once(job, tmp_path):
    bucket, client = job
    log = tmp_path / "log"
    log.mkdir()
    args, fake = ["run", f"s3://{bucket}/jobs/manifest.csv", "-o", f"s3://{bucket}/out", "--plain"], f"{FAKE},log={log}"
    proc = start(*args, fake=fake)
    try:
        wait_for(lambda: len(records(client, bucket)) >= 2, 120, "two finished images")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        kill_session(proc)
    done_first = set(records(client, bucket))
    assert 2 <= len(done_first) < 8
    logged_first = {p.name for p in log.iterdir()}
    second = batchstyle(*args, fake=fake)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Taking over s3://{bucket}/out from a run that ended without cleaning up (pid {proc.pid}" in second.stdout
    assert f"{len(done_first)} already done (skipped)" in second.stdout
    done = records(client, bucket)
    assert len(done) == 8 and {r["output"] for r in done.values()} == {f"p{i}__style.png" for i in range(8)}
    started_second = {name.split(".")[0] for name in {p.name for p in log.iterdir()} - logged_first}
    assert not done_first & started_second  # nothing finished before the kill was made again
    assert started_second | done_first == set(done)
    assert keys(client, bucket, "out/.batchstyle/checkpoints/") == []
    assert len(keys(client, bucket, "out/.batchstyle/done/")) == 8  # one record per image, no leftovers


_HOLD_LEASE = """
import sys, time
from batchstyle.batch.store import OutputDir
lease = OutputDir(sys.argv[1]).lock().acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_is_refused_while_the_first_holds_the_prefix_and_a_stale_lease_is_taken_over(job):
    bucket, client = job
    out = f"s3://{bucket}/out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LEASE, out], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = batchstyle("run", f"s3://{bucket}/jobs/manifest.csv", "-o", out, fake=FAKE)
        assert refused.returncode == 2
        assert f"{out} is in use by another batchstyle run (pid {holder.pid} on " in refused.stderr
        assert "Wait for it to finish or stop it, or use another output location." in refused.stderr
        assert keys(client, bucket, "out/.batchstyle/plan.json") == []  # nothing was started
        assert f"A run is in progress (pid {holder.pid} on " in batchstyle("status", out).stdout
    finally:
        holder.kill()
        holder.wait()
    # a run on another machine that crashed: its lease is taken over once it has expired
    lease = {"owner": "x", "host": "lost-node", "pid": 4242, "started": time.time() - 600, "expires": time.time() - 1,
             "ttl": 120, "released": False}
    client.put_object(Bucket=bucket, Key="out/.batchstyle/lease.json", Body=json.dumps(lease).encode())
    taken = batchstyle("run", f"s3://{bucket}/jobs/manifest.csv", "-o", out, "--plain", fake=FAKE)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert f"Taking over {out} from a run that ended without cleaning up (pid 4242 on lost-node)" in taken.stdout
    assert len(records(client, bucket)) == 8
    assert json.loads(client.get_object(Bucket=bucket, Key="out/.batchstyle/lease.json")["Body"].read())["released"]


def test_a_missing_bucket_or_denied_access_is_one_line_and_starts_nothing(job):
    bucket, client = job
    manifest = f"s3://{bucket}/jobs/manifest.csv"
    missing = batchstyle("run", manifest, "-o", "s3://no-such-bucket-anywhere/out", fake=FAKE)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: s3://no-such-bucket-anywhere/out: the bucket does not exist; create it "
                                      "or correct the URL")
    denied = f"denied-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=denied)
    client.put_bucket_policy(Bucket=denied, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{denied}", f"arn:aws:s3:::{denied}/*"]}]}))
    refused = batchstyle("run", manifest, "-o", f"s3://{denied}/out", fake=FAKE)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith(f"error: s3://{denied}/out: access denied; give the credentials this machine "
                                     f"uses (environment, profile or instance role) permission"), refused.stderr
    assert "testing-secret" not in refused.stderr + missing.stderr
