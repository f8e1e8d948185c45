"""The objective evaluated tile by tile, with the whole image's result (``docs/tiling.md``).

Every network term depends on the image only through sums over positions ``s_j``, so with
``g_j = ∂L/∂s_j`` the gradient is ``Σ_tiles d/dx Σ_j ⟨g_j, s_j^tile(x)⟩``. One evaluation is

1. pass 1, no gradient: each tile's features at its core, summed per term (:func:`summed`);
2. the loss from the summed sums, made leaves, and its gradient ``g_j`` (small: C×C per style
   layer, two numbers per content layer); total variation needs no network and is taken on the
   whole image here, which also starts the image's gradient;
3. pass 2: each tile again with gradient, ``Σ_j ⟨g_j, s_j^tile⟩`` back to the tile's pixels,
   added into the image's gradient (core and margin).

Memory holds one tile's activations; the image, its gradient and the content's activations
stay whole.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Callable, Iterator, Sequence

import torch

from .objective import Objective, Weighted
from .tile_grid import Tile, reach
from .vgg import VGGFeatures

Sums = tuple[torch.Tensor, ...]


def core_features(forward: Callable, images: torch.Tensor, layers: Sequence[str], tiles: Sequence[Tile],
                  keys: Sequence[int], autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext
                  ) -> Iterator[tuple[Tile, dict]]:
    """Each tile and its core activations by module index (``keys``), one tile at a time. Only the
    network runs under ``autocast``: what the caller computes from the activations (the Gram sums)
    stays in float32, as it does for the whole image."""
    strides = {key: reach(key)[2] for key in keys}
    for tile in tiles:
        with autocast():
            feats = forward(tile.crop(images), layers)
        yield tile, {key: tile.core(feats[key], strides[key]) for key in keys}
        del feats


def summed(parts: Iterator[list[Sums]]) -> list[Sums]:
    """Per-tile sums (one tuple per term) added up over the tiles."""
    total: list[Sums] | None = None
    for part in parts:
        total = part if total is None else [tuple(a + b for a, b in zip(t, p)) for t, p in zip(total, part)]
    return total or []


def whole_features(forward: Callable, images: torch.Tensor, layers: Sequence[str], tiles: Sequence[Tile],
                   keys: Sequence[int]) -> dict:
    """The activations of the whole images at ``keys``, assembled from the tiles' cores (no gradient)."""
    out: dict = {"input": images}
    for tile, cores in core_features(forward, images, layers, tiles, keys):
        for key, core in cores.items():
            if key not in out:
                n, channels = core.shape[:2]
                stride = reach(key)[2]
                out[key] = core.new_empty(n, channels, tile.height // stride, tile.width // stride)
            rows, cols = tile.where(reach(key)[2])
            out[key][..., rows, cols] = core
    return out


class TiledObjective(Objective):
    """:class:`Objective`'s losses and gradient, computed over ``tiles`` in two passes."""

    def __init__(self, model: VGGFeatures, terms: Sequence[Weighted], layers: Sequence[str], tiles: Sequence[Tile],
                 forward: Callable | None = None,
                 autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext):
        super().__init__(model, terms, layers, forward, autocast)
        self.tiles = list(tiles)
        self.keys = sorted({term.key for term in self.terms if term.key != "input"})
        self.strides = {key: reach(key)[2] for key in self.keys}
        self.counts = [self._positions(term.key) for term in self.network]

    @property
    def network(self) -> list[Weighted]:
        """The terms that read the network's activations (all but total variation)."""
        return [term for term in self.terms if term.key != "input"]

    def _positions(self, key: int) -> int:
        stride = self.strides[key]
        tile = self.tiles[0]
        return (tile.height // stride) * (tile.width // stride)

    def _tile_sums(self, tile: Tile, cores: dict) -> list[Sums]:
        return [term.sums(cores[term.key], tile.where(self.strides[term.key])) for term in self.network]

    def _pass_one(self, images: torch.Tensor, forward: Callable,
                  autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext) -> list[Sums]:
        with torch.no_grad():
            cores = core_features(forward, images, self.layers, self.tiles, self.keys, autocast)
            return summed(self._tile_sums(tile, c) for tile, c in cores)

    def _losses_of(self, sums: list[Sums], images: torch.Tensor) -> torch.Tensor:
        """``[N]``: the weighted terms, in order, from the network terms' sums and the images."""
        of_sums = iter(zip(sums, self.counts))
        first = self.model.devices[0]
        return sum((term({"input": images}) if term.key == "input" else term.of_sums(*next(of_sums))).to(first)
                   for term in self.terms)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sums = self._pass_one(images, self.forward, self.autocast)
        leaves = [tuple(s.detach().requires_grad_() for s in term_sums) for term_sums in sums]
        x = images.detach().requires_grad_()
        losses = self._losses_of(leaves, x)
        flat = [s for term_sums in leaves for s in term_sums]
        gradient, *grads = torch.autograd.grad(losses.sum(), [x, *flat], allow_unused=True)
        gradient = torch.zeros_like(x) if gradient is None else gradient
        weights = iter(grads)
        self._pass_two(images, [tuple(next(weights) for _ in term_sums) for term_sums in leaves], gradient)
        return losses.detach(), gradient

    def _pass_two(self, images: torch.Tensor, weights: list[Sums], gradient: torch.Tensor) -> None:
        """Each tile's ``Σ_j ⟨g_j, s_j^tile⟩`` back to its pixels, added into ``gradient``."""
        first = self.model.devices[0]
        for tile in self.tiles:
            x = tile.crop(images).detach().requires_grad_()
            with self.autocast():
                feats = self.forward(x, self.layers)
            cores = {key: tile.core(feats[key], stride) for key, stride in self.strides.items()}
            surrogate = sum(((g * s).sum().to(first) for g_term, s_term in zip(weights, self._tile_sums(tile, cores))
                             for g, s in zip(g_term, s_term) if g is not None), torch.zeros((), device=first))
            del feats, cores
            if surrogate.requires_grad:
                (tile_gradient,) = torch.autograd.grad(surrogate, x)
                tile.crop(gradient).add_(tile_gradient)

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        """Each image's loss ``[N]``, in float32 without compilation, tile by tile."""
        return self._losses_of(self._pass_one(images, self.model), images)


__all__ = ["TiledObjective", "core_features", "summed", "whole_features"]
