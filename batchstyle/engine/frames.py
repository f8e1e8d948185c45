"""The frames of a clip, one by one (docs/engine.md, section Clips): the job of each frame, and
:func:`stylize_clip` for library users.

The first frame of a clip is an image job like any other (the full scale ladder). Every later frame
starts from the previous frame's output warped onto it by optical flow, runs its end scale alone with
``clip.frame_iterations`` iterations, and adds the temporal loss: the squared difference from each
earlier output it looks back to (``clip.long_term``), warped, where the flows' confidence holds.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from .clip_settings import ClipSettings, frame_settings
from .events import Progress, ScaleFinished
from .flow import confidence, long_term_confidences, optical_flow, warp
from .pixels import resized
from .run import Job
from .schedule import scale_ladder
from .settings import StyleSettings
from .speed import Speed
from .stylizer import Stylizer
from .temporal import Temporal
from .weights import VGGWeights


def _array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(resized(image.convert("RGB"), *size))


def frame_job(content: Image.Image, styles: Sequence[Image.Image], settings: StyleSettings, clip: ClipSettings,
              earlier: Sequence[tuple[Image.Image, Image.Image]] = (),
              masks: Sequence[Image.Image] | None = None) -> Job:
    """The job of one frame of a clip.

    ``settings``: the row's; ``earlier[k]``: (content frame i − ``clip.long_term[k]``, its stylized
    output), in the order of ``clip.long_term`` (fewer near the start of a clip). Without ``earlier``
    (the first frame) the plain image job. Otherwise the flows between this frame's content and each
    earlier content frame are computed at the output's size; the first earlier output, warped, is the
    job's start, and every earlier output, warped, with its long-term confidence is a temporal target
    of weight ``clip.temporal_weight``; the settings are :func:`frame_settings`'."""
    if not earlier:
        return Job(content, styles, settings, masks=masks)
    if len(earlier) > len(clip.long_term):
        raise ValueError(f"{len(earlier)} earlier frames were given for the look-backs {clip.long_term}")
    later = frame_settings(settings, clip, content.size)
    size = scale_ladder(content.size, later)[-1].size
    now = _array(content, size)
    warped, confidences = [], []
    for before, output in earlier:
        back = _array(before, size)
        backward = optical_flow(now, back)
        confidences.append(confidence(backward, optical_flow(back, now)))
        warped.append(warp(_array(output, size).astype(np.float32) / 255, backward))
    start = Image.fromarray(np.clip(warped[0] * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    temporal = [Temporal(target, c) for target, c in zip(warped, long_term_confidences(confidences))]
    return Job(content, styles, later, masks=masks, start=start, temporal=temporal,
               temporal_weight=clip.temporal_weight)


def stylize_clip(frames: Iterable[Image.Image], styles: Image.Image | Sequence[Image.Image],
                 settings: StyleSettings | None = None, clip: ClipSettings | None = None,
                 stylizer: Stylizer | None = None, *,
                 weights: VGGWeights | Mapping | str | os.PathLike | None = None,
                 devices: Sequence[str] | None = None, speed: Speed | None = None,
                 masks: Sequence[Image.Image] | None = None,
                 callback: Callable[[int, Progress | ScaleFinished], object] | None = None) -> Iterator[Image.Image]:
    """Stylize a clip's frames in order, yielding each frame's output as it is made.

    ``frames``: the content frames (PIL images of one size), read as they are needed; ``settings``:
    every frame's style settings (the first frame runs their full ladder); ``clip``: how the later
    frames are made (:class:`ClipSettings`). ``callback(frame_index, event)`` receives every event of
    every frame. ``masks`` apply to every frame."""
    settings = settings or StyleSettings()
    clip = clip or ClipSettings()
    styles = [styles] if isinstance(styles, Image.Image) else list(styles)
    stylizer = stylizer or Stylizer(weights, devices, speed=speed)
    reach = max(clip.long_term)
    history: list[tuple[Image.Image, Image.Image]] = []  # (content, output) of the latest frames, newest last
    for i, content in enumerate(frames):
        earlier = [history[-j] for j in clip.long_term if j <= len(history)]
        run = stylizer.run_group([frame_job(content, styles, settings, clip, earlier, masks)])
        for event in run:
            if callback is not None:
                callback(i, event)
        output = run.pil()
        history = (history + [(content, output)])[-reach:]
        yield output


__all__ = ["frame_job", "stylize_clip"]
