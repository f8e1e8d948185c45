"""Masks for tests: a left/right pair of greyscale masks, and a colour-coded segmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def split_masks(folder: Path, width: int, height: int, names: tuple[str, str] = ("left.png", "right.png"),
                at: float = 0.5) -> list[Path]:
    """Two greyscale masks that split the picture at ``at`` of its width: white left of it, and the opposite."""
    left = np.zeros((height, width), np.uint8)
    left[:, : max(1, round(width * at))] = 255
    paths = [folder / names[0], folder / names[1]]
    Image.fromarray(left, "L").save(paths[0])
    Image.fromarray(255 - left, "L").save(paths[1])
    return paths


def segmentation(path: Path, width: int, height: int, colors=((255, 0, 0), (0, 0, 255)), at: float = 0.5) -> Path:
    """A segmentation in two colours split at ``at`` of the width (the first colour on the left)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    cut = max(1, round(width * at))
    pixels[:, :cut], pixels[:, cut:] = colors[0], colors[1]
    Image.fromarray(pixels, "RGB").save(path)
    return path


__all__ = ["split_masks", "segmentation"]
