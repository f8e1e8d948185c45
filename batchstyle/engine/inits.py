"""The image a run starts from at its first scale (docs/engine.md, section Initial image), drawn from the job's own random stream."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from .pixels import tensor_at, to_tensor
from .settings import StyleSettings


def initial_image(settings: StyleSettings, content: Image.Image, styles: Sequence[Image.Image],
                  blend: Sequence[float], size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``[1, 3, h, w]`` on the CPU: the content itself, grey or uniform noise, a truncated normal, or
    one with the blended mean and variance of the style images' pixels (``style_stats``)."""
    w, h = size
    if settings.init == "content":
        return tensor_at(content, w, h)
    if settings.init == "gray":
        return torch.rand([1, 3, h, w], generator=generator) / 255 + 0.5
    if settings.init == "uniform":
        return torch.rand([1, 3, h, w], generator=generator)
    if settings.init == "normal":
        return torch.nn.init.trunc_normal_(torch.empty(1, 3, h, w), 0.5, 0.25, 0, 1, generator=generator)
    pixels = [to_tensor(im)[0].flatten(1).double() for im in styles]
    mean = sum(wk * t.mean(1) for wk, t in zip(blend, pixels))
    var = sum(wk * t.var(1) for wk, t in zip(blend, pixels)).clamp(min=0)
    image = torch.empty(1, 3, h, w)
    for c in range(3):
        torch.nn.init.trunc_normal_(image[:, c], float(mean[c]), float(var[c].sqrt()), 0, 1, generator=generator)
    return image


__all__ = ["initial_image"]
