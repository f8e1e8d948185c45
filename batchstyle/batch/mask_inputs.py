"""Masks named in a manifest (a style per region): read once each, checked against their styles and
against every content image they go with, and loaded the way the engine takes them (on a worker,
and by ``batchstyle stylize``).

A row gives either one greyscale mask per style (``masks``, separated by ``;`` in the order of
``style``) or one colour-coded segmentation with one colour per style (``masks`` and
``mask_colors``). What is wrong with a row's masks themselves is a problem of its line; a mask of
another shape than a content image is a problem of that image (:meth:`MaskChecker.shape_problem`);
a region too small for a style layer at some scale is a note (:meth:`MaskChecker.notes`). The
checks are :mod:`engine.masks`'s. This module does not import torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from batchstyle.engine.masks import (MaskError, count_problems, empty_problems, hex_color, layer_strides, masks_from_segmentation,
                                     parse_colors, region_notes, shape_problems)
from batchstyle.engine.schedule import scale_ladder
from batchstyle.engine.settings import StyleSettings

from .inputs import InputChecker, resolve
from .remote_files import RemotePath

Color = tuple[int, int, int]


@dataclass(frozen=True)
class RowMasks:
    """The masks of one manifest row: their paths as items carry them, the names the cell gives them,
    and the segmentation's colours (None: one greyscale mask per style)."""

    paths: tuple[Path | RemotePath, ...]
    names: tuple[str, ...]
    colors: tuple[Color, ...] | None = None

    @property
    def labels(self) -> list[str]:
        """How messages name the files: ``mask 'left.png'``."""
        return [f"mask {name!r}" for name in self.names]

    def region_names(self) -> list[str]:
        """How notes name each style's region: the mask, or the segmentation's colour."""
        if self.colors:
            return [f"{self.names[0]} {hex_color(color)}" for color in self.colors]
        return list(self.names)


def split_cell(cell: str) -> list[str]:
    """The file names of a ``masks`` cell (or ``--masks``): separated by ``;``."""
    return [name.strip() for name in cell.split(";") if name.strip()]


def load_mask(data: bytes, name: str) -> Image.Image:
    """A mask file's bytes as the engine takes a mask: upright (EXIF orientation applied), alpha kept
    (:func:`engine.masks.greyscale` multiplies it in), 16-bit and float grey brought to 8 bits (Pillow's
    own conversion would clip them)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MaskError(f"{name} cannot be read: {exc}") from None
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float64) / 257.0
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64)) * 255.0
    else:
        return image
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def job_masks(data: Sequence[bytes], names: Sequence[str], colors: Sequence[Color] | None) -> list[Image.Image]:
    """The masks of one job, one per style: the greyscale masks as loaded, or the segmentation split by
    its colours (:func:`engine.masks.masks_from_segmentation`)."""
    loaded = [load_mask(one, name) for one, name in zip(data, names)]
    if colors:
        return masks_from_segmentation(loaded[0], colors, f"mask {names[0]!r}")
    return loaded


def pixel_problems(images: Sequence[Image.Image], labels: Sequence[str],
                   colors: Sequence[Color] | None) -> tuple[list[str], list[Image.Image]]:
    """What is wrong with the masks' pixels (a colour nobody listed, a region that is empty), and the
    masks one per style."""
    if not colors:
        return empty_problems(images, labels), list(images)
    try:
        regions = masks_from_segmentation(images[0], colors, labels[0])
    except MaskError as exc:
        return [str(exc)], []
    return [f"{labels[0]} has no pixel of colour {hex_color(color)} (number {k} of mask_colors), so its style would "
            f"apply nowhere; paint that style's region in {hex_color(color)}, or leave the colour and its style out"
            for k, (color, region) in enumerate(zip(colors, regions), 1) if region.getextrema()[1] == 0], regions


class MaskChecker:
    """Reads and checks the masks of a manifest's rows. Each file is read once: a mask may serve a
    whole folder of photos of one composition."""

    def __init__(self, checker: InputChecker):
        self.checker = checker
        self.regions: dict[tuple, list[Image.Image]] = {}  # the masks of a row, one per style
        self._notes: dict[tuple, list[str]] = {}

    def paths(self, base, cell: str) -> list[Path | RemotePath]:
        """The files a ``masks`` cell names (for listing remote headers in bulk)."""
        return [resolve(base, name) for name in split_cell(cell)]

    def row(self, base, cells: dict[str, str], styles: int, problem: Callable[[str], None]) -> RowMasks | None:
        """The row's masks (None: it has none); every problem with them goes to ``problem``."""
        names, colors_cell = split_cell(cells.get("masks", "")), cells.get("mask_colors", "").strip()
        if not names:
            if colors_cell:
                problem("mask_colors is given without masks; name the colour-coded segmentation image in masks, "
                        "or leave mask_colors empty")
            return None
        paths = [resolve(base, name) for name in names]
        masks = RowMasks(tuple(self.checker.resolved(p) for p in paths), tuple(names), self._colors(colors_cell, problem))
        found = [f"{label} {self.checker.check(path).problem}" for label, path in zip(masks.labels, paths)
                 if self.checker.check(path).problem]
        if masks.colors == ():  # the colours are wrong (reported): nothing more to say of them
            found.append("")
        elif styles:
            found += count_problems(len(names), masks.colors, styles)
        if not found:
            found = self._read(masks, paths)
        for message in filter(None, found):
            problem(message)
        return masks

    @staticmethod
    def _colors(cell: str, problem: Callable[[str], None]) -> tuple[Color, ...] | None:
        """The listed colours; None for none, () for a list that is wrong (reported)."""
        if not cell:
            return None
        try:
            return parse_colors(cell)
        except MaskError as exc:
            problem(str(exc))
            return ()

    def _read(self, masks: RowMasks, paths: list[Path | RemotePath]) -> list[str]:
        """Decode the masks (once per files and colours) and check their pixels; the problems."""
        key = (masks.paths, masks.colors)
        if key in self.regions:
            return []
        images = []
        for label, path in zip(masks.labels, paths):
            try:
                images.append(load_mask(path.read_bytes(), label))
            except OSError as exc:
                return [f"{label} cannot be read: {exc.strerror or exc}"]
            except MaskError as exc:
                return [str(exc)]
        problems, regions = pixel_problems(images, masks.labels, masks.colors)
        if not problems:
            self.regions[key] = regions
        return problems

    def shape_problem(self, masks: RowMasks | None, content_size: tuple[int, int]) -> str:
        """Why these masks do not fit a content image of this size ("" when they do)."""
        if masks is None:
            return ""
        sizes = [self.checker.check(path).size for path in masks.paths]
        found = shape_problems(content_size, sizes, masks.labels)
        more = f" (and {len(found) - 1} more of the row's masks)" if len(found) > 1 else ""
        return found[0] + more if found else ""

    def notes(self, masks: RowMasks | None, content_size: tuple[int, int], settings: StyleSettings) -> list[str]:
        """A note for each region too small for a style layer at some scale of this content image."""
        regions = self.regions.get((masks.paths, masks.colors)) if masks is not None else None
        if not regions:
            return []
        sizes = tuple(scale.size for scale in scale_ladder(content_size, settings))
        layers = tuple(layer_strides(settings.style_layers))
        key = (masks.paths, masks.colors, sizes, layers)
        if key not in self._notes:
            self._notes[key] = region_notes(regions, sizes, layers, masks.region_names())
        return self._notes[key]


__all__ = ["RowMasks", "MaskChecker", "load_mask", "job_masks", "pixel_problems", "split_cell"]
