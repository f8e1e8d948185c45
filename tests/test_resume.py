"""Resuming after edits: whatever order a row's settings are changed in, the file on disk is the
image of the current settings and nothing is redone that did not change. And a write that fails
fails its image only. Real Ray (one instance for the module), the fake backend."""

from __future__ import annotations

import hashlib
import os

import pytest

from batchstyle.batch.make import BatchError, BatchObserver, BatchRequest, make_batch
from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import OutputDir, open_output_dir
from batchstyle.batch.plan import make_plan
from batchstyle.batch.scheduler import Scheduler
from batchstyle.batch.state import BatchOptions
from support.display import RecordingDisplay
from support.disk import fill
from support.fake_backend import Fake
from support.photos import folder_job
from support.processes import hold_lock

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cpu():
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def job(tmp_path, photo):
    photo(40, 30, 1).save(tmp_path / "a.png")
    photo(32, 32, 2).save(tmp_path / "s1.png")
    photo(32, 32, 3).save(tmp_path / "s2.png")
    (tmp_path / "log").mkdir()
    return tmp_path


def run_once(root, weights: str, force: bool = False, rows: str | None = None):
    """Write the manifest, plan and run it; the plan and the ids the fake started this time."""
    manifest = root / "m.csv"
    manifest.write_text(rows or f"content,style,style_weights,output\na.png,s1.png;s2.png,{weights},blend.png\n")
    out = open_output_dir(root / "out")
    plan = make_plan(read_manifest(manifest), out, "fake", force=force)
    before = set(os.listdir(root / "log"))
    options = BatchOptions(backend=Fake(f"iters=2,scales=2,log={root / 'log'}"), group_size=1, force=force)
    state = Scheduler(plan.todo, len(plan.done), out, None, "fake", options, RecordingDisplay()).run()
    started = {name.split(".")[0] for name in set(os.listdir(root / "log")) - before}
    return plan, state, started


def file_is_the_image_of(out: OutputDir, item_id: str) -> bool:
    record = out.records()[item_id]
    return hashlib.sha256((out.root / record.output).read_bytes()).hexdigest() == record.output_sha256


@pytest.mark.parametrize("edits", [["2;1", "1;1", "2;1"], ["2;1", "1;1", "1;1", "2;1"],
                                   ["2;1", "1;1", "3;1", "1;1", "2;1"]], ids=["ABA", "ABBA", "ABCBA"])
def test_every_order_of_edits_ends_with_the_right_image_and_redoes_only_what_changed(ray_cpu, job, edits):
    previous = None
    for weights in edits:
        plan, state, started = run_once(job, weights)
        (item,) = plan.all
        assert state.failed == 0
        assert file_is_the_image_of(open_output_dir(job / "out"), item.id), weights
        assert started == ({item.id} if weights != previous else set()), (weights, previous)
        previous = weights


def test_force_redoes_everything_but_keeps_the_records_until_replaced(ray_cpu, job):
    plan, _, _ = run_once(job, "2;1")
    (item,) = plan.all
    out = open_output_dir(job / "out")
    forced_plan = make_plan(read_manifest(job / "m.csv"), out, "fake", force=True)
    assert forced_plan.todo == forced_plan.all and item.id in out.done_ids()  # planning forgets nothing
    _, state, started = run_once(job, "2;1", force=True)
    assert started == {item.id} and state.done == 1 and file_is_the_image_of(out, item.id)


def test_a_file_where_an_output_folder_should_be_fails_that_image_only(ray_cpu, job, photo):
    photo(40, 30, 4).save(job / "b.png")
    (job / "out").mkdir()
    (job / "out" / "blend").write_text("I am a file, not a folder")
    rows = "content,style,output\na.png,s1.png,blend/{content}.png\nb.png,s1.png,fine/{content}.png\n"
    plan, state, _ = run_once(job, "", rows=rows)
    assert state.done == 1 and state.failed == 1
    (failure,) = open_output_dir(job / "out").failures().values()
    assert failure.kind == "write" and failure.output == "blend/a.png"
    assert failure.error.startswith("cannot write blend/a.png: a file stands where a folder of its path should be")
    assert (job / "out" / "fine" / "b.png").is_file()
    assert (job / "out" / "blend").read_text() == "I am a file, not a folder"  # nothing of the user's is lost


