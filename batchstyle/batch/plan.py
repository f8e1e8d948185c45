"""From manifest items to work: item ids, what is already done, and which worker shape runs what."""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchstyle.engine.masks import hex_color
from batchstyle.engine.schedule import scale_ladder
from batchstyle.engine.settings import StyleSettings, group_key

from .clips import decoded_frames_dir, frame_items, frame_units
from .items import Item
from .outdir import HashCache, OutputDir, PlanItem

# Bumped whenever the engine would make a different image from the same inputs and settings,
# so that outputs of an older engine are not taken for current ones.
ENGINE_REVISION = 1

DEFAULT_TWO_GPU_PIXELS = None  # images too large for one GPU run there with tiles (README "Big images")
# Every setting's default as to_dict() writes values, those it leaves out at their default included
_DEFAULTS = {name: list(v) if isinstance(v, tuple) else v for name, v in vars(StyleSettings()).items()}


@dataclass
class Plan:
    todo: list[Item]
    done: list[Item]
    weights: str
    notes: list[str] = field(default_factory=list)  # what planning could not save (a full disk)

    @property
    def all(self) -> list[Item]:
        return self.done + self.todo


def item_id(item: Item, hashes: HashCache, weights_identity: str, earlier_ids: tuple[str, ...] = ()) -> str:
    """Hash of the input images' bytes, the resolved settings, the weights and the output path.

    A content file that cannot even be read (an item with a problem) counts by its path instead.
    Masks (their bytes, and a segmentation's colours) count only where there are some, so that an
    item without masks keeps the id it had before masks existed. A frame of a clip counts its clip
    settings and the ids of the earlier frames it starts from (``earlier_ids``): a changed frame
    changes every later frame of its chain.
    """
    payload = {
        "content": _content_identity(item, hashes),
        "styles": [hashes.digest(s) for s in item.styles],
        "settings": item.settings.to_dict(),
        "weights": weights_identity,
        "output": item.output,
        "engine": ENGINE_REVISION,
    }
    if item.masks:
        payload["masks"] = [hashes.digest(m) for m in item.masks]
        payload["mask_colors"] = [hex_color(c) for c in item.mask_colors or ()]
    if item.frame is not None:
        payload["frame"] = {"clip": item.frame.settings.to_dict(), "earlier": list(earlier_ids),
                            "index": item.frame.index}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _content_identity(item: Item, hashes: HashCache) -> str:
    """The hash of the content file's bytes, or its path when it cannot be read; a named pipe or a
    device (an item with a problem) is not opened: reading one may never end."""
    frame = item.frame
    if frame is not None and frame.video_file is not None:  # decoded later: the video's bytes and the number
        return f"{hashes.digest(frame.video_file)}#{frame.index}"
    if isinstance(item.content, Path) and not item.content.is_file():
        return f"unreadable: {item.content}"
    try:
        return hashes.digest(item.content)
    except OSError:
        return f"unreadable: {item.content}"


def route(item: Item, end_size: tuple[int, int], two_gpu_pixels: int | None) -> int:
    """1 or 2 GPUs: the manifest's ``gpus`` if given, else 2 when the final image exceeds the threshold
    (if one is set: by default every image runs on one GPU, tiled where it does not fit whole)."""
    if item.gpus is not None:
        return item.gpus
    return 2 if two_gpu_pixels is not None and end_size[0] * end_size[1] > two_gpu_pixels else 1


def planned(item: Item, hashes: HashCache, weights_identity: str, two_gpu_pixels: int | None,
            earlier_ids: tuple[str, ...] = ()) -> Item:
    """The item with its id, route, cost and group key filled in (a frame of a clip runs alone)."""
    if item.problem:  # it will not run: an id, no cost
        return replace(item, id=item_id(item, hashes, weights_identity))
    ladder = scale_ladder(item.content_size, item.settings)
    sizes = [scale.size for scale in ladder]
    width, height = sizes[-1]
    if item.frame is not None:  # a frame runs alone; after its chain's first, its ladder is the end scale alone
        units, key = frame_units(item), None
    else:
        units = sum(scale.units for scale in ladder)
        key = group_key(item.settings, sizes, regions=len(item.styles) if item.masks else 0)
    return replace(item, id=item_id(item, hashes, weights_identity, earlier_ids),
                   route=route(item, sizes[-1], two_gpu_pixels), units=units, pixels=width * height, group_key=key)


