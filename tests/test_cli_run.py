"""``batchstyle run`` and ``batchstyle status`` as a user runs them: real processes, real Ray.

The fake backend keeps these fast; one test runs the real engine with the real weights.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from support.photos import folder_job
from support.processes import FAKE, batchstyle, hold_lock, kill_session, start, wait_for

pytestmark = pytest.mark.ray


@pytest.fixture
def job(tmp_path):
    return folder_job(tmp_path, "photos", 8, (48, 36), 50, "manifest.csv", "# eight photos, one style\n")


def records(out: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text())
            for p in (out / ".batchstyle" / "done").glob("*.json")}


def test_killed_driver_then_rerun_does_every_item_exactly_once(job):
    root, manifest = job
    out, log = root / "out", root / "log"
    log.mkdir()
    args, fake = ["run", str(manifest), "-o", str(out), "--plain"], f"{FAKE},log={log}"
    proc = start(*args, fake=fake)
    try:
        wait_for(lambda: len(records(out)) >= 2 if (out / ".batchstyle" / "done").is_dir() else False, 120,
                 "two finished images")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        kill_session(proc)
    done_first = set(records(out))
    assert 2 <= len(done_first) < 8
    logged_first = {p.name for p in log.iterdir()}
    second = batchstyle(*args, fake=fake)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{len(done_first)} already done (skipped)" in second.stdout
    done = records(out)
    assert len(done) == 8 and {r["output"] for r in done.values()} == {f"p{i}__style.png" for i in range(8)}
    started_second = {name.split(".")[0] for name in {p.name for p in log.iterdir()} - logged_first}
    assert not done_first & started_second  # nothing finished before the kill was made again
    assert started_second | done_first == set(done)
    for record in done.values():
        with Image.open(out / record["output"]) as im:
            im.load()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not list((out / ".batchstyle" / "checkpoints").iterdir())


def test_first_ctrl_c_finishes_running_images_and_exits_130(job):
    root, manifest = job
    out = root / "out"
    args, fake = ["run", str(manifest), "-o", str(out), "--plain"], "iters=10,sleep=0.05,scales=2"
    proc = start(*args, fake=fake)
    try:
        wait_for(lambda: (out / ".batchstyle" / "done").is_dir() and len(records(out)) >= 1, 120, "one image")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        kill_session(proc)
    assert proc.returncode == 130, output
    assert output.count("finishing the running images") == 1 and "Run the same command again" in output
    assert 1 <= len(records(out)) < 8
    rerun = batchstyle(*args, fake=fake)
    assert rerun.returncode == 0 and len(records(out)) == 8


def test_a_second_ctrl_c_stops_at_once_and_says_what_happens_to_the_running_images(job):
    root, manifest = job
    out = root / "out"
    # one image per call: when the first is done, its worker has started the next, so images are running
    proc = start("run", str(manifest), "-o", str(out), "--plain", "--group-size", "1", fake="iters=20,sleep=0.1,scales=2")
    try:
        wait_for(lambda: (out / ".batchstyle" / "done").is_dir() and len(records(out)) >= 1, 120, "one image")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        kill_session(proc)
    assert proc.returncode == 130, output
    assert "Stopping now: the running images continue from their last finished scale" in output
    assert re.search(r"interrupted \(resume next time\)\s+│\s+[1-9]", output), output
    assert len(records(out)) < 8


def test_a_second_run_on_the_same_output_directory_is_refused(job):
    root, manifest = job
    out = root / "out"
    holder = hold_lock(out)
    try:
        refused = batchstyle("run", str(manifest), "-o", str(out), fake=FAKE)
        assert refused.returncode == 2
        assert f"is in use by another batchstyle run (pid {holder.pid}" in refused.stderr
        assert not (out / ".batchstyle" / "plan.json").exists()  # nothing was started
        assert f"A run is in progress (pid {holder.pid} on " in batchstyle("status", str(out)).stdout
    finally:
        holder.kill()
        holder.wait()
    assert f"The last run ended without finishing (pid {holder.pid}" in batchstyle("status", str(out)).stdout
    taken = batchstyle("run", str(manifest), "-o", str(out), "--plain", fake=FAKE)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert f"Taking over {out} from a run that ended without cleaning up (pid {holder.pid}" in taken.stdout
    assert len(records(out)) == 8


def test_bad_manifest_exits_2_listing_every_problem_and_starts_nothing(job):
    root, manifest = job
    manifest.write_text("content,style,end_scale\nphotos,missing.png,\nphotos/p1.png,style.png,huge\n")
    result = batchstyle("run", str(manifest), fake=FAKE)
    assert result.returncode == 2
    assert f"{manifest}:2: style image 'missing.png' does not exist" in result.stderr
    assert f"{manifest}:3: end_scale must be a whole number of pixels or N+" in result.stderr
    assert "2 problems in" in result.stderr and "nothing was started" in result.stderr
    assert not (root / "output").exists()
    manifest.write_text(f"content,style,output\nphotos/p1.png,style.png,{'x' * 252}.png\n")  # 256 bytes
    result = batchstyle("run", str(manifest), fake=FAKE)
    assert result.returncode == 2 and not (root / "output").exists()
    assert f"{manifest}:2: output " in result.stderr and "its file name is 256 bytes long" in result.stderr


def test_failed_items_are_recorded_shown_by_status_and_retried(job, photo):
    root, manifest = job
    photo(48, 36, 77).save(root / "photos" / "fail_me.png")
    out = root / "out"
    first = batchstyle("run", str(manifest), "-o", str(out), "--plain", fake=FAKE)
    assert first.returncode == 1
    assert "failed fail_me__style.png (line 3): fail_me.png: fake failure for tests" in first.stdout
    status = batchstyle("status", str(out))
    assert status.returncode == 1  # images failed: scripts can tell
    assert "9 image(s) in the latest run: 8 done, 1 failed, 0 pending" in status.stdout
    assert "fake failure for tests" in status.stdout
    (root / "photos" / "fail_me.png").rename(root / "photos" / "fixed.png")
    second = batchstyle("run", str(manifest), "-o", str(out), "--plain", fake=FAKE)
    assert second.returncode == 0 and "8 already done (skipped), 1 to make" in second.stdout


def test_records_of_the_wrong_shape_are_noted_once_and_their_images_made_again(job):
    from batchstyle.batch.manifest import read_manifest
    from batchstyle.batch.outdir import ItemRecord, open_output_dir
    from batchstyle.batch.plan import make_plan

    root, manifest = job
    out = open_output_dir(root / "out")
    items = make_plan(read_manifest(manifest), out, "fake").todo  # the ids the run gives them
    for item in items:
        out.write_result(ItemRecord(item.id, item.output, item.line, str(item.content), [], {}, "fake"),
                         (root / "style.png").read_bytes())
    broken = {items[0]: b"[]", items[1]: b"null", items[2]: b'{"output": 3}', items[3]: b'{"id": "' + b"1" * 10}
    for item, data in broken.items():
        (out.done_dir / f"{item.id}.json").write_bytes(data)
    for item, data in ((items[4], b"null"), (items[5], b"[]")):  # failures of images that are done since
        (out.failed_dir / f"{item.id}.json").write_bytes(data)
    bad_files = [*(out.done_dir / f"{i.id}.json" for i in broken), out.failed_dir / f"{items[4].id}.json",
                 out.failed_dir / f"{items[5].id}.json"]
    status = batchstyle("status", str(out.root))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "8 image(s) in the latest run: 4 done, 0 failed, 4 pending" in status.stdout
    assert all(status.stdout.count(f"note: ignored {path}: ") == 1 for path in bad_files), status.stdout
    run = batchstyle("run", str(manifest), "-o", str(out.root), "--plain", fake=FAKE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(run.stdout.count(f"note: ignored {path}: ") == 1 for path in bad_files[:4]), run.stdout
    assert "4 already done (skipped), 4 to make" in run.stdout
    assert set(records(out.root)) == {i.id for i in items}  # every record whole again


def test_a_bad_group_size_is_refused_before_anything_starts(job):
    root, manifest = job
    result = batchstyle("run", str(manifest), "-o", str(root / "out"), "--group-size", "0", fake=FAKE)
    assert result.returncode == 2 and "--group-size must be a whole number >= 1 or auto, not '0'" in result.stderr
    assert not (root / "out").exists()
    older = batchstyle("run", str(manifest), "-o", str(root / "out"), "--batch-size", "0", fake=FAKE)
    assert "note: --batch-size is now called --group-size" in older.stdout  # the older name still works
    assert older.returncode == 2 and "--group-size must be a whole number >= 1 or auto, not '0'" in older.stderr


def test_status_of_something_else_is_a_clear_error(tmp_path):
    result = batchstyle("status", str(tmp_path))
    assert result.returncode == 2 and "is not a batchstyle output directory" in result.stderr


@pytest.mark.weights
def test_real_engine_end_to_end_with_a_folder_row_and_two_styles(tmp_path, weights_file, demo_images):
    (tmp_path / "photos").mkdir()
    for name in ("chelsea_cat.jpg", "coffee.jpg"):
        with Image.open(demo_images / "content" / name) as im:
            im.convert("RGB").resize((96, 64)).save(tmp_path / "photos" / name.replace(".jpg", ".png"))
    for name in ("hokusai_great_wave.jpg", "van_gogh_starry_night.jpg"):
        with Image.open(demo_images / "styles" / name) as im:
            im.convert("RGB").resize((80, 56)).save(tmp_path / name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("content,style,style_weights,output,content_weight\n"
                        "photos,hokusai_great_wave.jpg;van_gogh_starry_night.jpg,2;1,{content}.tif,5\n")
    env = {"BATCHSTYLE_WEIGHTS": "", "BATCHSTYLE_CACHE_DIR": str(tmp_path / "empty-cache")}
    result = batchstyle("run", str(manifest), "--weights", str(weights_file), "--plain", "-s", "64", "-ms", "40",
                        "-ii", "8", "-i", "4", "--group-size", "2", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("in a group of 2)") == 2  # same size and settings: optimised together
    import tifffile

    for name in ("chelsea_cat.tif", "coffee.tif"):
        pixels = tifffile.imread(tmp_path / "output" / name)
        assert pixels.shape == (43, 64, 3) and pixels.dtype == "uint16" and pixels.std() > 1000
    done = records(tmp_path / "output")
    assert {r["settings"]["style_weights"][0] for r in done.values()} == {2.0}
    assert all(r["weights"].startswith("vgg19-") and r["iterations"] == 12 and r["group_size"] == 2
               for r in done.values())
    status = batchstyle("status", str(tmp_path / "output"), "--all")
    assert "2 image(s) in the latest run: 2 done, 0 failed, 0 pending" in status.stdout
    assert "chelsea_cat.tif" in status.stdout and "coffee.tif" in status.stdout


def session_processes(sid: int) -> list[str]:
    """Processes still alive in a session (what a driver started and left behind)."""
    ps = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if line.split() and line.split()[0] == str(sid)]


def test_ctrl_c_while_ray_starts_exits_130_and_leaves_no_process(job):
    root, manifest = job
    out = root / "out"
    proc = start("run", str(manifest), "-o", str(out), "--plain", "--force", fake=FAKE)
    try:
        wait_for(lambda: (out / ".batchstyle" / "plan.json").exists(), 60, "planning to finish")
        proc.send_signal(signal.SIGINT)  # Ray is starting now
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, output
        assert "Interrupted" in output and "Aborted" not in output and "Traceback" not in output
        deadline = time.monotonic() + 20
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert session_processes(proc.pid) == []
    finally:
        kill_session(proc)
    assert not list((out / ".batchstyle" / "done").iterdir())  # nothing was made, nothing was dropped


def test_every_problem_of_a_row_is_reported_with_did_you_mean_for_a_column(job):
    root, manifest = job
    manifest.write_text("content,style,style_weights,end_scale,iterations,style_loss\n"
                        "photos/p1.png,style.png,2;1;1,huge,-5,gramm\n")
    result = batchstyle("run", str(manifest), fake=FAKE)
    assert result.returncode == 2
    for problem in ("end_scale must be a whole number of pixels or N+", "iterations must be at least 1, not -5",
                    "style_loss must be one of gram, w2, not 'gramm'", "3 style weights for 1 style image(s)"):
        assert f"{manifest}:2: {problem}" in result.stderr, problem
    assert "4 problems in" in result.stderr
    manifest.write_text("content,stlye\nphotos,style.png\n")
    result = batchstyle("run", str(manifest), fake=FAKE)
    assert f"{manifest}:1: unknown column 'stlye'; did you mean 'style'?" in result.stderr


def test_what_is_not_a_manifest_is_said_in_one_line(job, tmp_path):
    root, manifest = job
    missing = batchstyle("run", str(root / "nothere.csv"), fake=FAKE)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {root / 'nothere.csv'}: the manifest does not exist"
    notes = root / "notes.txt"
    notes.write_text("Remember to buy milk.\nAnd bread.\n")
    result = batchstyle("run", str(notes), fake=FAKE)
    assert result.returncode == 2
    assert f"{notes}:1: this does not look like a manifest: its first line should be a header" in result.stderr
    assert "unknown column" not in result.stderr


def test_a_run_without_weights_writes_nothing_and_says_what_to_do(job, tmp_path):
    root, manifest = job
    env = {"BATCHSTYLE_WEIGHTS": "", "BATCHSTYLE_CACHE_DIR": str(tmp_path / "empty-cache"),
           "TORCH_HOME": str(tmp_path / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = batchstyle("run", str(manifest), "-o", str(root / "out"), env=env)
    assert result.returncode == 2
    assert "error: --weights: no VGG-19 weights" in result.stderr and "BATCHSTYLE_WEIGHTS=PATH" in result.stderr
    assert "Downloading:" not in result.stdout + result.stderr
    assert not (root / "out").exists()
    notes = root / "notes.pt"
    notes.write_text("not weights\n")
    result = batchstyle("run", str(manifest), "-o", str(root / "out"), "--weights", str(notes), env=env)
    assert result.returncode == 2 and f"error: --weights: {notes} is not a VGG-19 weights file" in result.stderr
    assert "weights_only" not in result.stderr and not (root / "out").exists()


def test_status_all_lists_time_and_worker_in_their_own_columns(job):
    root, manifest = job
    out = root / "out"
    assert batchstyle("run", str(manifest), "-o", str(out), "--plain", fake=FAKE).returncode == 0
    status = batchstyle("status", str(out), "--all")
    assert status.returncode == 0
    header = next(line for line in status.stdout.splitlines() if "line" in line and "image" in line and "time" in line)
    assert "worker" in header and "content" in header
    row = next(line for line in status.stdout.splitlines() if "p0__style.png" in line)
    line, image, content, seconds, worker = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert image == "p0__style.png" and content.startswith("/") and " s on " not in content
    assert re.fullmatch(r"\d+s", seconds) and worker.endswith(" CPU")
