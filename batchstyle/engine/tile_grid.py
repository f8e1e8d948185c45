"""Tiles of an image whose features are those of the whole image (``docs/tiling.md``).

A tile is a *core*, the part of the image whose features it contributes, and a *box*: the core
with a margin of real neighbours on every side that is not an image edge. The cores partition the
image, and at every layer their features partition that layer's positions:

* core boundaries fall on multiples of the deepest layer's stride (16 px for relu5_1), so that the
  tile's pooling windows are the whole image's and its feature grid is a piece of the whole one;
* the margin covers the receptive field of the deepest layer (80 px for relu5_1: its features see
  70 px to either side of their 16 px cell), so that no padding at a box edge inside the image
  reaches a core feature; at a real image edge the box is the image's edge and pads as it does.

No torch here: tiles slice whatever tensors they are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .layers import CONV_SHAPES, POOL_INDICES


def reach(index: int) -> tuple[int, int, int]:
    """``(left, right, stride)`` of module ``index``: its feature ``i`` sees input pixels
    ``stride·i − left`` to ``stride·i + right`` (3x3 convolutions, 2x2 pools of stride 2)."""
    left = right = 0
    stride = 1
    for i in range(index + 1):
        if i in CONV_SHAPES:
            left, right = left + stride, right + stride
        elif i in POOL_INDICES:
            right += stride
            stride *= 2
    return left, right, stride


def alignment(indices: Iterable[int]) -> int:
    """Where core boundaries may fall: the largest stride of the layers (16 px up to relu5_1)."""
    return max(reach(i)[2] for i in indices)


def margin_for(indices: Iterable[int]) -> int:
    """Input pixels around a core that make every core feature of these layers exact, rounded up
    to the alignment (80 px up to relu5_1, 40 px up to relu4_2)."""
    indices = list(indices)
    need = 0
    for left, right, stride in map(reach, indices):
        # the first core feature reaches `left` px before the core, the last `right - stride + 1` after
        need = max(need, left, right - stride + 1)
    align = alignment(indices)
    return -(-need // align) * align


def spans(length: int, core: int, align: int) -> list[tuple[int, int]]:
    """``[start, end)`` pieces of ``0..length``, each at most ``core`` long (a multiple of ``align``),
    as equal as the ``align`` grid allows; the last one ends at ``length``."""
    cells = -(-length // align)  # the last cell may be partial: it ends at `length`
    count = -(-cells // (core // align))
    # the longer pieces last: the partial cell joins a long piece, not a short one
    sizes = [cells // count + (1 if k >= count - cells % count else 0) for k in range(count)]
    cuts = [0]
    for size in sizes:
        cuts.append(min(length, cuts[-1] + size * align))
    return list(zip(cuts, cuts[1:]))


def _core_slice(start: int, end: int, box_start: int, length: int, stride: int) -> tuple[slice, slice]:
    """The rows (or columns) of a layer of this stride that the core ``start..end`` owns: within the
    box's activation, and within the whole image's. The last core owns what the floor pooling keeps."""
    last = end >= length
    local = slice((start - box_start) // stride, None if last else (end - box_start) // stride)
    whole = slice(start // stride, None if last else end // stride)
    return local, whole


@dataclass(frozen=True)
class Tile:
    """One tile of an image of ``height x width`` pixels: its core and its box, as ``[start, end)``."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    box_rows: tuple[int, int]
    box_cols: tuple[int, int]
    height: int
    width: int

    @property
    def box_pixels(self) -> int:
        return (self.box_rows[1] - self.box_rows[0]) * (self.box_cols[1] - self.box_cols[0])

    def crop(self, images):
        """The box of ``[..., H, W]`` images (a view)."""
        return images[..., self.box_rows[0]:self.box_rows[1], self.box_cols[0]:self.box_cols[1]]

    def core(self, feats, stride: int):
        """The core's positions of the box's activation at a layer of this stride (a view)."""
        (rows, _), (cols, _) = self._slices(stride)
        return feats[..., rows, cols]

    def where(self, stride: int) -> tuple[slice, slice]:
        """The rows and columns of the whole image's layer of this stride that the core owns."""
        (_, rows), (_, cols) = self._slices(stride)
        return rows, cols

    def _slices(self, stride: int):
        return (_core_slice(*self.rows, self.box_rows[0], self.height, stride),
                _core_slice(*self.cols, self.box_cols[0], self.width, stride))


def box_side(length: int, core: int, margin: int, align: int) -> int:
    """The longest box along one side of the image (its largest box is the product of two)."""
    return max(min(length, end + margin) - max(0, start - margin) for start, end in spans(length, core, align))


def tile_grid(height: int, width: int, core: int, margin: int, align: int) -> list[Tile]:
    """Tiles with cores of at most ``core`` px (a multiple of ``align``) covering the image, row by row."""
    if core % align or margin % align:
        raise ValueError(f"tile cores ({core} px) and margins ({margin} px) must be multiples of {align} px")

    def boxed(start: int, end: int, length: int) -> tuple[int, int]:
        return max(0, start - margin), min(length, end + margin)

    return [Tile(r, c, boxed(*r, height), boxed(*c, width), height, width)
            for r in spans(height, core, align) for c in spans(width, core, align)]


def largest_box(tiles: Sequence[Tile]) -> int:
    """Pixels of the largest box: what one tile's pass through the network holds."""
    return max(t.box_pixels for t in tiles)


def tiled_work(tiles: Sequence[Tile]) -> float:
    """The cost model of ``docs/tiling.md`` (section Cost): a tiled step's network work relative to the whole
    image's. Pass 1 is a forward pass (1/3 of a forward and backward), pass 2 a forward and backward,
    both over the boxes, which overlap by their margins."""
    tile = tiles[0]
    return (1 / 3 + 1) * sum(t.box_pixels for t in tiles) / (tile.height * tile.width)


def largest_core(tiles: Sequence[Tile]) -> int:
    """The longest side of a core, in pixels."""
    return max(max(t.rows[1] - t.rows[0], t.cols[1] - t.cols[0]) for t in tiles)


__all__ = ["Tile", "tile_grid", "spans", "box_side", "reach", "margin_for", "alignment", "largest_box", "largest_core", "tiled_work"]
