"""Optical flow between the frames of a clip, warping by it, and where it can be trusted (docs/engine.md,
section Clips). numpy and OpenCV, no torch; OpenCV is imported inside the functions, so that only clips
load it.

A flow is ``[H, W, 2]`` float32 (x, y) on the pixels of one frame: ``flow(p)`` is where p was in an
earlier (or later) frame, relative to p, so that ``frame(p) ≈ other(p + flow(p))``.

The confidence follows Ruder, Dosovitskiy and Brox, *Artistic style transfer for videos* (GCPR 2016),
whose two tests and constants are those of Sundaram, Brox and Keutzer's dense point trajectories
(ECCV 2010): a pixel is trusted unless the forward and backward flows disagree (a disocclusion), it
lies on a motion boundary, or its flow leaves the frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

# Ruder et al.'s constants (squared pixels; see confidence()).
DISOCCLUSION_SHARE = 0.01
DISOCCLUSION_SLACK = 0.5
BOUNDARY_SHARE = 0.01
BOUNDARY_SLACK = 0.002

FLOW_METHODS = ("dis_ultrafast", "dis_fast", "dis_medium", "farneback")
DEFAULT_FLOW = "dis_medium"  # the smallest end-point error on the test clips (benchmarks/temporal.py --flow)


def _grey(image: Image.Image | np.ndarray) -> np.ndarray:
    """``image`` (PIL, or uint8 ``[H, W, 3]`` RGB) as a uint8 ``[H, W]`` greyscale array."""
    import cv2

    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a frame must be an RGB image or a uint8 [H, W, 3] array, not {array.dtype} {array.shape}")
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)


def optical_flow(frame: Image.Image | np.ndarray, earlier: Image.Image | np.ndarray,
                 method: str = DEFAULT_FLOW) -> np.ndarray:
    """``[H, W, 2]`` float32: for each pixel p of ``frame`` the displacement d with
    ``frame(p) ≈ earlier(p + d)`` (``earlier`` may as well be a later frame: the forward flow).

    ``method``: OpenCV's DIS (dense inverse search) at one of its presets, or Farneback's polynomial
    expansion (:data:`FLOW_METHODS`); both on greyscale."""
    import cv2

    a, b = _grey(frame), _grey(earlier)
    if a.shape != b.shape:
        raise ValueError(f"frames of different sizes: {a.shape[::-1]} and {b.shape[::-1]}")
    if method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 5, 5, 1.1, 0)
    elif method.startswith("dis_") and method in FLOW_METHODS:
        preset = getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{method[4:].upper()}")
        flow = cv2.DISOpticalFlow_create(preset).calc(a, b, None)
    else:
        raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
    return np.ascontiguousarray(flow, dtype=np.float32)


def _positions(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + flow(p): the x and y each pixel is sampled at, float32 ``[H, W]`` each."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` ``[H, W, C]`` float32 sampled at p + flow(p) for every pixel p of the flow's frame:
    bilinear, the border replicated (``cv2.remap``). An earlier frame warped by ``optical_flow(frame,
    earlier)`` lies on ``frame``."""
    import cv2

    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"warp takes an [H, W, C] image, not one of shape {image.shape}")
    map_x, map_y = _positions(np.asarray(flow, np.float32))
    parts = [np.ascontiguousarray(image[..., k:k + 4]) for k in range(0, image.shape[2], 4)]
    out = [cv2.remap(part, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for part in parts]
    out = [o[..., None] if o.ndim == 2 else o for o in out]
    return np.concatenate(out, axis=2) if len(out) > 1 else out[0]


def confidence(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32, 1 where frame i's pixel can take the earlier frame's value, 0 where not.

    ``backward`` = ŵ = ``optical_flow(frame_i, frame_{i-1})``, ``forward`` = ``optical_flow(frame_{i-1},
    frame_i)``; w̃ is the forward flow sampled at p + ŵ(p). Zero at a disocclusion, where going back
    and forth does not return: ``|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5``; at a motion boundary, where the
    backward flow changes fast: ``|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002`` (central differences); and where
    p + ŵ(p) is outside the frame."""
    backward = np.asarray(backward, np.float32)
    there = warp(np.asarray(forward, np.float32), backward)
    round_trip = ((there + backward) ** 2).sum(-1)
    lengths = (there ** 2).sum(-1) + (backward ** 2).sum(-1)
    occluded = round_trip > DISOCCLUSION_SHARE * lengths + DISOCCLUSION_SLACK
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    steep = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2
    boundary = steep > BOUNDARY_SHARE * (backward ** 2).sum(-1) + BOUNDARY_SLACK
    h, w = backward.shape[:2]
    x, y = _positions(backward)
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(occluded | boundary | outside)).astype(np.float32)


def long_term_confidences(confidences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The confidences of look-backs j1 < j2 < ... (in that order) made exclusive: each pixel is
    constrained by the most recent earlier frame where it was visible,
    ``c_long_j = max(c_j − Σ_{k<j} c_k, 0)``."""
    out, seen = [], None
    for c in confidences:
        c = np.asarray(c, np.float32)
        out.append(c.copy() if seen is None else np.maximum(c - seen, 0).astype(np.float32))
        seen = c.copy() if seen is None else seen + c
    return out


def end_point_error(flow: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The mean Euclidean distance between two flows, over ``valid`` pixels (all without)."""
    error = np.sqrt(((np.asarray(flow, np.float64) - truth) ** 2).sum(-1))
    return float(error[valid].mean() if valid is not None else error.mean())


__all__ = ["optical_flow", "warp", "confidence", "long_term_confidences", "end_point_error", "FLOW_METHODS",
           "DEFAULT_FLOW"]
