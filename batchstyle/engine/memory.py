"""How much memory an optimisation step takes, and the tiles that make it fit a budget.

The model is linear in pixels, with constants measured by ``batchstyle bench`` (peak memory of
one full iteration, each size in a fresh process; README "Memory"):

* whole image: ``base + whole · pixels`` per image of a group;
* with tiles: ``base + state · pixels + tile · box`` per image, where ``state`` is what stays
  image-sized (the image, its gradient, Adam's moments, the iterate average, the content's
  activations, total variation) and ``box`` the pixels of the largest tile with its margins.

This module does not import torch at import time (the batch planner uses the model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from .tile_grid import box_side


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one optimisation step, from its measured constants (bytes, bytes per pixel)."""

    base: float
    whole: float
    state: float
    tile: float

    def whole_bytes(self, pixels: int, images: int = 1) -> float:
        return self.base + self.whole * pixels * images

    def tiled_bytes(self, pixels: int, box_pixels: int, images: int = 1) -> float:
        return self.base + (self.state * pixels + self.tile * box_pixels) * images

    def largest_whole(self, budget: float, images: int = 1) -> int:
        """The most pixels per image that fit ``budget`` bytes whole."""
        return max(0, int((budget - self.base) / (self.whole * images)))

    def largest_tiled(self, budget: float, box_pixels: int, images: int = 1) -> int:
        """The most pixels per image that fit ``budget`` bytes with tiles of ``box_pixels``."""
        return max(0, int(((budget - self.base) / images - self.tile * box_pixels) / self.state))


# Measured on a CPU (peak RSS of one full iteration, targets included, each configuration in a fresh
# process; torch 2.x, VGG-19 to relu5_1 with relu4_2 content, fp32): README "Big images", fitted by
# `batchstyle bench --sizes 1024,2048 --steps 1 --warmup 0 -c fp32,tile=off -c fp32,tile=512`.
# bf16 was not measured (this CPU has no bfloat16 units): its activations are taken as 2/3 of fp32's
# (the convolutions' outputs are half the size, the float32 copies for the losses are not).
MODELS = {
    "fp32": MemoryModel(base=1.09e9, whole=2626.0, state=156.0, tile=2107.0),
    "bf16": MemoryModel(base=1.09e9, whole=1750.0, state=156.0, tile=1400.0),
}

# Masks: each region's guided features are another copy of every style layer's activations. Measured
# at 512 px with two regions (`python -m benchmarks.masks --cost`): +1270 bytes per pixel, about a
# quarter of an image's whole-step cost per region; a masked image counts as that many images.
REGION_SHARE = 0.25


def image_equivalents(images: int, regions: int = 0) -> float:
    """What ``images`` images with ``regions`` masked regions each weigh in the memory model."""
    return images * (1 + REGION_SHARE * regions)


BUDGET_FRACTION = {"cuda": 0.9, "cpu": 0.8}  # of the memory free for this process: room for fragmentation
MIN_CORE = 128  # px: auto never tiles finer (margins would be most of the work)


def model_for(precision: str) -> MemoryModel:
    return MODELS.get(precision, MODELS["fp32"])  # tf32 keeps float32 activations


def memory_budget(device: Any) -> int:
    """Bytes this process may use on ``device`` (a torch device): a fraction of what is free to it."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int((free + torch.cuda.memory_reserved(device)) * BUDGET_FRACTION["cuda"])
    return int(_cpu_memory() * BUDGET_FRACTION["cpu"])


def _cpu_memory() -> int:
    """The machine's available memory plus this process's own, within its address-space limit."""
    import resource

    info = _meminfo("/proc/meminfo")
    status = _meminfo("/proc/self/status")
    resident = status.get("VmRSS", 0)
    if "MemAvailable" in info:
        free = info["MemAvailable"] + resident
    else:  # not Linux: half the physical memory
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY:  # `ulimit -v`: the address space, of which the mappings take a part
        free = min(free, limit - status.get("VmSize", 0) + resident)
    return max(0, free)


def _meminfo(path: str) -> dict[str, int]:
    """``Key: N kB`` lines of a /proc file, in bytes ({} where there is none)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def auto_core(width: int, height: int, images: int, model: MemoryModel, budget: float, margin: int,
              align: int) -> int | None:
    """None when the whole image fits ``budget``, else the largest tile core (a multiple of
    ``align``) whose step fits; the smallest one when none does (it is the best chance)."""
    if model.whole_bytes(width * height, images) <= budget:
        return None
    cells = -(-max(width, height) // align)
    smallest = max(align, MIN_CORE // align * align)
    for pieces in range(1, cells + 1):  # the grids from the coarsest: n pieces along the long side
        core = -(-cells // pieces) * align
        if core <= smallest:
            break
        box = box_side(height, core, margin, align) * box_side(width, core, margin, align)
        if model.tiled_bytes(width * height, box, images) <= budget:
            return core
    return smallest


def tile_core(option: str | int, width: int, height: int, images: float, precision: str, devices: Sequence[Any],
              margin: int, align: int) -> int | None:
    """The tile core for one scale (None: the whole image), by the ``tile`` speed option."""
    if option == "off":
        return None
    if option == "auto":
        return auto_core(width, height, images, model_for(precision), memory_budget(devices[0]), margin, align)
    core = max(align, int(option) // align * align)
    return core if max(width, height) > core else None


__all__ = ["MemoryModel", "MODELS", "model_for", "memory_budget", "auto_core", "tile_core", "MIN_CORE", "REGION_SHARE",
           "image_equivalents"]
