"""The output directory: item ids, resume, records written after images, the lock."""

from __future__ import annotations

import json
import os
import signal

import pytest

from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import FailureRecord, HashCache, ItemRecord, LockError, OutputDir, open_output_dir
from batchstyle.batch.plan import item_id, make_plan
from batchstyle.engine.files import temp_name
from batchstyle.engine.settings import StyleSettings
from support.disk import fill
from support.photos import folder_job
from support.processes import hold_lock


@pytest.fixture
def job(tmp_path):
    return folder_job(tmp_path, "in", 3, (40, 30), 9, "m.csv")


def record_for(item, output_dir: OutputDir) -> ItemRecord:
    return ItemRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                      styles=[str(s) for s in item.styles], settings=item.settings.to_dict(),
                      weights="w")


def test_item_id_follows_input_bytes_settings_weights_and_output(job, photo):
    root, manifest = job
    items = read_manifest(manifest)
    hashes = HashCache(None)
    base = item_id(items[0], hashes, "w1")
    assert item_id(read_manifest(manifest)[0], HashCache(None), "w1") == base  # same inputs: same id
    assert item_id(items[0], hashes, "w2") != base
    changed = read_manifest(manifest, defaults=StyleSettings(content_weight=1.0))[0]
    assert item_id(changed, hashes, "w1") != base
    image = photo(40, 30, 0)
    image.putpixel((3, 4), (255, 0, 0))  # one changed pixel
    image.save(root / "in" / "p0.png")
    os.utime(root / "in" / "p0.png", ns=(1, 1))
    assert item_id(read_manifest(manifest)[0], HashCache(None), "w1") != base


def test_hash_cache_rereads_only_changed_files(job, monkeypatch):
    root, manifest = job
    cache_file = root / "hashes.json"
    cache = HashCache(cache_file)
    first = cache.digest(root / "style.png")
    cache.save()
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    again = HashCache(cache_file)
    assert again.digest(root / "style.png") == first
    assert not any(p.endswith("style.png") for p in opened)
    (root / "style.png").write_bytes((root / "in" / "p1.png").read_bytes())
    assert again.digest(root / "style.png") != first


def test_plan_skips_done_items_only_while_their_image_exists(job):
    root, manifest = job
    out = open_output_dir(root / "out")
    plan = make_plan(read_manifest(manifest), out, "w")
    assert len(plan.todo) == 3 and not plan.done
    item = plan.todo[0]
    out.write_result(record_for(item, out), b"image bytes")
    plan = make_plan(read_manifest(manifest), out, "w")
    assert [w.id for w in plan.done] == [item.id] and len(plan.todo) == 2
    (out.root / item.output).unlink()  # the user deleted the image: make it again
    assert len(make_plan(read_manifest(manifest), out, "w").todo) == 3
    out.write_result(record_for(item, out), b"image bytes")
    forced = make_plan(read_manifest(manifest), out, "w", force=True)
    # --force redoes everything, but a record goes only when its new image replaces it
    assert len(forced.todo) == 3 and (out.done_dir / f"{item.id}.json").exists()
    entries = json.loads((out.meta / "plan.json").read_text())["items"]
    assert [e["output"] for e in entries] == ["p0__style.png", "p1__style.png", "p2__style.png"]


def test_result_clears_failure_and_checkpoint_and_writes_image_before_record(job, monkeypatch):
    root, manifest = job
    out = open_output_dir(root / "out")
    item = make_plan(read_manifest(manifest), out, "w").todo[0]
    out.write_failure(FailureRecord(item.id, item.output, 2, "c", "boom", "error", 1, 0.0))
    out.write_checkpoint(item.id, b"state")
    assert out.checkpoint(item.id) == b"state" and item.id in out.failures()
    order = []
    import batchstyle.batch.outdir.local as local

    real = local.atomic_write
    monkeypatch.setattr(local, "atomic_write", lambda path, data: (order.append(path.name), real(path, data)))
    out.write_result(record_for(item, out), b"png")
    assert order == [item.output, f"{item.id}.json"]
    assert out.checkpoint(item.id) is None and item.id not in out.failures()
    assert out.records()[item.id].output == item.output


def test_unreadable_records_count_as_not_done(job):
    root, manifest = job
    out = open_output_dir(root / "out")
    item = make_plan(read_manifest(manifest), out, "w").todo[0]
    out.write_result(record_for(item, out), b"png")
    (out.done_dir / f"{item.id}.json").write_text("{ half a record")
    assert out.done_ids() == set()


def real_record_and_failure(job):
    """An output directory with one done item (the first) and a failure of the second, both real."""
    root, manifest = job
    out = open_output_dir(root / "out")
    done, failed, _ = make_plan(read_manifest(manifest), out, "w").todo
    out.write_result(record_for(done, out), b"png")
    out.write_failure(FailureRecord(failed.id, failed.output, 2, "c", "boom", "error", 1, 0.0))
    return out, done, failed


WRONG_SHAPES = {"a list": b"[]", "null": b"null", "no id": b'{"output": 3}', "cut short": None,
                "output a number": {"output": 3}, "output outside": {"output": "../m.csv"},
                "a count in words": {"attempts": "one"}, "a number that is true": {"line": True},
                "another id": {"id": "0" * 24}}


