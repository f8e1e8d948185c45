"""What the lease and the records rely on, on every object store the README names, each against a
real server of that store (moto's S3, Azurite, fake-gcs-server; tests/support/store_servers.py): create
only if absent and replace only if unchanged, as single requests; a written object's tag is the one
its listing gives; the lease keeps a second run out; a missing bucket and refused credentials are one
line each."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from batchstyle.batch.outdir import LeaseError, open_output_dir
from batchstyle.batch.outdir.object_stores import remote_folder
from batchstyle.batch.remote_files import StorageError
from support.store_servers import environment


@pytest.fixture
def bucket(store) -> str:
    name = f"cond-{uuid.uuid4().hex[:10]}"
    store.make_bucket(name)
    return name


def test_create_only_if_absent_and_replace_only_if_unchanged(store, bucket):
    folder = remote_folder(f"{store.scheme}://{bucket}/out")
    assert folder.conditional
    first = folder.create("lease.json", b"one")
    assert first and folder.create("lease.json", b"two") is None and store.get(bucket, "out/lease.json") == b"one"
    second = folder.replace("lease.json", b"two", first)
    assert second and second != first and store.get(bucket, "out/lease.json") == b"two"
    assert folder.replace("lease.json", b"three", first) is None  # a tag that is no longer the object's
    store.put(bucket, "out/lease.json", b"another run")  # changed behind this run's back
    assert folder.replace("lease.json", b"four", second) is None
    assert store.get(bucket, "out/lease.json") == b"another run"
    assert folder.replace("gone.json", b"x", second) is None and folder.read("gone.json") is None


def test_a_written_object_is_listed_with_the_tag_its_write_returned(store, bucket):
    folder = remote_folder(f"{store.scheme}://{bucket}/out")
    tag = folder.write("p0__style.png", b"image bytes")
    assert tag and folder.listing()["p0__style.png"].tag == tag
    assert folder.listing("p0__style.png") == {"p0__style.png": folder.listing()["p0__style.png"]}  # one file
    assert folder.write("p0__style.png", b"other bytes") != tag


def test_the_lease_keeps_a_second_run_out_until_it_is_released(store, bucket):
    out = f"{store.scheme}://{bucket}/out"
    first = open_output_dir(out).lock().acquire()
    try:
        with pytest.raises(LeaseError, match=rf"{out} is in use by another batchstyle run \(pid \d+ on "):
            open_output_dir(out).lock().acquire()
        first.renew()
        assert not first.lost
    finally:
        first.release()
    after = open_output_dir(out).lock().acquire()
    assert after.taken_over is None
    after.release()


def test_the_expired_lease_of_a_run_on_another_machine_is_taken_over_and_released_at_the_end(store, bucket):
    out = f"{store.scheme}://{bucket}/out"
    lease = {"owner": "x", "host": "lost-node", "pid": 4242, "started": time.time() - 600, "expires": time.time() - 1,
             "ttl": 120, "released": False}
    store.put(bucket, "out/.batchstyle/lease.json", json.dumps(lease).encode())
    taken = open_output_dir(out).lock().acquire()
    assert taken.taken_over["host"] == "lost-node" and taken.taken_over["pid"] == 4242
    assert json.loads(store.get(bucket, "out/.batchstyle/lease.json"))["host"] != "lost-node"
    taken.release()
    assert json.loads(store.get(bucket, "out/.batchstyle/lease.json"))["released"]


def test_a_missing_bucket_and_refused_credentials_are_one_line_each(store, bucket):
    with pytest.raises(StorageError) as err:
        open_output_dir(f"{store.scheme}://no-such-bucket-here/out").create()
    assert str(err.value) == f"{store.scheme}://no-such-bucket-here/out: the bucket does not exist; create it or " \
                             f"correct the URL"
    with environment(store.denied(bucket)), pytest.raises(StorageError) as err:
        open_output_dir(f"{store.scheme}://{bucket}/out").lock().acquire()
    assert f"{store.scheme}://{bucket}/out" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert ": access denied; give the credentials this machine uses" in str(err.value)
    assert store.secret not in str(err.value)
