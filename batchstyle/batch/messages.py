"""What the driver and a worker send each other: an item's inputs in, its events out.

A worker receives bytes (inputs, checkpoint) and returns encoded image bytes, so it never touches
the user's file system. This module imports neither torch nor Ray.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from .items import Item


@dataclass
class ItemInputs:
    """An item and the bytes a worker needs to make it."""

    item: Item
    content: bytes
    styles: list[Any]  # ObjectRefs to style bytes (shared by many items) or bytes
    checkpoint: bytes | None = None
    max_pixels: int | None = None  # the largest input image accepted (None: the engine's default)
    tile: str | int | None = None  # how to tile it (auto, off, core px); None: the worker's speed options
    preview_interval: float = 0.0  # seconds between live previews of this item; 0: none
    masks: list[bytes] = field(default_factory=list)  # the item's mask files, sent with it (most masks belong
    # to one content image, so unlike styles they are not kept in Ray's object store for the whole run)
    earlier: list[tuple[bytes, bytes]] = field(default_factory=list)  # a frame of a clip: each earlier frame
    # it starts from, as (its content frame, its output)


@dataclass
class ItemCheckpoint:
    """The engine's state after a finished scale, to continue from if the item is interrupted."""

    data: bytes


@dataclass
class ItemPreview:
    """A small JPEG of the image as it forms, for the live dashboard (``ItemInputs.preview_interval``)."""

    image: bytes
    width: int
    height: int
    of_width: int  # the size of the image it shows, at the current scale
    of_height: int
    scale_index: int
    iteration: int

    @property
    def version(self) -> str:
        return f"{self.scale_index}.{self.iteration}"


@dataclass
class ItemResult:
    image: bytes  # encoded in the output's format
    seconds: float
    iterations: int
    final_loss: float | None
    gpu_peak_bytes: int
    resumed_from_scale: int | None = None
    group_size: int = 1  # how many items were optimised together with this one (itself included)
    notes: list[str] = field(default_factory=list)  # warnings raised while decoding its inputs
    share: float = 1.0  # the pixel-iterations it ran, as a share of the most its scales could (adaptive: < 1)


@dataclass
class ItemFailure:
    kind: str  # "error": the item is bad; "oom": out of GPU memory; "device": the device is broken
    message: str
    detail: str = ""  # the traceback, for the failure record
    group_size: int = 1  # > 1: it failed together with the other items of its group
    tile_used: int = 0  # out of memory: the tile core in px it ran with (the scale's long side if whole; 0: unknown)


@dataclass
class WorkerInfo:
    node_id: str  # the Ray node it lives on: a worker whose node left the cluster is lost
    host: str
    gpu_ids: list[str]
    devices: list[str]
    memory_bytes: int = 0  # of the first GPU; 0 on CPU
    device_kind: str = "cpu"  # cpu or cuda (of the first device)
    precision: str = "fp32"  # as resolved on this worker

    @property
    def label(self) -> str:
        gpus = f" GPU {','.join(self.gpu_ids)}" if self.gpu_ids else " CPU"
        return f"{self.host}{gpus}"


def failure_of(exc: BaseException, item: Item) -> ItemFailure:
    """An exception as an item failure: ``device`` for a broken GPU, else ``error``."""
    text = str(exc)
    kind = "device" if "CUDA error" in text or type(exc).__name__ == "AcceleratorError" else "error"
    name = item.content.name
    message = text if text and text.startswith(name) else f"{type(exc).__name__}: {text}"
    return ItemFailure(kind, message, traceback.format_exc())


__all__ = ["ItemInputs", "ItemCheckpoint", "ItemPreview", "ItemResult", "ItemFailure", "WorkerInfo", "failure_of"]