@pytest.mark.parametrize("shape", WRONG_SHAPES, ids=list(WRONG_SHAPES))
def test_a_record_of_the_wrong_shape_counts_as_absent_with_one_note(job, shape):
    root, manifest = job
    out, done, failed = real_record_and_failure(job)
    for path in (out.done_dir / f"{done.id}.json", out.failed_dir / f"{failed.id}.json"):
        real, wrong = path.read_bytes(), WRONG_SHAPES[shape]
        path.write_bytes(real[:len(real) // 2] if wrong is None else wrong if isinstance(wrong, bytes)
                         else json.dumps({**json.loads(real), **wrong}).encode())
    again = open_output_dir(root / "out")
    plan = make_plan(read_manifest(manifest), again, "w")  # planning, as every rerun does
    assert done.id in {i.id for i in plan.todo} and not plan.done  # its image is made again
    assert again.failures() == {} and again.records() == {}
    assert list(again.unreadable) == [str(out.done_dir / f"{done.id}.json"), str(out.failed_dir / f"{failed.id}.json")]
    assert all(why for why in again.unreadable.values())


def test_what_is_wrong_with_a_record_is_said_in_words(job):
    root, _ = job
    out, done, _ = real_record_and_failure(job)
    path = out.done_dir / f"{done.id}.json"
    for data, why in ((b"[]", "a list where a record (a JSON object) belongs"), (b'{"id": "', "not valid JSON"),
                      (json.dumps({**json.loads(path.read_bytes()), "output": 3}).encode(),
                       "'output' is a number where a string belongs")):
        path.write_bytes(data)
        again = open_output_dir(root / "out")
        again.records()
        assert why in again.unreadable[str(path)]


def test_other_files_of_the_wrong_shape_are_absent_too(job):
    root, manifest = job
    out = open_output_dir(root / "out")
    make_plan(read_manifest(manifest), out, "w")
    for name in ("plan.json", "hashes.json", "headers.json", "lock"):
        (out.meta / name).write_bytes(b"[]")
    again = open_output_dir(root / "out")
    assert again.plan() == [] and list(again.unreadable) == [str(out.meta / "plan.json")]
    assert again.lock().holder() is None and again.headers.get("etag") is None
    assert len(make_plan(read_manifest(manifest), again, "w").todo) == 3  # hashes made again
    assert len(again.plan()) == 3
    from batchstyle.web.thumbs import Thumbnails

    for index in (b"[]", b'{"a": 3, "b": [1, 2, [3], 4, 5]}'):
        again.write_file(".batchstyle/thumbs/index.json", index)
        assert Thumbnails(again, ".batchstyle/thumbs").index == {}  # no index: thumbnails are made again


def test_planning_on_a_full_disk_notes_what_it_cannot_save_and_locks(job, small_disk):
    root, manifest = job
    out = open_output_dir(small_disk / "out")
    out.create()
    fill(small_disk, 0)
    with out.lock():
        plan = make_plan(read_manifest(manifest), out, "w")
    assert len(plan.todo) == 3
    assert [note.split(" (")[0] for note in plan.notes] == ["cannot save the input hashes", "cannot save the plan"]
    assert all(note.endswith(": No space left on device") for note in plan.notes)
    assert not [p for p in out.root.rglob("*") if p.name.endswith(".tmp")]


def test_temporary_files_of_a_crashed_run_are_removed(tmp_path):
    out = open_output_dir(tmp_path / "out")
    out.create()
    (out.root / "sub").mkdir()
    leftovers = [out.root / ".a.png.1234abcd.tmp", out.root / "sub" / ".b.tif.99.tmp", out.done_dir / ".x.json.1.tmp",
                 out.root / "sub" / temp_name()]  # names of earlier versions, and the one atomic_write uses now
    for path in leftovers:
        path.write_bytes(b"half")
    keep = out.root / "keep.png"
    keep.write_bytes(b"whole")
    assert out.remove_temp_files() == 4
    assert not any(p.exists() for p in leftovers) and keep.exists()


def test_a_live_run_holds_the_lock(tmp_path):
    proc = hold_lock(tmp_path / "out")
    try:
        assert open_output_dir(tmp_path / "out").lock().held_elsewhere()
        with pytest.raises(LockError, match=rf"in use by another batchstyle run \(pid {proc.pid} on "):
            open_output_dir(tmp_path / "out").lock().acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    proc = hold_lock(tmp_path / "out")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not open_output_dir(tmp_path / "out").lock().held_elsewhere()
    lock = open_output_dir(tmp_path / "out").lock().acquire()
    try:
        assert lock.taken_over["pid"] == proc.pid
        assert json.loads((tmp_path / "out" / ".batchstyle" / "lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    again = open_output_dir(tmp_path / "out").lock().acquire()  # a clean release is no crash
    assert again.taken_over is None
    again.release()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    first = open_output_dir(tmp_path).lock().acquire()
    try:
        with pytest.raises(LockError):
            open_output_dir(tmp_path).lock().acquire()
    finally:
        first.release()


def test_a_local_and_a_remote_output_directory_offer_the_same_methods(tmp_path):
    """What the rest of batchstyle asks of an output directory (``OutputDir``), each of the two answers,
    with the same parameters."""
    import inspect

    from batchstyle.batch.outdir import LocalOutputDir, RemoteOutputDir

    local, remote = open_output_dir(tmp_path / "out"), open_output_dir("s3://some-bucket/out", lease_ttl=5.0)
    assert type(local) is LocalOutputDir and type(remote) is RemoteOutputDir and remote.lease_ttl == 5.0
    assert type(open_output_dir(f"file://{tmp_path}/out")) is LocalOutputDir
    members = [name for name in vars(OutputDir) if not name.startswith("_")] + list(OutputDir.__annotations__)
    for out in (local, remote):
        assert not [name for name in members if not hasattr(out, name)], type(out).__name__
        for name, wanted in vars(OutputDir).items():
            if inspect.isfunction(wanted) and not name.startswith("_"):
                assert list(inspect.signature(getattr(out, name)).parameters) == \
                    list(inspect.signature(wanted).parameters)[1:], f"{type(out).__name__}.{name}"
