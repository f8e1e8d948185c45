"""What the objective compares with: the content images' activations and the style images' statistics.

Targets go through the same arithmetic as the iterate (bf16 convolutions under bf16), so that
rounding shifts both alike: the content image scores zero content loss, as in fp32. Style
statistics are kept in a :class:`TargetCache`, since every job that uses a style image at a size
needs the same ones.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Callable, Sequence

import torch
from PIL import Image

from .layers import LAYER_INDEX
from .losses import STYLE_LOSS_CLASSES
from .pixels import tensor_at
from .settings import StyleSettings
from .tiled_objective import core_features, summed, whole_features
from .tile_grid import Tile, reach
from .vgg import VGGFeatures


class TargetCache:
    """Style statistics per (style image, size, layers, pooling, loss), kept on the device.

    Every job that uses a style image at a scale needs the same target statistics; a worker
    computes them once and reuses them for every later job, until ``max_bytes`` is exceeded
    (least recently used entries go first).
    """

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, list] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(stats: list) -> int:
        return sum(t.numel() * t.element_size() for s in stats for t in (s if isinstance(s, tuple) else (s,)))

    def get(self, key: tuple, compute: Callable[[], list]) -> list:
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        stats = compute()
        self.entries[key] = stats
        self.bytes += self._size(stats)
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, old = self.entries.popitem(last=False)
            self.bytes -= self._size(old)
        return stats


class Targets:
    """Computes targets through one feature extractor, in the stylizer's precision and memory format."""

    def __init__(self, model: VGGFeatures, cache: TargetCache, autocast: Callable[[], AbstractContextManager],
                 memory_format: torch.memory_format, precision: str):
        self.model = model
        self.cache = cache
        self.autocast = autocast
        self.memory_format = memory_format
        self.precision = precision

    @torch.no_grad()
    def content(self, images: torch.Tensor, layers: tuple[str, ...], tiles: Sequence[Tile] | None = None) -> dict:
        """The activations of ``images`` (``[N, 3, H, W]``) by module index, assembled from ``tiles`` if given."""
        with self.autocast():
            if tiles is None:
                return self.model(images, layers=layers)
            return whole_features(self.model, images, layers, tiles, [LAYER_INDEX[name] for name in layers])

    @torch.no_grad()
    def style(self, image: Image.Image, digest: str, size: tuple[int, int], settings: StyleSettings,
              tiles: Sequence[Tile] | None = None) -> list:
        """A style image's statistics at ``size``, one entry per style layer (``settings.style_layers``),
        summed over ``tiles`` if given."""
        loss_cls = STYLE_LOSS_CLASSES[settings.style_loss]
        key = (digest, *size, settings.style_layers, settings.pooling, settings.style_loss, self.model.deepest,
               self.precision, None if tiles is None else tuple(tiles))

        def compute() -> list:
            style = tensor_at(image, *size).to(self.model.devices[0]).contiguous(memory_format=self.memory_format)
            if tiles is not None:
                return self._tiled_style(style, settings, tiles)
            with self.autocast():
                feats = self.model(style, layers=settings.style_layers)
            # statistics outside autocast: Gram matrices and moments are float32 matmuls
            return [loss_cls.statistics(feats[LAYER_INDEX[name]].float()) for name in settings.style_layers]

        return self.cache.get(key, compute)

    def _tiled_style(self, style: torch.Tensor, settings: StyleSettings, tiles: Sequence[Tile]) -> list:
        """The statistics of each style layer from the sums over the tiles' cores."""
        loss_cls = STYLE_LOSS_CLASSES[settings.style_loss]
        keys = [LAYER_INDEX[name] for name in settings.style_layers]
        cores = core_features(self.model, style, settings.style_layers, tiles, keys, self.autocast)
        sums = summed([loss_cls.sums(c[key].float()) for key in keys] for _, c in cores)  # float32, as whole
        height, width = style.shape[-2:]
        counts = [(height // reach(key)[2]) * (width // reach(key)[2]) for key in keys]
        return [loss_cls.moments(s, count) for s, count in zip(sums, counts)]


__all__ = ["TargetCache", "Targets"]
