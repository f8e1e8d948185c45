"""The scheduler's decisions, as small pure functions: how many workers of which shape, how many
items one worker optimises together, and what happens to an item after a lost worker or an
out-of-memory error. They return decisions; the scheduler acts on them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchstyle.engine.memory import MIN_CORE, model_for

# Grouping pays while one item leaves the device partly idle (kernel launches, small matrices).
# Measured on a 2-core CPU with bf16 (batchstyle bench, image-iterations/s against one image):
# whole 3-scale runs to 256 px 1.17x in groups of 2 and 1.28x in groups of 4; at one fixed size,
# 4 together 1.17x at 128 px, 1.05x at 256 px, 0.84-1.14x at 512 px. So a CPU groups images up to
# 256x256 px, by 4. A GPU has far more parallelism to fill; up to 512x512 px by 8 is the starting
# point, not yet measured on a GPU.
GROUP_LIMITS = {"cuda": (512 * 512, 8), "cpu": (256 * 256, 4)}


def desired_workers(need: dict[int, int], gpus_total: int, gpus_per_node_max: int, cap: int | None,
                    cpu_nodes: int) -> dict[int, int]:
    """How many workers of each shape (0 = CPU, 1 or 2 GPUs) the remaining work calls for.

    Two-GPU workers are wanted first (they are the hardest to place); one-GPU workers take the
    GPUs left. Without GPUs every item runs on CPU workers, one per node.
    """
    if gpus_total == 0:
        n = min(sum(need.values()), cpu_nodes, cap or cpu_nodes)
        return {0: n}
    two = min(need.get(2, 0), gpus_total // 2) if gpus_per_node_max >= 2 else 0
    one = min(need.get(1, 0), gpus_total - 2 * two)
    if cap is not None:
        two = min(two, cap)
        one = min(one, cap - two)
    return {1: one, 2: two}


def auto_group_size(pixels: int, device_kind: str, memory_bytes: int | None, precision: str = "fp32") -> int:
    """How many items of ``pixels`` (final size) one worker optimises together.

    Items larger than the device's grouping threshold run alone; smaller ones are grouped up to its
    limit, and (with ``memory_bytes``) so that the group uses at most half the device's memory.
    """
    max_pixels, max_items = GROUP_LIMITS.get(device_kind, (0, 1))
    if pixels <= 0 or pixels > max_pixels:
        return 1
    size = max_items
    if memory_bytes:
        per_item = pixels * model_for(precision).whole  # the engine's measured model (engine/memory.py)
        size = min(size, max(1, math.floor(memory_bytes * 0.5 / per_item)))
    return max(1, size)


def fair_share(compatible: int, idle_workers: int, limit: int) -> int:
    """How many of ``compatible`` queued items one idle worker takes, so that 8 images on 2 idle
    GPUs run as 4 + 4, not 8 + nothing."""
    return max(1, min(limit, -(-compatible // max(idle_workers, 1))))


def fit_to_cluster(route: int, asked: int | None, gpus_per_node: int) -> int | str:
    """The route of an item on a cluster whose largest machine has ``gpus_per_node`` GPUs, or why
    it cannot run there. Items routed to two GPUs only by their size try one."""
    if route < 2 or gpus_per_node >= 2:
        return route
    if asked == 2:
        return ("gpus=2 needs two GPUs in one machine, but no node of this cluster has two; set gpus=1 "
                "or a smaller end_scale")
    return 1


def after_worker_lost(attempts: int, preempted: bool) -> int:
    """The item's count of attempts after its worker died: a preempted machine costs none."""
    return attempts if preempted else attempts + 1


@dataclass(frozen=True)
class Retry:
    """Run the item again on a worker of ``gpus`` GPUs, with tile cores of ``tile`` px (None: as before)."""

    gpus: int
    tile: int | None = None


def smaller_tile(tile_used: int) -> int | None:
    """Half the tile that ran out of memory (on the 16 px grid), or None below the smallest that
    ``--tile auto`` would use (``MIN_CORE``): then two GPUs are next."""
    half = tile_used // 2 // 16 * 16
    return half if half >= MIN_CORE else None


def after_out_of_memory(route: int, can_use_two: bool, tile_used: int = 0) -> Retry | str:
    """What an item that ran out of memory tries next: smaller tiles on the same worker shape, then a
    two-GPU worker, or why it fails. ``tile_used``: the tile core (or the untiled image's long side)
    it ran out with, 0 if unknown."""
    tile = smaller_tile(tile_used)
    if tile is not None:
        return Retry(route, tile)
    if route < 2 and can_use_two:
        return Retry(2)
    if route < 2:
        return ("out of memory on one GPU even with small tiles, and no node has two GPUs; lower end_scale, or "
                "run it on a machine with two GPUs with gpus=2 in the manifest")
    return "out of GPU memory even split over two GPUs; lower end_scale (or style_size)"


__all__ = ["desired_workers", "auto_group_size", "fair_share", "fit_to_cluster", "after_worker_lost",
           "after_out_of_memory", "smaller_tile", "Retry", "GROUP_LIMITS"]
