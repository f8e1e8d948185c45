"""The frames of a clip (docs/engine.md, section Clips): the first frame is a plain image job; a later
frame's job starts from the previous output warped onto it, runs one scale of ``frame_iterations``, and
holds to its earlier outputs where the flow is trusted; a short clip made this way is more consistent
than its frames made one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from batchstyle.engine import ClipSettings, Progress, ScaleFinished, Speed, StyleSettings, Stylizer, frame_job, stylize_clip
from batchstyle.engine.flow import warp
from batchstyle.engine.pixels import tensor_at

from support.clips import pan_clip

SETTINGS = StyleSettings(end_scale=64, min_scale=45, initial_iterations=30, iterations=15)  # scales 45, 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny images, a shared machine


@pytest.fixture(scope="module")
def clip(demo_images):
    return pan_clip(Image.open(demo_images / "content" / "chelsea_cat.jpg"), frames=5, size=(64, 48), step=2)


def test_the_first_frame_is_the_plain_image_job(clip, pair):
    job = frame_job(clip.frames[0], [pair[1]], SETTINGS, ClipSettings())
    assert job.settings == SETTINGS and job.start is None and not job.temporal and job.masks is None


def test_a_later_frame_starts_from_the_previous_output_warped_and_runs_one_scale(tiny_stylizer, clip, pair):
    previous = pair[1].resize((64, 48))  # a smooth picture: the flow is right to a twentieth of a pixel
    settings = ClipSettings(temporal_weight=7.0, frame_iterations=5)
    job = frame_job(clip.frames[1], [pair[1]], SETTINGS, settings, [(clip.frames[0], previous)])
    shifted = np.asarray(previous)[:, 2:]  # the pan: each pixel was 2 px to the right in frame 0
    assert np.abs(np.asarray(job.start, np.float32)[:, :-2] - shifted).mean() < 1
    (temporal,) = job.temporal
    assert np.abs(np.asarray(job.start, np.float32) - temporal.target * 255).max() <= 0.5  # rounded to 8 bits
    assert np.abs(temporal.target[:, :-2] * 255 - shifted).mean() < 1
    assert (temporal.confidence[:, -2:] == 0).all() and temporal.confidence[:, :-2].mean() > 0.95
    assert job.temporal_weight == 7.0
    run = tiny_stylizer.run_group([job])
    assert torch.equal(run.image(), tensor_at(job.start, 64, 48)[0])
    events = list(run)
    assert [(e.scale_count, e.width, e.height) for e in events if isinstance(e, ScaleFinished)] == [(1, 64, 48)]
    assert [e.iteration for e in events if isinstance(e, Progress)] == [1, 2, 3, 4, 5]


def test_long_term_look_backs_each_constrain_the_pixels_the_nearer_ones_do_not(clip, pair):
    outputs = [Image.fromarray(np.full((48, 64, 3), 40 * k, np.uint8)) for k in range(3)]
    settings = ClipSettings(long_term=(1, 2))
    job = frame_job(clip.frames[3], [pair[1]], SETTINGS, settings,
                    [(clip.frames[2], outputs[2]), (clip.frames[1], outputs[1])])
    near, far = job.temporal
    assert np.allclose(near.target, 80 / 255) and np.allclose(far.target, 40 / 255)
    assert (near.confidence + far.confidence <= 1).all()
    assert (near.confidence[:, :-2] == 1).mean() > 0.95 and (far.confidence[:, -2:] == 0).all()
    with pytest.raises(ValueError, match="earlier frames"):
        frame_job(clip.frames[3], [pair[1]], SETTINGS, ClipSettings(), [(clip.frames[2], outputs[2])] * 2)


def _consistency(outputs, clip) -> float:
    """The mean over consecutive frames of the mean absolute difference (0-255) between output t and
    output t-1 warped by the true flow, over the pixels visible in both."""
    figures = []
    for t in range(1, len(outputs)):
        now, before = (np.asarray(o, np.float32) for o in (outputs[t], outputs[t - 1]))
        figures.append(np.abs(now - warp(before, clip.flows[t]))[clip.valid[t]].mean())
    return float(np.mean(figures))


def test_a_clip_is_more_consistent_than_its_frames_one_by_one(real_weights, clip, demo_images):
    stylizer = Stylizer(real_weights, devices=["cpu"], speed=Speed(precision="fp32"))
    style = Image.open(demo_images / "styles" / "van_gogh_starry_night.jpg")
    settings = SETTINGS.replace(content_weight=2.0, init="uniform")
    seen = []
    together = list(stylize_clip(clip.frames, style, settings, ClipSettings(frame_iterations=15), stylizer,
                                 callback=lambda i, event: seen.append(i)))
    alone = [stylizer.run(frame, [style], settings) for frame in clip.frames]
    for run in alone:
        list(run)
    alone = [run.pil() for run in alone]
    assert len(together) == 5 and together[0].tobytes() == alone[0].tobytes()
    assert sorted(set(seen)) == [0, 1, 2, 3, 4]
    assert _consistency(together, clip) < 0.5 * _consistency(alone, clip)
