"""An item: one image to make in a batch, from its manifest line to its planned id, route and cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchstyle.engine.settings import StyleSettings

from .remote_files import RemotePath

if TYPE_CHECKING:
    from .clips import ClipSource, FrameRef


@dataclass(frozen=True)
class Item:
    """One image to make (a still, or one frame of a clip): its manifest line, inputs, resolved settings and where the result goes.

    Planning (:func:`batch.plan.make_plan`) fills in the rest: its id, its route and its cost. An
    item with a ``problem`` (an unreadable file found in a folder) is not made: it fails as it is.
    """

    line: int
    content: Path | RemotePath  # a local file, or one at a URL (with its content tag)
    styles: tuple[Path | RemotePath, ...]
    settings: StyleSettings
    output: str  # relative to the output directory, with / separators
    gpus: int | None = None  # 1 or 2 from the manifest, None = decided by size
    content_size: tuple[int, int] = (0, 0)
    problem: str = ""  # why it cannot be made, e.g. "photos/x.png cannot be read: ..."
    notes: tuple[str, ...] = ()  # what the user should know (library warnings, a shortened ladder)
    id: str = ""
    route: int = 1  # GPUs of the worker it goes to (1 or 2)
    units: int = 0  # pixel-iterations of the whole run (for ETAs)
    group_key: str | None = None  # items with equal keys may be optimised together; None: alone
    pixels: int = 0  # of the final image
    tile: str | int | None = None  # the manifest's tile (auto, off or a core size); None: the run's --tile
    masks: tuple[Path | RemotePath, ...] = ()  # one greyscale mask per style, or one segmentation (mask_colors)
    mask_colors: tuple[tuple[int, int, int], ...] | None = None  # the segmentation's colour of each style
    clip: ClipSource | None = None  # a clip row, before planning makes it one item per frame
    frame: FrameRef | None = None  # a frame of a clip: its place in the clip and the frames it starts from


__all__ = ["Item"]