def test_an_output_directory_that_disappears_stops_the_run_with_one_line(ray_cpu, job, photo):
    import shutil

    rows = "content,style,output\na.png,s1.png,{content}.png\n"
    manifest = job / "m.csv"
    manifest.write_text(rows)
    out = open_output_dir(job / "out")
    plan = make_plan(read_manifest(manifest), out, "fake")
    shutil.rmtree(job / "out")
    scheduler = Scheduler(plan.todo, 0, out, None, "fake", BatchOptions(backend=Fake("iters=2"), group_size=1),
                          RecordingDisplay())
    with pytest.raises(RuntimeError, match=f"the output directory {job / 'out'} is gone"):
        scheduler.run()


def test_a_full_disk_fails_the_images_it_stops_and_the_batch_goes_on(ray_cpu, job, photo, small_disk):
    for i in range(8):
        photo(64, 48, 10 + i).save(job / f"p{i}.png")
    manifest = job / "m.csv"
    manifest.write_text("content,style,output\n" + "".join(f"p{i}.png,s1.png,{{content}}.png\n" for i in range(8)))
    out = open_output_dir(small_disk / "out")
    plan = make_plan(read_manifest(manifest), out, "fake")
    filler = fill(small_disk, 6 * 4096)  # room for an image or two, their records and a few failures
    display = RecordingDisplay()
    options = BatchOptions(backend=Fake("iters=2,scales=1"), group_size=1)
    state = Scheduler(plan.todo, 0, out, None, "fake", options, display).run()  # no error: the batch ran to its end
    assert state.failed >= 1 and state.done + state.failed == 8 and len(state.failures) == state.failed
    assert {f.kind for f in state.failures} == {"write"}
    assert all(f.error == f"cannot write {f.output}: the disk is full" for f in state.failures)
    unrecorded = [f for f in state.failures if f.id not in out.failures()]
    assert unrecorded  # the disk was full even for the failure records: each is said, none stops the run
    for failure in unrecorded:
        assert any(f"the failure of {failure.output} cannot be recorded" in line and "the disk is full" in line
                   for line in display.lines)
    # nothing half-written is vouched for: each record there is whole and its image is the one it describes
    assert set(out.done_ids()) == set(out.records()) and len(out.records()) == state.done
    assert all(file_is_the_image_of(out, item_id) for item_id in out.records())
    assert not out.unreadable and not [p for p in out.root.rglob("*") if p.name.endswith(".tmp")]
    filler.unlink()  # space again: the next run makes exactly the missing images
    again = make_plan(read_manifest(manifest), out, "fake")
    assert len(again.done) == state.done
    state = Scheduler(again.todo, len(again.done), out, None, "fake", options, RecordingDisplay()).run()
    assert state.failed == 0 and len(out.done_ids()) == 8 and out.failures() == {}


def test_an_output_name_of_250_bytes_is_written(ray_cpu, job):
    name = "n" * 246 + ".png"
    plan, state, _ = run_once(job, "", rows=f"content,style,output\na.png,s1.png,{name}\n")
    assert state.done == 1 and state.failed == 0
    assert (job / "out" / name).is_file() and file_is_the_image_of(open_output_dir(job / "out"), plan.all[0].id)


class Heard(BatchObserver):
    """What a library caller of make_batch hears, in order."""

    def __init__(self):
        self.heard: list[str] = []

    def opened(self, out):
        self.heard.append("opened")

    def planned(self, out, plan):
        self.heard.append(f"planned {len(plan.done)} done {len(plan.todo)} to do")

    def scheduling(self, plan):
        self.heard.append("scheduling")
        return super().scheduling(plan)

    def stopped(self, scheduler):
        self.heard.append("stopped")


def test_make_batch_makes_a_manifest_for_a_library_caller_and_a_second_call_only_what_is_missing(ray_cpu, tmp_path):
    root, manifest = folder_job(tmp_path, "photos", 3, (40, 30), 9, "m.csv")
    out = tmp_path / "out"
    request = BatchRequest(str(manifest), str(out), options=BatchOptions(backend=Fake("iters=2,scales=1"), group_size=1))
    first, heard = make_batch(request, observer := Heard()), observer.heard
    assert first.state.done == 3 and first.state.failed == 0 and not first.interrupted
    assert heard == ["opened", "planned 0 done 3 to do", "scheduling", "stopped"]
    assert sorted(p.name for p in out.glob("*.png")) == ["p0__style.png", "p1__style.png", "p2__style.png"]
    assert ray.is_initialized()  # the caller's Ray, used and left running
    (out / "p1__style.png").unlink()
    second = make_batch(request, observer := Heard())
    assert observer.heard == ["opened", "planned 2 done 1 to do", "scheduling", "stopped"] and second.state.done == 1
    holder = hold_lock(out)
    try:
        with pytest.raises(BatchError, match="in use by another batchstyle run"):
            make_batch(request)
    finally:
        holder.kill()
        holder.wait()
