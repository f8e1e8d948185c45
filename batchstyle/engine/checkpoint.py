"""Checkpoints: the state at the end of a scale as a file (safetensors with metadata), and the
fingerprint that ties it to its inputs."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .files import atomic_write
from .masks import greyscale
from .optim import AdamMoments
from .settings import StyleSettings
from .temporal import Temporal, frame_extras

CHECKPOINT_FORMAT = "batchstyle-checkpoint-1"


@dataclass
class Checkpoint:
    """The state at the end of a scale: enough to continue with the next scale, bit for bit on CPU."""

    scale_index: int
    scale_count: int
    image: torch.Tensor  # [1, 3, H, W] averaged image, CPU
    adam: AdamMoments | None
    rng_state: torch.Tensor
    fingerprint: str

    def fits(self, settings: StyleSettings, weights_identity: str, content: Image.Image,
             styles: Sequence[Image.Image], masks: Sequence[Image.Image] | None = None, *,
             start: Image.Image | None = None, temporal: Sequence[Temporal] = (),
             temporal_weight: float = 0.0) -> bool:
        """Whether a run of these images, masks, settings and weights can continue from this checkpoint
        (for a frame of a clip: also its start image, temporal targets and weight, as its :class:`Job`)."""
        images = [content.convert("RGB"), *(style.convert("RGB") for style in styles)]
        grey = [greyscale(mask) for mask in masks] if masks else None
        extras = frame_extras(start, temporal, temporal_weight)
        return self.fingerprint == fingerprint(settings, weights_identity, images, grey, extras)

    def to_bytes(self) -> bytes:
        tensors = {"image": self.image.contiguous(), "rng_state": self.rng_state.contiguous()}
        meta = {"format": CHECKPOINT_FORMAT, "scale_index": str(self.scale_index),
                "scale_count": str(self.scale_count), "fingerprint": self.fingerprint}
        if self.adam is not None:
            tensors["exp_avg"] = self.adam.exp_avg.contiguous()
            tensors["exp_avg_sq"] = self.adam.exp_avg_sq.contiguous()
            meta["adam_step"] = repr(self.adam.step)
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "checkpoint") -> "Checkpoint":
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
            tensors = st_load(data)
        except Exception as exc:
            raise ValueError(f"{name}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{name}: not a batchstyle checkpoint (format {meta.get('format')!r})")
        adam = None
        if "exp_avg" in tensors:
            adam = AdamMoments(tensors["exp_avg"], tensors["exp_avg_sq"], float(meta["adam_step"]))
        return cls(int(meta["scale_index"]), int(meta["scale_count"]), tensors["image"], adam,
                   tensors["rng_state"], meta["fingerprint"])

    def save(self, path: str | os.PathLike) -> None:
        atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Checkpoint":
        return cls.from_bytes(Path(path).read_bytes(), name=str(path))


def fingerprint(settings: StyleSettings, weights_identity: str, images: Sequence[Image.Image],
                masks: Sequence[Image.Image] | None = None, extras: Sequence[tuple[str, bytes]] = ()) -> str:
    """What a checkpoint must match to be resumed: the settings, the weights, every input pixel and,
    where there are masks, every mask pixel; for a frame of a clip, its ``extras``
    (:func:`temporal.frame_extras`: the start image, the temporal targets and their weight)."""
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    digest.update(weights_identity.encode())
    for image in images:
        digest.update(f"{image.size}".encode())
        digest.update(image.tobytes())
    for mask in masks or ():
        digest.update(f"mask {mask.size}".encode())
        digest.update(mask.tobytes())
    for name, data in extras:
        digest.update(name.encode())
        digest.update(data)
    return digest.hexdigest()


__all__ = ["Checkpoint", "CHECKPOINT_FORMAT", "fingerprint"]
