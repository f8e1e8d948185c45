"""What one image of a batch looks like in the gallery: a JSON-able item built from the output
directory's own records (the plan item, the done record, the failure record).

Inputs are shown by file name only (a gallery may be published; the full paths stay in the records).
Thumbnails are added when the item is written (see :mod:`.gallery`), as they may come later. The
fields are named in :mod:`.contract` (``ROW_FIELDS``, ``DONE_FIELDS``, ``FAILED_FIELDS``, ``STYLE_FIELDS``,
``MASK_FIELDS``). The frames of a clip are one entry (:func:`clip_entry`, ``CLIP_FIELDS``): its video (or
its frames folder), how many frames are done, and each frame's output for stepping through them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePath
from typing import Any

from batchstyle.batch.plan import changed_settings
from batchstyle.batch.outdir import FailureRecord, ItemRecord, PlanItem
from batchstyle.batch.remote_files import RemotePath

from .files import media_type

DETAIL_CHARS = 2000  # of a failure's traceback: its end, where the cause is


def style_weights(weights: list[float] | None, count: int) -> list[float]:
    """Each style's share of the blend (weights normalised by the sum of their absolute values)."""
    if not weights or len(weights) != count:
        return [1.0 / count] * count if count else []
    total = sum(abs(w) for w in weights) or 1.0
    return [w / total for w in weights]


def file_name(path: str) -> str:
    return PurePath(path.replace("\\", "/")).name


def gallery_item(position: int, plan: PlanItem, record: ItemRecord | None, failure: FailureRecord | None) -> dict:
    """The gallery's view of one planned image: done, failed or pending."""
    styles = record.styles if record is not None else plan.styles
    masks, colors = (record.masks, record.mask_colors) if record is not None else (plan.masks, plan.mask_colors)
    settings = changed_settings(record.settings) if record is not None else dict(plan.settings)
    shares = style_weights(settings.pop("style_weights", None), len(styles))
    out: dict[str, Any] = {
        "id": plan.id, "n": position, "line": plan.line, "output": plan.output,
        "content": file_name(plan.content), "content_path": plan.content,
        "styles": [{"name": file_name(s), "path": s, "weight": round(w, 4)} for s, w in zip(styles, shares)],
        "masks": [{"name": file_name(m), "path": m} for m in masks], "mask_colors": list(colors),
        "settings": settings, "state": "pending",
    }
    if record is not None:
        out.update(state="done", seconds=round(record.seconds, 1), finished=round(record.finished, 1),
                   worker=record.worker, attempts=record.attempts, group=record.group_size,
                   iterations=record.iterations, loss=record.final_loss, resumed=record.resumed_from_scale)
    elif failure is not None:
        out.update(state="failed", error=failure.error, kind=failure.kind, attempts=failure.attempts,
                   failed=round(failure.time, 1), worker=failure.worker, detail=failure.detail[-DETAIL_CHARS:])
    return out


def clip_id(clip: str) -> str:
    """The id of a clip's entry: from its frames folder (a frame's id changes with its settings)."""
    return "clip-" + hashlib.sha256(clip.encode()).hexdigest()[:16]


def clip_entry(position: int, plans: list[PlanItem], frames: list[dict], video_written: bool,
               content_video: str = "") -> dict:
    """The gallery's view of one clip: its frames (their plan items and :func:`gallery_item`, in order)
    as one entry. Done once every frame is and the video, where it has one, is written; failed when a
    frame failed; partial while some are done; else pending. ``content_video``: the content clip's path
    relative to the output directory, where the page can play it."""
    plan, first = plans[0], frames[0]
    done = [f for f in frames if f["state"] == "done"]
    failed = [f for f in frames if f["state"] == "failed"]
    complete = len(done) == len(frames) and (video_written or not plan.video)
    state = "failed" if failed else "done" if complete else "partial" if done else "pending"
    source = plan.source or str(PurePath(plan.content.replace("\\", "/")).parent)
    out: dict[str, Any] = {
        **{k: first[k] for k in ("line", "styles", "masks", "mask_colors", "settings", "content_path")},
        "id": clip_id(plan.clip), "n": position, "output": plan.video or plan.clip, "content": file_name(source),
        "state": state, "clip": plan.clip, "frames": len(frames), "frames_done": len(done),
        "frame_outputs": [f["output"] if f["state"] == "done" else None for f in frames],
    }
    if done:
        out.update(seconds=round(sum(f["seconds"] for f in done), 1), finished=max(f["finished"] for f in done))
    if failed:
        out.update({k: failed[0][k] for k in ("error", "kind", "attempts", "failed", "worker", "detail")})
    if plan.video and video_written:
        out["video"] = plan.video
    if content_video:
        out["content_video"] = content_video
    return out


def in_reach(root: Path | RemotePath, source: str) -> str:
    """A content clip's path relative to the output directory ``root``, where the page can play it (a
    video or a GIF inside it, outside its dot-folders); "" for any other."""
    if not source or not isinstance(root, Path) or media_type(source) is None:
        return ""
    try:
        rel = Path(source).resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return ""
    return "" if any(part.startswith(".") for part in rel.parts) else rel.as_posix()


def public(item: dict) -> dict:
    """The item as written to the page's data: without the full input paths."""
    shown = {k: v for k, v in item.items() if k != "content_path"}
    for inputs in ("styles", "masks"):
        shown[inputs] = [{k: v for k, v in s.items() if k != "path"} for s in item[inputs]]
    return shown


__all__ = ["style_weights", "gallery_item", "clip_entry", "clip_id", "in_reach", "public", "file_name"]
