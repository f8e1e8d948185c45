"""Clip rows of a manifest and their plan: a video file, an animated GIF or a frame folder becomes one
item per frame, in chains; every bad input is one line of its manifest (no Ray)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from batchstyle.batch.manifest import ManifestError, read_manifest
from batchstyle.batch.outdir import open_output_dir
from batchstyle.batch.plan import make_plan
from support.clips import pan_clip
from support.photos import make_photo
from support.video_files import write_gif, write_video


@pytest.fixture
def clip_job(tmp_path: Path):
    clip = pan_clip(make_photo(160, 120, 3), frames=6, size=(64, 48), step=2)
    write_video(tmp_path / "pan.mp4", clip.frames, 6, audio_seconds=1.0)
    write_gif(tmp_path / "pan.gif", clip.frames, 6)
    (tmp_path / "seq").mkdir()
    for k, frame in enumerate(clip.frames, 1):
        frame.save(tmp_path / "seq" / f"frame_{k}.png")
    make_photo(64, 64, 9).save(tmp_path / "style.png")
    return tmp_path


def manifest(root: Path, text: str) -> Path:
    path = root / "manifest.csv"
    path.write_text(text)
    return path


def problems(root: Path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest(root, text))
    return str(caught.value).splitlines()


def test_a_video_a_gif_and_a_frame_folder_are_clips(clip_job):
    items = read_manifest(manifest(clip_job, "content,style,sequence,output\npan.mp4,style.png,,\n"
                                             "pan.gif,style.png,,gif_out.webm\nseq,style.png,true,\n"))
    video, gif, folder = (item.clip for item in items)
    assert (video.frames, video.fps, video.size, video.audio) == (6, 6, (64, 48), True)
    assert (video.frames_dir, video.video) == ("pan__style_frames", "pan__style.mp4")
    assert (gif.frames, gif.video) == (6, "gif_out.webm")
    assert folder.frames == 6 and folder.video == "" and [p.name for p in folder.sequence][:2] == ["frame_1.png",
                                                                                                 "frame_2.png"]


def test_a_clip_is_planned_as_chains_of_frames(clip_job, tmp_path):
    items = read_manifest(manifest(clip_job, "content,style,segment_frames,long_term\npan.mp4,style.png,4,1;2\n"))
    plan = make_plan(items, open_output_dir(str(tmp_path / "out")), "w")
    frames = [item.frame for item in plan.todo]
    assert [(f.index, f.chain, f.earlier) for f in frames] == [
        (1, 0, ()), (2, 0, (1,)), (3, 0, (2, 1)), (4, 0, (3, 2)), (5, 1, ()), (6, 1, (5,))]
    assert [item.output for item in plan.todo][:2] == ["pan__style_frames/000001.png", "pan__style_frames/000002.png"]
    first, later = plan.todo[0], plan.todo[1]
    assert first.units > 3 * later.units  # the full ladder, against the end scale alone
    assert all(item.group_key is None for item in plan.todo)


def test_a_changed_frame_changes_its_id_and_every_later_one_of_its_chain(clip_job, tmp_path):
    text = "content,style,sequence,segment_frames\nseq,style.png,true,3\n"
    out = open_output_dir(str(tmp_path / "out"))
    before = [item.id for item in make_plan(read_manifest(manifest(clip_job, text)), out, "w").todo]
    make_photo(64, 48, 77).save(clip_job / "seq" / "frame_2.png")
    after = [item.id for item in make_plan(read_manifest(manifest(clip_job, text)), out, "w").todo]
    same = [a == b for a, b in zip(before, after)]
    assert same == [True, False, False, True, True, True]  # frames 2 and 3 (chain 1 is frames 1-3)


def test_clip_rows_with_bad_inputs_name_the_line_and_what_to_do(clip_job):
    (clip_job / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (clip_job / "seq2").mkdir()
    make_photo(64, 48, 1).save(clip_job / "seq2" / "1.png")
    make_photo(32, 48, 2).save(clip_job / "seq2" / "2.png")
    found = problems(clip_job, "content,style,sequence,temporal_weight,fps,output,masks\n"
                               "broken.mp4,style.png,,,,,\n"
                               "seq,style.png,maybe,,,,\n"
                               "seq2,style.png,true,,,,\n"
                               "style.png,style.png,,5,,,\n"
                               "pan.mp4,style.png,,,,out.png,\n"
                               "seq,style.png,true,,-3,,\n"
                               "pan.mp4,style.png,,,,,style.png\n")
    by_line = {re.search(r"manifest\.csv:(\d+): ", line).group(1): line for line in found if "manifest.csv:" in line}
    assert "broken.mp4" in by_line["2"]
    assert "sequence must be true or false" in by_line["3"]
    assert "frames differ in size" in by_line["4"]
    assert "temporal_weight applies to clips only" in by_line["5"]
    assert "must be a video file" in by_line["6"]
    assert "fps must be a positive number" in by_line["7"]
    assert "cannot have masks" in by_line["8"]


def test_a_single_frame_gif_is_still_an_image(clip_job):
    Image.new("RGB", (64, 48), "red").save(clip_job / "still.gif")
    (item,) = read_manifest(manifest(clip_job, "content,style\nstill.gif,style.png\n"))
    assert item.clip is None and item.output == "still__style.png"
