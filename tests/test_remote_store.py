"""Manifests, inputs and output directories in object storage, against a real S3 API (moto's
server, one for the module): planning from listings, records written after images that never vouch
for another file, the lease that keeps two runs apart, and one-line errors without credentials."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from batchstyle.batch.manifest import ManifestError, read_manifest
from batchstyle.batch.outdir import ItemRecord, open_output_dir
from batchstyle.batch.outdir.lease import Lease, LeaseError
from batchstyle.batch.outdir.object_stores import remote_folder
from batchstyle.batch.plan import make_plan
from batchstyle.batch.remote_files import RemotePath, StorageError
from support.moto_s3 import bucket_with_a_job
from support.photos import make_photo

pytest.importorskip("s3fs")
pytest.importorskip("moto")


@pytest.fixture
def bucket(s3, tmp_path):
    """A fresh bucket holding ``jobs/photos/p0..p3.png``, ``jobs/style.png`` and ``jobs/m.csv`` (a folder row)."""
    client = s3.client()
    name = bucket_with_a_job(client, f"b-{uuid.uuid4().hex[:12]}", 4, (40, 30), "jobs/m.csv")
    return name, client


def record_for(item) -> ItemRecord:
    return ItemRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                      styles=[str(s) for s in item.styles], settings=item.settings.to_dict(), weights="w")


def test_a_remote_manifest_expands_its_folder_relative_to_itself_and_plans_from_listings(bucket, monkeypatch):
    name, _ = bucket
    out = open_output_dir(f"s3://{name}/out")
    items = read_manifest(f"s3://{name}/jobs/m.csv", headers=out.headers)
    assert [str(i.content) for i in items] == [f"s3://{name}/jobs/photos/p{i}.png" for i in range(4)]
    assert items[0].styles == (RemotePath(f"s3://{name}/jobs/style.png"),) and items[0].content_size == (40, 30)
    plan = make_plan(items, out, "w")
    assert len(plan.todo) == 4
    # a resumed run: the headers come from the output location's cache, no image is read again
    import batchstyle.batch.remote_inputs as remote_inputs

    monkeypatch.setattr(remote_inputs.RemoteInputs, "_read_headers", lambda self, paths: pytest.fail(str(paths)))
    again = make_plan(read_manifest(f"s3://{name}/jobs/m.csv", headers=open_output_dir(f"s3://{name}/out").headers),
                      open_output_dir(f"s3://{name}/out"), "w")
    assert [i.id for i in again.todo] == [i.id for i in plan.todo]  # ids from ETags: stable


def test_a_record_follows_its_image_and_vouches_for_no_other_file(bucket):
    name, client = bucket
    out = open_output_dir(f"s3://{name}/out")
    plan = make_plan(read_manifest(f"s3://{name}/jobs/m.csv", headers=out.headers), out, "w")
    first, second = plan.todo[:2]
    out.write_result(record_for(first), b"image bytes")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name, Prefix="out/")["Contents"]]
    assert f"out/{first.output}" in keys and any(k.startswith(f"out/.batchstyle/done/{first.id}.") for k in keys)
    assert make_plan(read_manifest(f"s3://{name}/jobs/m.csv"), open_output_dir(f"s3://{name}/out"), "w").done == [first]
    client.put_object(Bucket=name, Key=f"out/{first.output}", Body=b"another program wrote this")
    replan = make_plan(read_manifest(f"s3://{name}/jobs/m.csv"), open_output_dir(f"s3://{name}/out"), "w")
    assert replan.done == []  # the record no longer describes the file there: redo it
    out = open_output_dir(f"s3://{name}/out")
    out.write_result(record_for(second), b"second image")
    record = out.records()[second.id]
    assert record.output_tag.startswith("etag:") and record.output_bytes == len(b"second image")
    assert out.done_ids(outputs={second.id: second.output}) == {second.id}


def test_changing_a_remote_input_changes_its_id(bucket, tmp_path):
    name, client = bucket
    before = {i.output: i.id for i in make_plan(read_manifest(f"s3://{name}/jobs/m.csv"),
                                                open_output_dir(f"s3://{name}/out"), "w").all}
    image = make_photo(40, 30, 0)
    image.putpixel((1, 1), (255, 0, 0))
    image.save(tmp_path / "changed.png")
    client.put_object(Bucket=name, Key="jobs/photos/p0.png", Body=(tmp_path / "changed.png").read_bytes())
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a new run: no listing remembered
    after = {i.output: i.id for i in make_plan(read_manifest(f"s3://{name}/jobs/m.csv"),
                                               open_output_dir(f"s3://{name}/out"), "w").all}
    assert after["p0__style.png"] != before["p0__style.png"] and after["p1__style.png"] == before["p1__style.png"]


def test_a_second_run_is_refused_while_the_lease_is_live(bucket):
    name, _ = bucket
    first = open_output_dir(f"s3://{name}/out").lock().acquire()
    try:
        second = open_output_dir(f"s3://{name}/out").lock()
        assert second.held_elsewhere()
        with pytest.raises(LeaseError, match=rf"s3://{name}/out is in use by another batchstyle run \(pid \d+ on "):
            second.acquire()
    finally:
        first.release()
    after = open_output_dir(f"s3://{name}/out").lock().acquire()  # a released lease is free at once
    assert after.taken_over is None
    after.release()


def test_a_stale_lease_is_taken_over_and_its_run_stops_writing(bucket):
    name, _ = bucket
    crashed_out = open_output_dir(f"s3://{name}/out", lease_ttl=3.0)
    crashed = crashed_out.lock().acquire()
    crashed.abandon()  # stops renewing, as a frozen driver (or one on a lost machine) does
    with pytest.raises(LeaseError):  # its process lives: only expiry frees the lease
        Lease(remote_folder(f"s3://{name}/out"), ttl=3.0).acquire()
    time.sleep(max(0.0, crashed.expires - time.time()) + 0.2)
    successor = open_output_dir(f"s3://{name}/out").lock().acquire()
    try:
        assert successor.taken_over["pid"] == os.getpid() and successor.taken_over["owner"] == crashed.owner
        crashed.renew()  # the frozen driver wakes up
        assert crashed.lost and "took over" in crashed.lost
        with pytest.raises(StorageError, match="took over"):
            crashed_out.write_file("x.txt", b"late")
    finally:
        successor.release()


def test_missing_bucket_denied_access_and_missing_files_are_one_line_each(s3, bucket):
    name, client = bucket
    with pytest.raises(ManifestError) as err:
        read_manifest("s3://no-such-bucket-here/jobs/m.csv")
    assert str(err.value) == ("s3://no-such-bucket-here/jobs/m.csv: the bucket does not exist; create it or correct "
                              "the URL")
    with pytest.raises(ManifestError, match=r"m2.csv: the manifest does not exist"):
        read_manifest(f"s3://{name}/jobs/m2.csv")
    with pytest.raises(StorageError, match="the bucket does not exist"):
        open_output_dir("s3://no-such-bucket-here/out").create()
    client.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}]}))
    with pytest.raises(ManifestError) as err:
        read_manifest(f"s3://{name}/jobs/m.csv")
    assert str(err.value).startswith(f"s3://{name}/jobs/m.csv: access denied; give the credentials this machine uses")
    with pytest.raises(StorageError, match="access denied"):
        open_output_dir(f"s3://{name}/out").lock().acquire()


def test_urls_are_shown_without_credentials(s3):
    secret = "https://user:pa55word@127.0.0.1:9/jobs/m.csv?X-Amz-Signature=s3cr3t"
    with pytest.raises(ManifestError) as err:
        read_manifest(secret)
    text = str(err.value)
    assert text.startswith("https://127.0.0.1:9/jobs/m.csv: ") and "pa55word" not in text and "s3cr3t" not in text
    assert str(RemotePath(secret)) == "https://127.0.0.1:9/jobs/m.csv" and RemotePath(secret).name == "m.csv"


def test_a_protocol_without_its_extra_names_the_extra():
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    with pytest.raises(ManifestError, match=r'gs:// needs an optional dependency: pip install "batchstyle\[gcs\]"'):
        read_manifest("gs://bucket/m.csv")


def test_an_image_whose_header_is_longer_than_the_range_read_is_sized_from_the_whole_file(bucket, tmp_path):
    name, client = bucket
    from batchstyle.batch.remote_inputs import HEADER_BYTES

    make_photo(56, 40, 3).save(tmp_path / "big.jpg", icc_profile=bytes(3 * HEADER_BYTES))  # before the frame header
    assert (tmp_path / "big.jpg").stat().st_size > 3 * HEADER_BYTES
    client.put_object(Bucket=name, Key="jobs/big/big.jpg", Body=(tmp_path / "big.jpg").read_bytes())
    client.put_object(Bucket=name, Key="jobs/big.csv", Body=b"content,style\nbig/big.jpg,style.png\n")
    (item,) = read_manifest(f"s3://{name}/jobs/big.csv")
    assert item.content_size == (56, 40) and not item.problem


def test_a_local_manifest_can_name_a_glob_and_a_style_in_a_bucket(bucket, tmp_path):
    name, client = bucket
    client.put_object(Bucket=name, Key="jobs/photos/notes.txt", Body=b"not an image")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"content,style,output\ns3://{name}/jobs/photos/p[12].png,s3://{name}/jobs/style.png,"
                        f"{{content}}.png\n")
    items = read_manifest(manifest)
    assert [i.output for i in items] == ["p1.png", "p2.png"]
    assert all(i.content.tag.startswith("etag:") and i.styles[0].tag.startswith("etag:") for i in items)
    manifest.write_text(f"content,style\ns3://{name}/jobs/photos/*.jpg,s3://{name}/jobs/style.png\n")
    assert problems_of(manifest) == [f"{manifest}:2: content pattern 's3://{name}/jobs/photos/*.jpg' matches no image "
                                     f"(.jpg, .jpeg, .png, .webp, .tif, .tiff, .bmp, .gif)"]


def problems_of(path) -> list[str]:
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    return str(err.value).splitlines()


@pytest.fixture(scope="module")
def ray_cpu():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.ray
def test_a_run_whose_lease_is_taken_over_stops_at_once_and_writes_nothing_more(bucket, ray_cpu):
    from batchstyle.batch.scheduler import Scheduler
    from batchstyle.batch.state import BatchOptions
    from support.display import RecordingDisplay
    from support.fake_backend import Fake

    name, client = bucket
    out = open_output_dir(f"s3://{name}/out", lease_ttl=2.0)  # renewed every 0.5 s
    lease = out.lock().acquire()
    plan = make_plan(read_manifest(f"s3://{name}/jobs/m.csv", headers=out.headers), out, "fake")

    def take_over(state) -> None:  # once the first image is done, another run writes its own lease
        if state.done and not taken:
            other = {"owner": "other", "host": "other-host", "pid": 77, "started": 0, "expires": time.time() + 99}
            taken.append(client.put_object(Bucket=name, Key="out/.batchstyle/lease.json", Body=json.dumps(other)))

    taken: list = []
    options = BatchOptions(backend=Fake("iters=40,sleep=0.05,scales=2"), group_size=1, workers=1)
    scheduler = Scheduler(plan.todo, 0, out, None, "fake", options, RecordingDisplay(take_over))
    with pytest.raises(RuntimeError, match=rf"another batchstyle run \(pid 77 on other-host\) took over s3://{name}/out; "
                                           r"this run stops\."):
        scheduler.run()
    lease.release()
    assert 1 <= len(open_output_dir(f"s3://{name}/out").done_ids()) < 4  # it stopped before making the rest
    assert json.loads(client.get_object(Bucket=name, Key="out/.batchstyle/lease.json")["Body"].read())["owner"] == "other"


def test_inputs_over_http_are_sized_from_their_headers_and_identified_by_their_validators(tmp_path):
    pytest.importorskip("aiohttp")
    import functools
    import http.server
    import threading

    (tmp_path / "site").mkdir()
    make_photo(44, 33, 1).save(tmp_path / "site" / "photo.png")
    make_photo(32, 32, 2).save(tmp_path / "site" / "style.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = f"http://127.0.0.1:{server.server_address[1]}"
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"content,style\n{site}/photo.png,{site}/style.png\n{site}/gone.png,{site}/style.png\n")
        assert problems_of(manifest) == [f"{manifest}:3: content image '{site}/gone.png' does not exist"]
        manifest.write_text(f"content,style\n{site}/photo.png,{site}/style.png\n")
        (item,) = read_manifest(manifest)
        assert item.content_size == (44, 33) and item.content.tag and item.output == "photo__style.png"
        assert item.content.read_bytes() == (tmp_path / "site" / "photo.png").read_bytes()
    finally:
        server.shutdown()
