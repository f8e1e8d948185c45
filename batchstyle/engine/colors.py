"""Keeping the content's colours (``original_colors``): the result's luminance under the content's
chroma, in YUV, as neural-style's ``-original_colors``."""

from __future__ import annotations

import torch
from PIL import Image

from .pixels import tensor_at

_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.14713, -0.28886, 0.436],
                            [0.615, -0.51499, -0.10001]])
_YUV_TO_RGB = torch.linalg.inv(_RGB_TO_YUV)


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YUV.to(image), image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YUV_TO_RGB.to(image), image)


class OriginalColors:
    """Puts a content image's chroma under a stylized image's luminance, at whatever size it comes."""

    def __init__(self, content: Image.Image):
        self.content = content
        self._content_yuv: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if (w, h) not in self._content_yuv:
            self._content_yuv[(w, h)] = rgb_to_yuv(tensor_at(self.content, w, h))
        yuv = self._content_yuv[(w, h)].clone()
        yuv[:, 0] = rgb_to_yuv(image)[:, 0]
        return yuv_to_rgb(yuv).clamp(0, 1)


__all__ = ["rgb_to_yuv", "yuv_to_rgb", "OriginalColors"]
