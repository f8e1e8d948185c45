"""A clip in the gallery's data (web/gallery.py, gallery_data.py): its frames are one entry, with its
frames done of total, its state, its video once written and the content clip where the page can play
it; the dashboard serves the files that entry names. Without Ray or a browser (test_browser.py plays it)."""

from __future__ import annotations

import shutil

import pytest

from batchstyle.batch.outdir import open_output_dir
from batchstyle.web.dashboard import Dashboard
from batchstyle.web.gallery import rebuild_gallery
from support.clips import pan_clip
from support.gallery import clip_batch, failure, follow, page_data, write_frame, write_video
from support.photos import make_photo
from support.processes import batchstyle
from support.video_files import write_video as write_source


def by_output(rows: list[dict]) -> dict[str, dict]:
    return {row["output"]: row for row in rows}


def test_a_clip_is_one_entry_with_its_frames_video_and_content_clip(tmp_path):
    out, plan, _ = clip_batch(tmp_path)
    rebuild_gallery(out)
    summary, rows = page_data(out)
    assert [r["output"] for r in rows] == ["still__style.png", "pan__style.mp4", "seq__style_frames"]
    assert [r["n"] for r in rows] == [0, 1, 2]
    assert summary["total"] == 3 and summary["counts"] == {"done": 2, "failed": 0, "pending": 1}
    pan, seq = rows[1], rows[2]
    assert pan["state"] == "done" and (pan["frames_done"], pan["frames"]) == (6, 6)
    assert pan["frame_outputs"] == [f.output for f in plan["pan"]]
    assert pan["video"] == "pan__style.mp4" and pan["content_video"] == "sources/pan.mp4"
    assert pan["content"] == "pan.mp4" and pan["clip"] == "pan__style_frames" and pan["line"] == 3
    assert pan["styles"][0]["name"] == "style.png" and pan["settings"] == {"end_scale": 256, "content_weight": 10}
    assert pan["size"] == [64, 48] and pan["content_size"] == [64, 48]  # the first frame's thumbnails
    assert (out.meta / "thumbs" / pan["thumb"]).is_file() and pan["seconds"] == 6 * 12.5
    assert seq["state"] == "partial" and (seq["frames_done"], seq["frames"]) == (2, 3)
    assert seq["frame_outputs"] == [plan["seq"][0].output, plan["seq"][1].output, None]
    assert "video" not in seq and "content_video" not in seq and seq["content"] == "seq"
    assert "thumb" in seq and "content_thumb" in seq


def test_the_video_is_named_only_once_written_from_its_frames(tmp_path):
    out, plan, inputs = clip_batch(tmp_path)
    (out.root / "pan__style.mp4").unlink()  # every frame done, the video not (yet) written
    rebuild_gallery(out)
    pan = by_output(page_data(out)[1])["pan__style.mp4"]
    assert pan["state"] == "partial" and pan["frames_done"] == 6 and "video" not in pan

    write_video(out, plan["pan"][:5])  # a video of other frames than these is not this clip's
    rebuild_gallery(out)
    assert "video" not in by_output(page_data(out)[1])["pan__style.mp4"]


def test_a_clip_fails_with_its_failed_frame_and_counts_once(tmp_path):
    out, plan, _ = clip_batch(tmp_path)
    out.write_failure(failure(plan["seq"][2], "frame 3: out of GPU memory"))
    rebuild_gallery(out)
    summary, rows = page_data(out)
    seq = by_output(rows)["seq__style_frames"]
    assert seq["state"] == "failed" and seq["error"] == "frame 3: out of GPU memory" and seq["frames_done"] == 2
    assert summary["counts"] == {"done": 2, "failed": 1, "pending": 0} and summary["state"] == "stopped"


def test_a_gallery_that_follows_a_run_shows_the_frames_as_they_come_and_the_video_at_the_end(tmp_path):
    out, plan, inputs = clip_batch(tmp_path)
    for entry in plan["seq"][:2]:
        (out.meta / "done" / f"{entry.id}.json").unlink()
    gallery = follow(out, shard_size=2)
    write_frame(out, plan["seq"][1], inputs)  # frame 2 first: frame 1 is still the one shown once made
    write_frame(out, plan["seq"][0], inputs)
    assert gallery.close() is None
    seq = by_output(page_data(out)[1])["seq__style_frames"]
    assert seq["frames_done"] == 2 and seq["state"] == "partial"
    first = rebuild_gallery(out)
    assert by_output(page_data(out)[1])["seq__style_frames"]["thumb"] == seq["thumb"]
    assert first.names(plan["seq"][1].output) and not first.names(plan["seq"][2].output)


def test_the_dashboard_serves_the_clips_files_its_data_names(tmp_path):
    out, plan, _ = clip_batch(tmp_path)
    shutil.copy(out.root / "sources" / "pan.mp4", out.root / "other.mp4")
    dashboard = Dashboard(gallery=rebuild_gallery(out), out=out)
    assert dashboard.allow("pan__style.mp4") == "video/mp4"
    assert dashboard.allow("sources/pan.mp4") == "video/mp4"
    assert dashboard.allow(plan["pan"][3].output) == "image/png"
    assert dashboard.allow("other.mp4") is None  # named by no entry
    assert dashboard.allow("pan__style_frames") is None


def test_a_content_clip_outside_the_output_directory_is_not_named(tmp_path):
    out, plan, _ = clip_batch(tmp_path)
    moved = tmp_path / "elsewhere.mp4"
    shutil.move(plan["pan"][0].source, moved)
    items = [*plan["still"], *(e.__class__(**{**e.__dict__, "source": str(moved)}) for e in plan["pan"]),
             *plan["seq"]]
    out.write_plan(items, {})
    rebuild_gallery(out)
    pan = by_output(page_data(out)[1])["pan__style.mp4"]
    assert "content_video" not in pan and pan["content"] == "elsewhere.mp4" and "content_thumb" in pan


def test_frames_outside_the_plan_never_appear(tmp_path):
    out, plan, _ = clip_batch(tmp_path)
    out.write_plan(plan["still"], {})  # this run's batch has no clips; the frames' records stay
    rebuild_gallery(out)
    summary, rows = page_data(open_output_dir(out.root))
    assert [r["output"] for r in rows] == ["still__style.png"] and summary["total"] == 1
    assert set(rows[0]) >= {"id", "thumb"} and "frames" not in rows[0]


@pytest.mark.ray
def test_after_a_batch_the_gallery_names_the_video_it_wrote(tmp_path):
    pytest.importorskip("ray")
    write_source(tmp_path / "pan.mp4", pan_clip(make_photo(160, 120, 3), frames=6, size=(64, 48)).frames, 6)
    make_photo(64, 64, 9).save(tmp_path / "style.png")
    (tmp_path / "manifest.csv").write_text("content,style\npan.mp4,style.png\n")
    result = batchstyle("run", tmp_path / "manifest.csv", "-o", tmp_path / "out", "--plain", fake="iters=2,scales=1")
    assert result.returncode == 0, result.stdout + result.stderr
    summary, [pan] = page_data(open_output_dir(tmp_path / "out"))
    assert summary["state"] == "finished" and summary["counts"] == {"done": 1, "failed": 0, "pending": 0}
    assert pan["state"] == "done" and pan["video"] == "pan__style.mp4" and pan["content"] == "pan.mp4"
    assert pan["frames_done"] == 6 and (tmp_path / "out" / pan["video"]).is_file()
    assert "content_video" not in pan  # the source is beside the output directory, not in it
