"""PIL images as the engine's tensors: float ``[1, 3, H, W]`` in [0, 1], resized with Lanczos."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float ``[1, 3, H, W]`` tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)[None]


def resized(image: Image.Image, w: int, h: int) -> Image.Image:
    return image if image.size == (w, h) else image.resize((w, h), Image.LANCZOS)


def tensor_at(image: Image.Image, w: int, h: int) -> torch.Tensor:
    """``image`` resized to ``w x h`` as a ``[1, 3, h, w]`` tensor."""
    return to_tensor(resized(image, w, h))


__all__ = ["to_tensor", "resized", "tensor_at"]
