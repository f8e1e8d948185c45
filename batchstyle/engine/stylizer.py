"""The stylizer: VGG-19 on its devices, ready for any number of runs; and :func:`stylize`, one call."""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image

from .checkpoint import Checkpoint
from .devices import check_devices, configure_torch, default_devices
from .events import Progress, ScaleFinished
from .layers import LAYER_NAMES, layer_index
from .run import Job, Run
from .settings import StyleSettings
from .speed import Speed
from .targets import TargetCache
from .vgg import VGGFeatures, device_plan
from .weights import VGGWeights, load_weights_file, resolve_weights


class StopStylize(Exception):
    """Raise from a :func:`stylize` callback to end the run early and keep the current image."""


class Stylizer:
    """VGG-19 on one or more devices, ready to stylize any number of images.

    ``weights``: a :class:`VGGWeights`, a state dict, a file path, or None to resolve them
    (``BATCHSTYLE_WEIGHTS``, cache, torchvision download). ``devices``: one device, or several to
    split the network over them (``split`` names the first layer on each extra device).
    ``speed``: precision, memory format and compilation (:class:`Speed`; ``auto`` by default). A
    stylizer for CUDA devices sets cuDNN's process-wide flags for its precision when it is made.
    """

    def __init__(self, weights: VGGWeights | Mapping | str | os.PathLike | None = None,
                 devices: Sequence[str | torch.device] | None = None, split: Sequence[str] | None = None,
                 speed: Speed | None = None):
        if weights is None:
            weights = resolve_weights()
        elif isinstance(weights, (str, os.PathLike)):
            weights = load_weights_file(weights)
        elif not isinstance(weights, VGGWeights):
            weights = VGGWeights.from_state_dict(weights, source="memory")
        self.weights = weights
        self.devices = check_devices(devices if devices else default_devices())
        self.split = tuple(split) if split else None
        self.speed = (speed or Speed()).resolve(self.devices)
        configure_torch(self.devices, self.speed)
        starts = device_plan(self.devices, self.split)
        self._placed = {}
        for key, tensor in weights.tensors.items():
            index = int(key.split(".")[1])
            self._placed[key] = tensor.to(self.devices[sum(1 for s in starts if s <= index)])
        self._models: dict[tuple, VGGFeatures] = {}
        self._compiled: dict[tuple, Callable] = {}
        self.target_cache = TargetCache()

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.speed.memory_format == "channels_last" else torch.contiguous_format

    def autocast(self) -> AbstractContextManager:
        """The context the convolutions run in: bfloat16 autocast under bf16, float32 otherwise."""
        if self.speed.precision == "bf16":
            return torch.autocast(self.devices[0].type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, layers: Sequence[str], pooling: str = "max") -> VGGFeatures:
        """A feature extractor reaching the deepest of ``layers`` (cached, sharing the weights)."""
        deepest = max(layer_index(n) for n in layers)
        key = (deepest, pooling)
        if key not in self._models:
            self._models[key] = self._extractor(deepest, pooling)
        return self._models[key]

    def iteration_forward(self, model: VGGFeatures) -> Callable:
        """The forward pass used for optimisation steps: the model, compiled if ``speed.compile``."""
        if not self.speed.compile:
            return model
        key = (model.deepest, model.pooling)
        if key not in self._compiled:
            twin = self._extractor(model.deepest, model.pooling, compilable=True)
            self._compiled[key] = torch.compile(twin, dynamic=False)
        return self._compiled[key]

    def _extractor(self, deepest: int, pooling: str, compilable: bool = False) -> VGGFeatures:
        model = VGGFeatures(self._placed, [LAYER_NAMES[deepest]], pooling=pooling, devices=self.devices,
                            split=self.split, compilable=compilable)
        return model.to(memory_format=self.memory_format)

    def run(self, content: Image.Image, styles: Sequence[Image.Image], settings: StyleSettings | None = None,
            checkpoint: Checkpoint | None = None, tile: str | int | None = None,
            masks: Sequence[Image.Image] | None = None) -> Run:
        """One stylization (a group of one job). ``tile``: this run's tiling (default: ``speed.tile``);
        ``masks``: where each style applies (one greyscale image per style, see :class:`Job`)."""
        return Run(self, [Job(content, styles, settings or StyleSettings(), checkpoint, masks)], tile)

    def run_group(self, jobs: Sequence[Job], tile: str | int | None = None) -> Run:
        """Several jobs of the same size and loop settings, optimised together (see :class:`Run`)."""
        return Run(self, jobs, tile)


def stylize(content: Image.Image, styles: Image.Image | Sequence[Image.Image],
            settings: StyleSettings | None = None, *,
            weights: VGGWeights | Mapping | str | os.PathLike | None = None,
            devices: Sequence[str] | None = None, stylizer: Stylizer | None = None,
            callback: Callable[[Progress | ScaleFinished], object] | None = None,
            checkpoint: Checkpoint | None = None, speed: Speed | None = None,
            masks: Sequence[Image.Image] | None = None, **overrides) -> Image.Image:
    """Stylize ``content`` with one or more style images and return the result as a PIL image.

    ``masks``: one greyscale image per style, white where that style applies (see :class:`Job`).
    Settings come from ``settings`` with keyword ``overrides`` on top (``end_scale=256``, ...).
    ``speed`` sets precision, memory format and compilation for a new stylizer (default: auto).
    ``callback`` receives every event; raising :class:`StopStylize` in it ends the run early and the
    current image is returned.
    """
    settings = (settings or StyleSettings()).replace(**overrides)
    if isinstance(styles, Image.Image):
        styles = [styles]
    stylizer = stylizer or Stylizer(weights, devices, speed=speed)
    run = stylizer.run(content, styles, settings, checkpoint, masks=masks)
    try:
        for event in run:
            if callback is not None:
                callback(event)
    except StopStylize:
        pass
    return run.pil()


__all__ = ["Stylizer", "StopStylize", "stylize"]
