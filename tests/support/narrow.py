"""A narrow VGG-19 (the real layers with an eighth of the channels, random weights) and tile grids:
what the float64 exactness tests of tiles share."""

from __future__ import annotations

import torch

from batchstyle.engine.layers import CONV_SHAPES, LAYER_INDEX
from batchstyle.engine.tile_grid import alignment, margin_for, tile_grid

ALL_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def narrow_weights(dtype=torch.float64) -> dict:
    """VGG-19's layers with an eighth of the channels (at least 4), random weights and biases."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for i, (out_ch, in_ch) in CONV_SHAPES.items():
        out_ch, in_ch = max(4, out_ch // 8), 3 if in_ch == 3 else max(4, in_ch // 8)
        state[f"features.{i}.weight"] = (torch.randn(out_ch, in_ch, 3, 3, generator=gen) * (2 / (in_ch * 9)) ** 0.5
                                         ).to(dtype)
        state[f"features.{i}.bias"] = (torch.randn(out_ch, generator=gen) * 0.1).to(dtype)
    return state


def narrow_vgg(dtype=torch.float64):
    """The narrow network as a stylizer's weights (they skip the check of VGG-19's channel counts)."""
    from batchstyle.engine.weights import VGGWeights

    return VGGWeights(tensors=narrow_weights(dtype), source="narrow (tests)", identity="narrow")


def indices(layers) -> list[int]:
    return [LAYER_INDEX[name] for name in layers]


def grid(height: int, width: int, core: int, layers) -> list:
    return tile_grid(height, width, core, margin_for(indices(layers)), alignment(indices(layers)))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()
