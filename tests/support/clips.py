"""Test clips made here, with their true motion: a camera panning across a photo, and a handheld-like
camera (smooth pan, zoom, slight roll) over a photo with an object moving across it (occlusions).

Flows follow the engine's convention (``engine.flow``): ``flow[t]`` maps each pixel ``p`` of frame
``t`` to where it was in frame ``t - 1``, so frame_t(p) ≈ frame_{t-1}(p + flow[t](p)); ``valid[t]`` is
False where that place is outside frame ``t - 1`` or hidden there (disoccluded). Index 0 has no flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class Clip:
    frames: list[Image.Image]  # RGB
    flows: list[np.ndarray | None]  # [H, W, 2] float32 (x, y), None for the first frame
    valid: list[np.ndarray | None]  # [H, W] bool


def pan_clip(photo: Image.Image, frames: int = 24, size: tuple[int, int] = (128, 96), step: int = 2) -> Clip:
    """A window of ``size`` sliding right across ``photo`` by ``step`` whole pixels a frame (the photo
    is first fitted to the window's height and enough width)."""
    w, h = size
    need = w + step * (frames - 1)
    scale = max(need / photo.width, h / photo.height)
    big = photo.convert("RGB").resize((max(need, round(photo.width * scale)), max(h, round(photo.height * scale))),
                                      Image.LANCZOS)
    top = (big.height - h) // 2
    out = [big.crop((t * step, top, t * step + w, top + h)) for t in range(frames)]
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = step
    valid = np.ones((h, w), bool)
    valid[:, w - step:] = False
    return Clip(out, [None] + [flow.copy() for _ in range(frames - 1)], [None] + [valid.copy() for _ in range(frames - 1)])


def _camera(t: int, frames: int) -> tuple[float, float, float, float]:
    """Smooth camera parameters at frame t: centre x, y (share of the photo), zoom, roll (radians)."""
    s = t / max(frames - 1, 1)
    return (0.4 + 0.2 * s + 0.01 * np.sin(7 * s), 0.5 + 0.03 * np.sin(3 * s), 1.0 + 0.15 * s, 0.03 * np.sin(2 * s))


def _sampling(t: int, frames: int, size: tuple[int, int], photo_size: tuple[int, int]) -> np.ndarray:
    """[H, W, 2]: for each pixel of frame t, its position in the photo."""
    w, h = size
    pw, ph = photo_size
    cx, cy, zoom, roll = _camera(t, frames)
    view = 0.6 * min(pw / w, ph / h) / zoom  # photo pixels per frame pixel
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = (xs - (w - 1) / 2) * view, (ys - (h - 1) / 2) * view
    c, s = np.cos(roll), np.sin(roll)
    return np.stack([cx * pw + c * u - s * v, cy * ph + s * u + c * v], -1)


def _bilinear(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x = np.clip(where[..., 0], 0, w - 1.001)
    y = np.clip(where[..., 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _object_box(t: int, frames: int, size: tuple[int, int]) -> tuple[float, float, int, int]:
    """The moving object's top-left corner (frame pixels, sub-pixel) and its size at frame t."""
    w, h = size
    ow, oh = w // 4, h // 3
    s = t / max(frames - 1, 1)
    return -ow + s * (w + ow), h * 0.45 + 0.1 * h * np.sin(4 * s), ow, oh


def handheld_clip(photo: Image.Image, other: Image.Image, frames: int = 24, size: tuple[int, int] = (128, 96)) -> Clip:
    """A camera drifting, zooming and rolling over ``photo``, with a patch of ``other`` sliding across
    the frame in front of it (its trailing edge disoccludes the background)."""
    w, h = size
    fit = 2 / min(photo.width / w, photo.height / h)  # the photo at twice the frame's size: no aliasing
    photo = photo.convert("RGB").resize((round(photo.width * fit), round(photo.height * fit)), Image.LANCZOS)
    base = np.asarray(photo, np.float64)
    patch = np.asarray(other.convert("RGB").resize((w // 4, h // 3), Image.LANCZOS), np.float64)
    where = [_sampling(t, frames, size, (photo.width, photo.height)) for t in range(frames)]
    out, flows, valid = [], [None], [None]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for t in range(frames):
        image = _bilinear(base, where[t])
        ox, oy, ow, oh = _object_box(t, frames, size)
        inside = (xs >= ox) & (xs < ox + ow) & (ys >= oy) & (ys < oy + oh)
        local = np.stack([xs - ox, ys - oy], -1)
        image[inside] = _bilinear(patch, local)[inside]
        out.append(Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8), "RGB"))
        if t == 0:
            continue
        flow, ok = _background_flow(where[t], where[t - 1], (photo.width, photo.height), frames, t)
        px, py, _, _ = _object_box(t - 1, frames, size)
        flow[inside] = np.array([px - ox, py - oy])  # the object moves as one piece
        back = np.stack([xs, ys], -1) + flow
        bx, by = back[..., 0], back[..., 1]
        was_object = (bx >= px) & (bx < px + ow) & (by >= py) & (by < py + oh)
        ok &= inside | ~was_object  # background that the object hid in frame t - 1
        ok &= (bx >= 0) & (bx <= w - 1) & (by >= 0) & (by <= h - 1)
        flows.append(flow.astype(np.float32))
        valid.append(ok)
    return Clip(out, flows, valid)


def _background_flow(now: np.ndarray, before: np.ndarray, photo_size: tuple[int, int], frames: int,
                     t: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of frame t's background was in frame t - 1 (inverting frame t-1's sampling)."""
    cx, cy, zoom, roll = _camera(t - 1, frames)
    pw, ph = photo_size
    h, w = now.shape[:2]
    view = 0.6 * min(pw / w, ph / h) / zoom
    du, dv = now[..., 0] - cx * pw, now[..., 1] - cy * ph
    c, s = np.cos(roll), np.sin(roll)
    u, v = c * du + s * dv, -s * du + c * dv
    x, y = u / view + (w - 1) / 2, v / view + (h - 1) / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([x - xs, y - ys], -1), np.ones((h, w), bool)


__all__ = ["Clip", "pan_clip", "handheld_clip"]
