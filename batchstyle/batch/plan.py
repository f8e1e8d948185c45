"""From manifest items to work: item ids, what is already done, and which worker shape runs what."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from batchstyle.engine.schedule import scale_ladder
from batchstyle.engine.settings import batch_key

from .manifest import Item
from .store import HashCache, OutputDir, PlanEntry

# Bumped whenever the engine would make a different image from the same inputs and settings,
# so that outputs of an older engine are not taken for current ones.
ENGINE_REVISION = 1

DEFAULT_TWO_GPU_PIXELS = 12_000_000


@dataclass
class Work:
    """An item with its id, its routing and its cost, as the scheduler sees it."""

    item: Item
    id: str
    gpus: int  # 1 or 2: the worker shape it goes to
    units: int  # pixel-iterations (for ETAs)
    attempts: int = 0  # runs that ended without a result (worker lost, OOM)
    escalated: bool = False
    batch_key: str | None = None  # items with equal keys may be optimised together; None: alone
    pixels: int = 0  # of the final image
    solo: bool = False  # failed inside a batch once: from now on it runs alone


@dataclass
class Plan:
    todo: list[Work]
    done: list[Work]
    weights: str

    @property
    def all(self) -> list[Work]:
        return self.done + self.todo


def item_id(item: Item, hashes: HashCache, weights_identity: str) -> str:
    """Hash of the input images' bytes, the resolved settings, the weights and the output path."""
    payload = {
        "content": hashes.digest(item.content),
        "styles": [hashes.digest(s) for s in item.styles],
        "settings": item.settings.to_dict(),
        "weights": weights_identity,
        "output": item.output,
        "engine": ENGINE_REVISION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def route(item: Item, end_size: tuple[int, int], two_gpu_pixels: int) -> int:
    """1 or 2 GPUs: the manifest's ``gpus`` if given, else 2 when the final image exceeds the threshold."""
    if item.gpus is not None:
        return item.gpus
    return 2 if end_size[0] * end_size[1] > two_gpu_pixels else 1


def make_plan(items: list[Item], out: OutputDir, weights_identity: str, *, force: bool = False,
              two_gpu_pixels: int = DEFAULT_TWO_GPU_PIXELS) -> Plan:
    """Give every item its id and split them into done and to-do; record the plan for ``status``."""
    out.create()
    hashes = HashCache(out.meta / "hashes.json")
    works = []
    for item in items:
        ladder = scale_ladder(item.content_size, item.settings)
        sizes = [scale.size for scale in ladder]
        end_size = sizes[-1]
        works.append(Work(item, item_id(item, hashes, weights_identity), route(item, end_size, two_gpu_pixels),
                          sum(scale.units for scale in ladder), batch_key=batch_key(item.settings, sizes),
                          pixels=end_size[0] * end_size[1]))
    hashes.save()
    if force:
        for work in works:
            out.forget(work.id)
    done_ids = out.done_ids()
    out.write_plan([PlanEntry(w.id, w.item.output, w.item.line, str(w.item.content)) for w in works],
                   {"weights": weights_identity})
    return Plan(todo=[w for w in works if w.id not in done_ids], done=[w for w in works if w.id in done_ids],
                weights=weights_identity)


__all__ = ["Work", "Plan", "item_id", "route", "make_plan", "ENGINE_REVISION", "DEFAULT_TWO_GPU_PIXELS"]
