"""VGG-19 feature extractor addressed by layer names, optionally split over several devices."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .layers import CONV_INDICES, CONV_SHAPES, LAYER_INDEX, LAYER_NAMES, POOL_INDICES, layer_index, min_input_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Rescaling that keeps activation magnitudes near those of max pooling (docs/engine.md, section The network).
POOLING_SCALES = {"max": 1.0, "average": 2.0, "l2": 0.78}

# Where a split over N devices starts each next device when none is given: block boundaries.
# For two devices this is conv2_1 (module 5), as in the reference.
DEFAULT_SPLITS = ("conv2_1", "conv3_1", "conv4_1", "conv5_1")


class Scale(nn.Module):
    """Multiplies a module's output by a constant."""

    def __init__(self, module: nn.Module, scale: float):
        super().__init__()
        self.module = module
        self.scale = scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


class EdgePaddedConv(nn.Module):
    """A 3x3 convolution after replicate padding written as concatenation of the edge rows/columns.

    The same values as ``padding_mode="replicate"``; used for compiled models, whose compiler
    mishandles the backward of the native replication-pad op.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=0)
        self.conv.weight, self.conv.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
        x = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
        return self.conv(x)


def _pool(kind: str) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "average":
        return Scale(nn.AvgPool2d(2, 2), POOLING_SCALES["average"])
    if kind == "l2":
        return Scale(nn.LPPool2d(2, 2, 2), POOLING_SCALES["l2"])
    raise ValueError(f"pooling must be one of max, average, l2, not {kind!r}")


def device_plan(devices: Sequence[torch.device | str], split: Sequence[str] | None = None) -> list[int]:
    """Module indices at which each device after the first takes over.

    ``split`` names, for N devices, the N-1 layers that start devices 2..N (neural-style's
    multi-GPU strategy, by name). Without it the model is cut at block boundaries, which for two
    devices is the reference's cut before conv2_1.
    """
    n = len(devices)
    if n < 1:
        raise ValueError("at least one device is needed")
    if split is None:
        if n - 1 > len(DEFAULT_SPLITS):
            raise ValueError(f"{n} devices need an explicit split: {n - 1} layer names, one per extra device")
        split = DEFAULT_SPLITS[: n - 1]
    if len(split) != n - 1:
        raise ValueError(f"{n} devices need {n - 1} split layer(s), got {len(split)}: {', '.join(split)}")
    starts = [layer_index(name) for name in split]
    if any(b <= a for a, b in zip([0] + starts, starts)):
        raise ValueError(f"split layers must be in network order and after conv1_1: {', '.join(split)}")
    return starts


class VGGFeatures(nn.Module):
    """The VGG-19 convolutional trunk up to the deepest layer asked for.

    ImageNet normalisation happens inside; conv1_1 pads by replication (fewer edge artefacts);
    non-max pooling is rescaled to keep activation magnitudes. ``compilable`` writes the padding
    in a form ``torch.compile`` handles (same values). ``forward`` returns the requested
    activations by module index, plus the raw input under ``"input"``.
    """

    def __init__(self, weights: Mapping[str, torch.Tensor], layers: Iterable[str], pooling: str = "max",
                 devices: Sequence[torch.device | str] = ("cpu",), split: Sequence[str] | None = None,
                 compilable: bool = False):
        super().__init__()
        self.layer_names = tuple(dict.fromkeys(layers))
        self.pooling = pooling
        self.indices = sorted({layer_index(n) for n in self.layer_names})
        self.deepest = self.indices[-1]
        self.devices = [torch.device(d) for d in devices]
        starts = device_plan(self.devices, split)
        self.module_devices = [self.devices[sum(1 for s in starts if s <= i)] for i in range(self.deepest + 1)]

        modules = []
        for i in range(self.deepest + 1):
            name = LAYER_NAMES[i]
            if name.startswith("conv"):
                out_ch, in_ch = CONV_SHAPES[i]
                conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, padding_mode="replicate" if i == 0 else "zeros")
                conv.weight = nn.Parameter(weights[f"features.{i}.weight"], requires_grad=False)
                conv.bias = nn.Parameter(weights[f"features.{i}.bias"], requires_grad=False)
                module = EdgePaddedConv(conv) if i == 0 and compilable else conv
            elif name.startswith("relu"):
                module = nn.ReLU(inplace=True)
            else:
                module = _pool(pooling)
            modules.append(module.to(self.module_devices[i]))
        self.layers = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(self.devices[0]))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(self.devices[0]))
        self.eval()
        self.requires_grad_(False)

    def device_of(self, name: str) -> torch.device:
        return self.module_devices[layer_index(name)]

    def forward(self, image: torch.Tensor, layers: Iterable[str] | None = None) -> dict:
        wanted = self.indices if layers is None else sorted({layer_index(n) for n in layers})
        if wanted[-1] > self.deepest:
            raise ValueError(f"layer {LAYER_NAMES[wanted[-1]]} is deeper than this extractor "
                             f"(built up to {LAYER_NAMES[self.deepest]})")
        h, w = image.shape[-2:]
        need = min_input_size(wanted[-1])
        if min(h, w) < need:
            raise ValueError(f"image is {w}x{h} pixels at this scale, but layer {LAYER_NAMES[wanted[-1]]} "
                             f"needs at least {need}x{need}; raise min_scale or use a less elongated image")
        feats: dict = {"input": image}
        x = (image - self.mean) / self.std
        wanted_set = set(wanted)
        for i in range(wanted[-1] + 1):
            x = x.to(self.module_devices[i])
            module = self.layers[i]
            if isinstance(module, nn.ReLU) and i - 1 in wanted_set:
                x = torch.relu(x)  # keep the requested conv output intact
            else:
                x = module(x)
            if i in wanted_set:
                feats[i] = x
        return feats


__all__ = ["VGGFeatures", "LAYER_NAMES", "LAYER_INDEX", "CONV_INDICES", "POOL_INDICES", "CONV_SHAPES",
           "POOLING_SCALES", "layer_index", "min_input_size", "device_plan"]
