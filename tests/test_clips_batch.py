"""Clips through a batch, with real Ray and the fake engine: every frame made once, in the order its
chain needs, the video encoded with the source's audio when its frames are done (again when a frame
changed), a failed frame failing the later frames of its chain, and a killed driver resumed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from batchstyle.batch.make import BatchObserver, BatchRequest, make_batch
from batchstyle.batch.state import BatchOptions
from support.clips import pan_clip
from support.fake_backend import Fake
from support.photos import make_photo
from support.processes import FAKE, batchstyle, kill_session, start, wait_for
from support.video_files import write_video

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cpu():
    # two GPUs declared on this GPU-less machine: two one-GPU workers (a CPU node runs one worker)
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def clip_job(tmp_path: Path):
    clip = pan_clip(make_photo(160, 120, 3), frames=6, size=(64, 48), step=2)
    write_video(tmp_path / "pan.mp4", clip.frames, 6, audio_seconds=1.0)
    (tmp_path / "seq").mkdir()
    for k, frame in enumerate(clip.frames, 1):
        frame.save(tmp_path / "seq" / f"{'fail' if k == 4 else 'frame'}_{k}.png")
    make_photo(64, 64, 9).save(tmp_path / "style.png")
    (tmp_path / "log").mkdir()
    return tmp_path


class Notes(BatchObserver):
    def __init__(self):
        self.notes: list[str] = []

    def clip_note(self, text: str) -> None:
        self.notes.append(text)


def run(root: Path, rows: str, sleep: float = 0.0):
    (root / "manifest.csv").write_text(rows)
    notes = Notes()
    options = BatchOptions(backend=Fake(f"iters=2,scales=1,sleep={sleep},log={root / 'log'}"), workers=2, device="gpu")
    outcome = make_batch(BatchRequest(str(root / "manifest.csv"), outdir=str(root / "out"), options=options), notes)
    return outcome, notes.notes


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / ".batchstyle" / "done").glob("*.json")]


def started(root: Path) -> list[str]:
    """The ids the fake engine started, in the order it started them."""
    paths = sorted((root / "log").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return [p.name.split(".")[0] for p in paths]


def test_a_clip_is_made_frame_by_frame_and_encoded_with_its_audio(ray_cpu, clip_job):
    import av

    outcome, notes = run(clip_job, "content,style\npan.mp4,style.png\n")
    assert outcome.state.done == 6 and outcome.state.failed == 0
    made = {r["id"]: r for r in records(clip_job / "out")}
    order = [made[i]["frame"] for i in started(clip_job)]
    assert order == [1, 2, 3, 4, 5, 6]  # one chain: each frame after the one it starts from
    assert {r["clip"] for r in made.values()} == {"pan__style_frames"}
    assert {r["frames"] for r in made.values()} == {6}
    assert sorted(os.listdir(clip_job / "out" / "pan__style_frames")) == [f"{k:06d}.png" for k in range(1, 7)]
    assert any("wrote" in note and "pan__style.mp4" in note for note in notes)
    with av.open(str(clip_job / "out" / "pan__style.mp4")) as video:
        kinds = sorted(s.type for s in video.streams)
        frames = sum(1 for _ in video.decode(video=0))
    assert kinds == ["audio", "video"] and frames == 6
    encoded = (clip_job / "out" / "pan__style.mp4").stat().st_mtime_ns

    again, notes = run(clip_job, "content,style\npan.mp4,style.png\n")
    assert again.state is None and len(again.plan.done) == 6  # nothing to make, and no new video
    assert (clip_job / "out" / "pan__style.mp4").stat().st_mtime_ns == encoded and not notes


def test_segments_run_in_parallel_and_a_changed_frame_redoes_the_rest_of_its_chain(ray_cpu, clip_job):
    (clip_job / "seq" / "fail_4.png").rename(clip_job / "seq" / "frame_4.png")
    rows = "content,style,sequence,segment_frames,output\nseq,style.png,true,3,seq.mp4\n"
    outcome, _ = run(clip_job, rows, sleep=0.5)
    assert outcome.state.done == 6
    first = {r["frame"]: r["id"] for r in records(clip_job / "out")}
    starts = started(clip_job)
    assert starts.index(first[4]) < starts.index(first[3])  # the second chain does not wait for the first
    assert len({r["worker"] for r in records(clip_job / "out")}) == 2
    make_photo(64, 48, 77).save(clip_job / "seq" / "frame_5.png")
    log_before = set(os.listdir(clip_job / "log"))
    again, notes = run(clip_job, rows)
    redone = {name.split(".")[0] for name in set(os.listdir(clip_job / "log")) - log_before}
    now = {r["frame"]: r["id"] for r in records(clip_job / "out") if r["id"] in redone}
    assert sorted(now) == [5, 6] and again.state.done == 2
    assert any("wrote" in note and "seq.mp4" in note for note in notes)  # the video follows its frames


def test_a_failed_frame_fails_the_later_frames_of_its_chain_and_no_video_is_written(ray_cpu, clip_job):
    outcome, notes = run(clip_job, "content,style,sequence,output\nseq,style.png,true,seq.mp4\n")
    assert outcome.state.done == 3 and outcome.state.failed == 3
    errors = {f.output: f.error for f in outcome.state.failures}
    assert "fake failure" in errors["seq_frames/000004.png"]
    assert "frame 4 of its clip, which it starts from, failed" in errors["seq_frames/000006.png"]
    assert not (clip_job / "out" / "seq.mp4").exists()
    assert any("seq.mp4 waits for its frames (3 of 6 made)" in note for note in notes)


def test_a_killed_driver_resumes_the_clip_and_makes_every_frame_once(clip_job):
    manifest, out, log = clip_job / "manifest.csv", clip_job / "out", clip_job / "log"
    manifest.write_text("content,style\npan.mp4,style.png\n")
    args, fake = ["run", str(manifest), "-o", str(out), "--plain"], f"{FAKE},sleep=0.2,log={log}"
    proc = start(*args, fake=fake)
    try:
        wait_for(lambda: (out / ".batchstyle" / "done").is_dir() and len(records(out)) >= 2, 120, "two frames")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        kill_session(proc)
    done_first = {r["id"] for r in records(out)}
    assert 2 <= len(done_first) < 6
    logged_first = set(started(clip_job))
    second = batchstyle(*args, fake=fake)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "wrote pan__style.mp4" in second.stdout
    made_second = set(started(clip_job)) - logged_first
    assert not made_second & done_first and len(records(out)) == 6
    assert (out / "pan__style.mp4").is_file()


def test_the_engine_makes_a_later_frame_from_the_earlier_one_in_one_scale(random_weights):
    """A worker's engine, given a later frame with the earlier frame and its output: the end scale
    alone, ``frame_iterations`` steps, starting from that output warped (no checkpoints to send)."""
    from fractions import Fraction

    from batchstyle.batch.clips import FrameRef
    from batchstyle.batch.engine_backend import EngineBackend
    from batchstyle.batch.items import Item
    from batchstyle.batch.messages import ItemCheckpoint, ItemInputs, ItemResult
    from batchstyle.engine.clip_settings import ClipSettings
    from batchstyle.engine.events import Progress
    from batchstyle.engine.settings import StyleSettings
    from support.photos import png_bytes

    clip = pan_clip(make_photo(160, 120, 3), frames=2, size=(48, 36), step=2)
    settings = StyleSettings(end_scale=48, min_scale=32, initial_iterations=4, iterations=3)
    ref = FrameRef("c_frames", 2, 2, 0, (1,), ClipSettings(frame_iterations=5), fps=Fraction(6))
    item = Item(2, Path("000002.png"), (Path("s.png"),), settings, "c_frames/000002.png", content_size=(48, 36),
                id="frame2", frame=ref)
    backend = EngineBackend(random_weights.to_numpy(), "random", 0, 1, None)
    earlier = [(png_bytes(clip.frames[0]), png_bytes(clip.frames[0].transpose(0)))]
    events = [event for _, event in backend.run([ItemInputs(item, png_bytes(clip.frames[1]),
                                                            [png_bytes(make_photo(32, 32, 5))], earlier=earlier)])]
    steps = [e for e in events if isinstance(e, Progress)]
    assert {(e.scale_count, e.width, e.height) for e in steps} == {(1, 48, 36)} and len(steps) == 5
    assert not [e for e in events if isinstance(e, ItemCheckpoint)]
    assert isinstance(events[-1], ItemResult) and events[-1].iterations == 5
    missing = [event for _, event in backend.run([ItemInputs(item, png_bytes(clip.frames[1]),
                                                             [png_bytes(make_photo(32, 32, 5))])])]
    assert "without the earlier frames it starts from" in missing[-1].message  # never made as a first frame
