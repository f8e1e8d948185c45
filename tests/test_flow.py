"""Optical flow, warping and the confidence of clips (docs/engine.md, section Clips): warps are exact on
whole-pixel motion, the confidence is Ruder et al.'s on hand-made flows, the long-term confidences
give each pixel to its most recent visible frame, and the flow of a panning clip is its true motion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from batchstyle.engine.flow import confidence, end_point_error, long_term_confidences, optical_flow, warp

from support.clips import handheld_clip, pan_clip


def _image(h=30, w=40, channels=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, channels), dtype=np.float32)


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-5, 4)])
def test_warp_by_a_whole_pixel_shift_is_the_shifted_image_with_its_border_replicated(dx, dy):
    image = _image()
    flow = np.zeros((30, 40, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    ys, xs = np.mgrid[0:30, 0:40]
    expected = image[np.clip(ys + dy, 0, 29), np.clip(xs + dx, 0, 39)]
    assert np.array_equal(warp(image, flow), expected)


def test_warp_samples_each_pixel_at_its_own_flow_for_any_number_of_channels():
    rng = np.random.default_rng(1)
    flow = rng.integers(-3, 4, (30, 40, 2)).astype(np.float32)
    ys, xs = np.mgrid[0:30, 0:40]
    where = np.clip(ys + flow[..., 1].astype(int), 0, 29), np.clip(xs + flow[..., 0].astype(int), 0, 39)
    for channels in (1, 3, 6):
        image = _image(channels=channels)
        out = warp(image, flow)
        assert out.shape == image.shape and np.array_equal(out, image[where])


def test_warp_is_bilinear_between_pixels():
    image = np.arange(40, dtype=np.float32).reshape(1, 40, 1).repeat(3, 0)
    flow = np.full((3, 40, 2), 0.5, np.float32)
    flow[..., 1] = 0
    assert np.allclose(warp(image, flow)[0, :39, 0], np.arange(39) + 0.5, atol=1 / 32)  # OpenCV's 1/32 px weights


def _moving_square():
    """A 10 x 10 square moving 4 px right over a still background, frame i-1 -> frame i (30 x 40):
    in frame i-1 it covers rows 10-19, columns 10-19; in frame i columns 14-23."""
    backward = np.zeros((30, 40, 2), np.float32)  # frame i -> frame i-1
    backward[10:20, 14:24, 0] = -4
    forward = np.zeros((30, 40, 2), np.float32)  # frame i-1 -> frame i
    forward[10:20, 10:20, 0] = 4
    return backward, forward


def test_the_confidence_is_zero_where_the_background_was_hidden_and_at_the_motion_boundary():
    c = confidence(*_moving_square())
    assert c.dtype == np.float32 and set(np.unique(c)) <= {0.0, 1.0}
    zero = np.zeros((30, 40), bool)
    zero[10:20, 10:14] = True  # the strip the square uncovered: forward and back do not return
    zero[10:20, [13, 14, 23, 24]] = True  # its left and right edges, on both sides
    zero[[9, 10, 19, 20], 14:24] = True  # its top and bottom edges
    assert np.array_equal(c == 0, zero)


def test_the_confidence_is_zero_where_the_flow_leaves_the_frame_and_one_elsewhere():
    backward = np.zeros((20, 30, 2), np.float32)
    backward[..., 0] = 2.5  # a pan: each pixel was 2.5 px to the right
    forward = -backward
    c = confidence(backward, forward)
    assert (c[:, :27] == 1).all() and (c[:, 27:] == 0).all()


def test_a_small_disagreement_of_large_flows_is_forgiven_and_a_large_one_is_not():
    """The disocclusion test allows 1 % of the flows' squared length plus 0.5 px²: a round trip that
    misses by 0.8 px is forgiven for a 4 px motion, 1.1 px is not; for a 42 px motion 5 px is, 7 px not."""
    for step, error, trusted in ((3.0, 0.8, True), (3.0, 1.1, False), (30.0, 5.0, True), (30.0, 7.0, False)):
        backward = np.full((100, 100, 2), -step, np.float32)
        forward = np.full((100, 100, 2), step + error / np.sqrt(2), np.float32)
        assert bool(confidence(backward, forward)[50, 50] == 1) is trusted, (step, error)


def test_long_term_confidences_give_each_pixel_to_the_most_recent_frame_it_was_seen_in():
    c1 = np.array([[1, 0, 0, 1, 0]], np.float32)  # one frame back
    c2 = np.array([[1, 1, 0, 0, 0]], np.float32)  # two back
    c4 = np.array([[1, 1, 1, 0, 0]], np.float32)  # four back
    long = long_term_confidences([c1, c2, c4])
    assert [l.tolist() for l in long] == [[[1, 0, 0, 1, 0]], [[0, 1, 0, 0, 0]], [[0, 0, 1, 0, 0]]]
    assert all(l.dtype == np.float32 for l in long) and long[0] is not c1


def test_dis_flow_of_a_panning_clip_is_its_true_motion(demo_images):
    clip = pan_clip(Image.open(demo_images / "content" / "coffee.jpg"), frames=6, size=(128, 96), step=3)
    for t in range(1, 6):
        flow = optical_flow(clip.frames[t], np.asarray(clip.frames[t - 1]))
        assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
        assert end_point_error(flow, clip.flows[t], clip.valid[t]) < 0.15  # measured 0.04-0.07 px
        c = confidence(flow, optical_flow(clip.frames[t - 1], clip.frames[t]))
        assert (c[:, 128 - 3:] == 0).all() and c[clip.valid[t]].mean() > 0.95


def test_dis_flow_follows_a_handheld_camera_and_a_moving_object(demo_images):
    """Most pixels' flow is within a fraction of a pixel of the truth; where the confidence trusts it,
    the earlier frame warped by it is the frame to a few levels (measured 2.5-5.0 of 255)."""
    photo, other = (Image.open(demo_images / "content" / name) for name in ("coffee.jpg", "chelsea_cat.jpg"))
    clip = handheld_clip(photo, other, frames=8, size=(96, 72))
    for t in range(1, 8):
        flow = optical_flow(clip.frames[t], clip.frames[t - 1])
        error = np.sqrt(((flow - clip.flows[t]) ** 2).sum(-1))[clip.valid[t]]
        assert np.median(error) < 0.3, t
        trusted = confidence(flow, optical_flow(clip.frames[t - 1], clip.frames[t])) == 1
        warped = warp(np.asarray(clip.frames[t - 1], np.float32), flow)
        assert np.abs(warped - np.asarray(clip.frames[t], np.float32))[trusted].mean() < 7, t


def test_frames_must_be_rgb_of_one_size():
    with pytest.raises(ValueError, match="different sizes"):
        optical_flow(Image.new("RGB", (32, 24)), Image.new("RGB", (24, 32)))
    with pytest.raises(ValueError, match="uint8"):
        optical_flow(np.zeros((24, 32, 3), np.float32), np.zeros((24, 32, 3), np.float32))
    with pytest.raises(ValueError, match="unknown flow method"):
        optical_flow(Image.new("RGB", (32, 24)), Image.new("RGB", (32, 24)), method="deepflow")
