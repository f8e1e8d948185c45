"""The temporal loss of a clip's frame (docs/engine.md, section Clips): how far the image is from earlier
stylized frames warped onto it, where the confidence says those warps hold (Ruder, Dosovitskiy and
Brox, *Artistic style transfer for videos*, GCPR 2016). For each image n of a group,

    temporal(x_n) = Σ_j Σ_p c_j(p) · |x_n(p) − t_j(p)|² / (3 · H · W)

over the earlier frames j, with t_j frame j's stylized output warped onto this frame and c_j its
confidence (0 or 1, or between when resized). A term on the image itself (key ``"input"``, as total
variation), so tiles evaluate it on the whole image and stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Temporal:
    """One earlier stylized frame for a frame of a clip: ``target`` ``[H, W, 3]`` float32 in [0, 1] (that
    frame's output warped onto this frame) and ``confidence`` ``[H, W]`` float32 (where the warp holds)."""

    target: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        target = np.ascontiguousarray(self.target, np.float32)
        confidence = np.ascontiguousarray(self.confidence, np.float32)
        if target.ndim != 3 or target.shape[2] != 3 or confidence.shape != target.shape[:2]:
            raise ValueError(f"a temporal target is [H, W, 3] with an [H, W] confidence, not {target.shape} "
                             f"with {confidence.shape}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "confidence", confidence)

    @property
    def size(self) -> tuple[int, int]:
        """(w, h)."""
        return self.target.shape[1], self.target.shape[0]

    def at(self, size: tuple[int, int]) -> "Temporal":
        """The target and the confidence resized to ``size`` (w, h): bilinear, antialiased when smaller."""
        if size == self.size:
            return self
        w, h = size
        both = np.concatenate([self.target, self.confidence[..., None]], axis=2)
        t = torch.from_numpy(both).permute(2, 0, 1)[None]
        small = (w * h) < (self.size[0] * self.size[1])
        out = F.interpolate(t, (h, w), mode="bilinear", align_corners=False, antialias=small)[0].clamp(0, 1)
        out = out.permute(1, 2, 0).numpy()
        return Temporal(out[..., :3], out[..., 3])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[3, H, W]`` and ``[1, H, W]``."""
        return torch.from_numpy(self.target).permute(2, 0, 1), torch.from_numpy(self.confidence)[None]


class TemporalLoss(nn.Module):
    """Σ_j Σ_p c_j(p) |x(p) − t_j(p)|² / (3·H·W) per image.

    ``target`` ``[N, J, 3, H, W]`` and ``confidence`` ``[N, J, 1, H, W]``, indexed by image along dim 0
    (a job with fewer earlier frames, or none, has zero confidence in the rest)."""

    def __init__(self, target: torch.Tensor, confidence: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target)
        self.register_buffer("confidence", confidence)

    @classmethod
    def of(cls, temporals: Sequence[Sequence[Temporal]], size: tuple[int, int],
           device: torch.device | str = "cpu") -> "TemporalLoss":
        """The loss of a group whose job n has the earlier frames ``temporals[n]``, at ``size`` (w, h)."""
        w, h = size
        frames = max(1, max(len(t) for t in temporals))
        target = torch.zeros(len(temporals), frames, 3, h, w)
        confidence = torch.zeros(len(temporals), frames, 1, h, w)
        for n, job in enumerate(temporals):
            for j, temporal in enumerate(job):
                target[n, j], confidence[n, j] = temporal.at(size).tensors()
        return cls(target.to(device), confidence.to(device))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        d = image[:, None] - self.target.to(image.dtype)
        weighted = self.confidence.to(image.dtype) * d * d
        return weighted.flatten(1).sum(1) / (3 * image.shape[-2] * image.shape[-1])


def frame_extras(start: Image.Image | None, temporal: Sequence[Temporal],
                 temporal_weight: float) -> list[tuple[str, bytes]]:
    """What a frame's job adds to its checkpoint fingerprint: the image it starts from and its temporal
    targets with their weight (nothing for a plain image's job)."""
    extras = []
    if start is not None:
        start = start.convert("RGB")
        extras.append((f"start {start.size}", start.tobytes()))
    if temporal:
        extras.append(("temporal_weight", repr(float(temporal_weight)).encode()))
        for t in temporal:
            extras.append((f"temporal {t.target.shape}", t.target.tobytes() + t.confidence.tobytes()))
    return extras


__all__ = ["Temporal", "TemporalLoss", "frame_extras"]