def changed_settings(settings: StyleSettings | dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from the engine's defaults (``end_scale``, ``content_weight``...): what
    ``plan.json`` keeps of an item's settings, and what the gallery shows of them."""
    values = settings.to_dict() if isinstance(settings, StyleSettings) else settings
    return {k: v for k, v in values.items() if k in _DEFAULTS and v != _DEFAULTS[k]}


def plan_item(item: Item) -> PlanItem:
    """What ``plan.json`` keeps of an item: enough for ``status`` and the gallery of pending images."""
    return PlanItem(item.id, item.output, item.line, str(item.content), [str(s) for s in item.styles],
                    changed_settings(item.settings), **mask_fields(item), **frame_fields(item))


def mask_fields(item: Item) -> dict[str, list[str]]:
    """What records and ``plan.json`` keep of an item's masks: their paths and a segmentation's colours."""
    return {"masks": [str(m) for m in item.masks], "mask_colors": [hex_color(c) for c in item.mask_colors or ()]}


def frame_fields(item: Item) -> dict[str, Any]:
    """What records and ``plan.json`` keep of a frame's place in its clip (nothing for a still image)."""
    frame = item.frame
    if frame is None:
        return {}
    return {"clip": frame.clip, "frame": frame.index, "frames": frame.count, "video": frame.video,
            "source": str(frame.video_file) if frame.video_file is not None else ""}


def make_plan(items: list[Item], out: OutputDir, weights_identity: str, *, force: bool = False,
              two_gpu_pixels: int | None = DEFAULT_TWO_GPU_PIXELS) -> Plan:
    """Give every item its id and split them into done and to-do; record the plan for ``status``."""
    out.create()
    hashes = HashCache.in_output(out)
    items = _planned_all(items, hashes, weights_identity, two_gpu_pixels)
    notes: list[str] = []
    _saved(notes, "the input hashes (hashes.json; they are read again next time)", hashes.save)
    _saved(notes, "the input headers (headers.json; they are read again next time)", out.headers.save)
    # --force: a record goes when its new image replaces it
    done_ids = set() if force else out.done_ids(outputs={i.id: i.output for i in items})
    _saved(notes, "the plan (plan.json; status shows the previous one)",
           lambda: out.write_plan([plan_item(i) for i in items], {"weights": weights_identity}))
    return Plan(todo=[i for i in items if i.id not in done_ids], done=[i for i in items if i.id in done_ids],
                weights=weights_identity, notes=notes)


def _planned_all(items: list[Item], hashes: HashCache, weights_identity: str, two_gpu_pixels: int | None) -> list[Item]:
    """Every item planned, a clip as its frames in order (each frame's id needs its earlier frames')."""
    ids: dict[tuple[str, int], str] = {}
    out = []
    for item in items:
        for one in _frames_of(item, hashes) if item.clip is not None else [item]:
            earlier = tuple(ids[(one.frame.clip, k)] for k in one.frame.earlier) if one.frame else ()
            one = planned(one, hashes, weights_identity, two_gpu_pixels, earlier)
            if one.frame is not None:
                ids[(one.frame.clip, one.frame.index)] = one.id
            out.append(one)
    return out


def _frames_of(item: Item, hashes: HashCache) -> list[Item]:
    clip = item.clip
    decoded = None if clip.sequence else decoded_frames_dir(clip.path, hashes.digest(clip.path))
    return frame_items(item, decoded)


def _saved(notes: list[str], what: str, save) -> None:
    """Save a file planning keeps for later; a full disk costs that file (with a note), not the run."""
    try:
        save()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        notes.append(f"cannot save {what}: {exc.strerror}")


__all__ = ["Plan", "item_id", "changed_settings", "route", "planned", "plan_item", "mask_fields", "frame_fields", "make_plan",
           "ENGINE_REVISION", "DEFAULT_TWO_GPU_PIXELS"]
