"""What one image of a batch looks like in the gallery: a JSON-able item built from the output
directory's own records (the plan item, the done record, the failure record).

Inputs are shown by file name only (a gallery may be published; the full paths stay in the records).
Thumbnails are added when the item is written (see :mod:`.gallery`), as they may come later. The
fields are named in :mod:`.contract` (``ROW_FIELDS``, ``DONE_FIELDS``, ``FAILED_FIELDS``, ``STYLE_FIELDS``,
``MASK_FIELDS``).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from batchstyle.batch.plan import changed_settings
from batchstyle.batch.outdir import FailureRecord, ItemRecord, PlanItem

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


def public(item: dict) -> dict:
    """The item as written to the page's data: without the full input paths."""
    shown = {k: v for k, v in item.items() if k != "content_path"}
    for inputs in ("styles", "masks"):
        shown[inputs] = [{k: v for k, v in s.items() if k != "path"} for s in item[inputs]]
    return shown


__all__ = ["style_weights", "gallery_item", "public", "file_name"]
