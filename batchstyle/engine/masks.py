"""Masks: where each style image applies (docs/engine.md, section Masks).

A job may give one greyscale mask per style image, in the order of its styles: white where that
style applies, black where it does not, grey in between (soft boundaries). Masks need not add up to
one: where two overlap both styles apply, where none is white only the content and smoothness
terms act. Instead of masks, one colour-coded segmentation with one listed colour per style gives
the same (:func:`masks_from_segmentation`).

A mask is brought to every scale as the content is (resized to the content's size there) and to each
style layer by averaging it over the layer's pooling cells (:func:`regions_at`). The engine then
takes each style's statistics over its region (guided Gram matrices, ``losses.Guided``).

This module does not import torch: the batch planner checks masks with it.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
from PIL import Image, ImageColor

from .layers import layer_index
from .tile_grid import reach

ASPECT_TOLERANCE = 0.01  # a mask's width/height may differ from the content's by this share
COLOR_TOLERANCE = 48  # a segmentation pixel belongs to a listed colour within this many levels per channel
MIN_MASS = 1.0  # a region covering less than one position of a layer is left out there


class MaskError(ValueError):
    """Masks that cannot be used with their content and styles; the message says what to do."""


def parse_colors(text: str | Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """``"#ff0000;blue"`` (or a sequence of such names) -> RGB triples. Colours are CSS names or hex."""
    names = [p for p in re.split(r"[;\s]+", text.strip()) if p] if isinstance(text, str) else list(text)
    if not names:
        raise MaskError("mask_colors is empty; list one colour per style, like #ff0000;#0000ff")
    colors = []
    for name in names:
        try:
            colors.append(ImageColor.getrgb(name)[:3])
        except ValueError:
            raise MaskError(f"mask colour {name!r} is not a colour; use a hex code like #ff0000 or a CSS "
                            f"name like red") from None
    if len(set(colors)) != len(colors):
        raise MaskError(f"mask_colors lists a colour twice ({'; '.join(names)}); give each style its own")
    return tuple(colors)


def hex_color(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb[:3])


def masks_from_segmentation(segmentation: Image.Image, colors: Sequence[Sequence[int]],
                            name: str = "the segmentation") -> list[Image.Image]:
    """One binary mask per listed colour: the pixels nearest to that colour.

    Every pixel must lie within :data:`COLOR_TOLERANCE` levels (per channel) of a listed colour,
    so that a JPEG's noise is forgiven but a colour nobody listed is not silently given a style.
    """
    rgb = np.asarray(segmentation.convert("RGB"), dtype=np.int16)
    palette = np.asarray(colors, dtype=np.int16)  # [K, 3]
    distance = np.abs(rgb[:, :, None, :] - palette[None, None]).max(-1)  # [H, W, K], Chebyshev
    nearest = distance.argmin(-1)
    stray = distance.min(-1) > COLOR_TOLERANCE
    if stray.any():
        y, x = (int(v[0]) for v in np.nonzero(stray))
        raise MaskError(f"{name} has {int(stray.sum())} pixel(s) of colours not listed in mask_colors, such as "
                        f"{hex_color(rgb[y, x])} at x={x}, y={y}; list that colour for a style, or repaint "
                        f"those pixels (save segmentations as PNG, without antialiasing)")
    return [Image.fromarray(np.where(nearest == k, 255, 0).astype(np.uint8), "L") for k in range(len(palette))]


def greyscale(mask: Image.Image) -> Image.Image:
    """A mask as an 8-bit greyscale image (an alpha channel, where there is one, multiplies it)."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        grey = np.asarray(rgba.convert("L"), dtype=np.uint16) * np.asarray(rgba.getchannel("A"), dtype=np.uint16)
        return Image.fromarray((grey // 255).astype(np.uint8), "L")
    return mask.convert("L")


def count_problems(masks: int, colors: Sequence[tuple[int, int, int]] | None, styles: int) -> list[str]:
    """What is wrong with this many mask files (and colours) for this many styles."""
    if colors is None:
        if masks == styles:
            return []
        return [f"{masks} mask(s) for {styles} style image(s); give one greyscale mask per style, in the order of "
                f"the styles, separated by ';' (or one colour-coded segmentation image with mask_colors)"]
    problems = []
    if masks > 1:
        problems.append(f"mask_colors goes with one colour-coded segmentation image, but masks names {masks} files; "
                        f"give one segmentation image, or leave mask_colors empty and give one greyscale mask per style")
    if len(colors) != styles:
        problems.append(f"{len(colors)} mask colour(s) for {styles} style image(s); list one colour per style, in "
                        f"the order of the styles, separated by ';'")
    return problems


def shape_problems(content_size: tuple[int, int], mask_sizes: Sequence[tuple[int, int] | None],
                   names: Sequence[str] | None = None) -> list[str]:
    """Masks whose width/height differs from the content's by more than :data:`ASPECT_TOLERANCE`
    (a size of None, unknown, is not judged)."""
    names = list(names) if names else [f"mask {k}" for k in range(1, len(mask_sizes) + 1)]
    width, height = content_size
    problems = []
    for name, size in zip(names, mask_sizes):
        if size is None:
            continue
        ratio, want = size[0] / size[1], width / height
        if abs(ratio - want) > ASPECT_TOLERANCE * want:
            problems.append(f"{name} is {size[0]}x{size[1]}, not the shape of the content image ({width}x{height}); "
                            f"make the mask from the content image, or resize it to {width}x{height}")
    return problems


def empty_problems(masks: Sequence[Image.Image], names: Sequence[str] | None = None) -> list[str]:
    """Masks that are black everywhere: their style would apply nowhere."""
    names = list(names) if names else [f"mask {k}" for k in range(1, len(masks) + 1)]
    return [f"{name} is black everywhere, so its style would apply nowhere; paint its region white, or leave "
            f"that style out" for name, mask in zip(names, masks) if greyscale(mask).getextrema()[1] == 0]


def mask_at(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A mask at the content's size at a scale, as float32 in [0, 1] (resized in floating point, so that
    a thin region does not round away)."""
    grey = np.asarray(greyscale(mask), dtype=np.float32) / 255
    if grey.shape[::-1] == tuple(size):
        return grey
    return np.clip(np.asarray(Image.fromarray(grey, "F").resize(size, Image.BILINEAR)), 0, 1)


def pooled(mask: np.ndarray, stride: int) -> np.ndarray:
    """A mask averaged over the ``stride``×``stride`` cells of a layer of that stride (the positions of
    the layer's activations; rows and columns past the last whole cell are dropped, as pooling does)."""
    if stride == 1:
        return mask
    h, w = (d // stride for d in mask.shape)
    return mask[:h * stride, :w * stride].reshape(h, stride, w, stride).mean((1, 3), dtype=np.float64)\
        .astype(np.float32)


def layer_strides(layers: Sequence[str]) -> list[tuple[str, int]]:
    """Each layer with its stride (pixels of the image per position of the layer): the cells a guide
    is averaged over there."""
    return [(name, reach(layer_index(name))[2]) for name in layers]


def guides_at(masks: Sequence[Image.Image], size: tuple[int, int], strides: Sequence[int]) -> list[np.ndarray]:
    """Every region's guide at each layer stride, at one scale: ``[R, h, w]`` float32 arrays."""
    at = [mask_at(mask, size) for mask in masks]
    return [np.stack([pooled(m, stride) for m in at]) for stride in strides]


def masses(mask: Image.Image, size: tuple[int, int], strides: Sequence[int]) -> list[float]:
    """A region's mass (Σ of its squared guide, :func:`pooled`) at each of these layer strides, at one scale."""
    at = mask_at(mask, size)
    return [float(np.square(pooled(at, stride), dtype=np.float64).sum()) for stride in strides]


def region_notes(masks: Sequence[Image.Image], sizes: Sequence[tuple[int, int]], layers: Sequence[tuple[str, int]],
                 names: Sequence[str] | None = None) -> list[str]:
    """A word for every region too small for a style layer at some scale: its style's statistics at
    that layer are left out there (the rest of the run goes on). ``sizes``: the content's size at each
    scale; ``layers``: (name, stride) of each style layer."""
    names = list(names) if names else [f"mask {k}" for k in range(1, len(masks) + 1)]
    notes = []
    for name, mask in zip(names, masks):
        small = [(size, layer) for size in sizes
                 for (layer, _), mass in zip(layers, masses(mask, size, [s for _, s in layers])) if mass < MIN_MASS]
        if small:
            where = ", ".join(f"{layer} at {w}x{h}" for (w, h), layer in small[:4]) + (" ..." if len(small) > 4 else "")
            notes.append(f"{name}: its region covers less than one position of {where}; that style is left "
                         f"out of those layers there")
    return notes


__all__ = ["MaskError", "parse_colors", "hex_color", "masks_from_segmentation", "greyscale", "count_problems", "shape_problems",
           "empty_problems", "mask_at", "pooled", "masses", "region_notes", "guides_at", "layer_strides", "ASPECT_TOLERANCE", "COLOR_TOLERANCE", "MIN_MASS"]
