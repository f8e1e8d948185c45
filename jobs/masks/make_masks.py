"""Write the masks of the masks example (jobs/masks/manifest.csv) from the demo's photos.

    python jobs/masks/make_masks.py            # -> jobs/masks/masks/*.png
    python jobs/masks/make_masks.py OUTDIR     # the same files elsewhere

* ``astronaut_left.png`` and ``astronaut_right.png``: a left/right split of the astronaut's portrait,
  greyscale, with a soft boundary (a linear ramp 64 px wide in the middle): white where a style
  applies, black where it does not, grey where the two blend.
* ``coffee_segmentation.png``: one colour-coded segmentation of the coffee photo: red for the cup and
  its saucer (two ellipses fitted by eye), blue for the table. Pure colours, no antialiasing, saved as
  PNG: every pixel must be one of the colours the manifest lists.

The masks have the photos' own sizes (a mask must have its content image's shape). The files are
the same on every run (no randomness), so the committed PNGs can be checked against this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTOS = HERE.parent / "demo" / "content"
RAMP = 64  # px: the width of the soft boundary between left and right
RED, BLUE = (255, 0, 0), (0, 0, 255)
# Ellipses as centre x, y and semi-axes, in shares of the width and height: the saucer, and the cup's rim above it.
SAUCER = (237 / 512, 195 / 341, 172 / 512, 138 / 341)
CUP = (249 / 512, 97 / 341, 103 / 512, 84 / 341)


def size_of(name: str) -> tuple[int, int]:
    with Image.open(PHOTOS / name) as photo:
        return photo.size


def left_right(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    """White on the left fading to black over RAMP px in the middle, and its opposite."""
    x = np.arange(width, dtype=np.float64) + 0.5
    left = np.clip((width / 2 + RAMP / 2 - x) / RAMP, 0, 1)
    row = np.rint(left * 255).astype(np.uint8)
    grid = np.repeat(row[None, :], height, axis=0)
    return Image.fromarray(grid, "L"), Image.fromarray(255 - grid, "L")


def ellipse(width: int, height: int, shape: tuple[float, float, float, float]) -> np.ndarray:
    """Whether each pixel's centre lies inside the ellipse ``shape`` (in shares of the size)."""
    cx, cy, rx, ry = shape[0] * width, shape[1] * height, shape[2] * width, shape[3] * height
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def cup_and_table(width: int, height: int) -> Image.Image:
    """Red inside the cup's and the saucer's ellipses, blue elsewhere."""
    inside = ellipse(width, height, SAUCER) | ellipse(width, height, CUP)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[inside], pixels[~inside] = RED, BLUE
    return Image.fromarray(pixels, "RGB")


def main(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    left, right = left_right(*size_of("astronaut_eileen_collins.jpg"))
    masks = {"astronaut_left.png": left, "astronaut_right.png": right,
             "coffee_segmentation.png": cup_and_table(*size_of("coffee.jpg"))}
    written = []
    for name, mask in masks.items():
        mask.save(folder / name, optimize=True)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "masks"):
        print(path)
