"""What the scheduler is told (its options) and what it shows (the batch's state, to a display)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .items import Item
from .pool import Worker
from .outdir import FailureRecord
from .worker import BackendFactory


@dataclass
class BatchOptions:
    """How the scheduler makes a batch: its workers, retries, groups and the engine's speed options."""

    backend: BackendFactory | None = None  # what makes the images; None: the engine
    device: str = "auto"  # auto | gpu | cpu
    workers: int | None = None  # most workers at once; None: as many as the cluster's resources allow
    retries: int = 2  # extra attempts for an item whose worker was lost
    cpu_threads: int | None = None
    stall_timeout: float | None = 1800.0  # seconds without any event from an item before its worker is replaced
    group_size: int | None = None  # items optimised together per call; None: automatic by size and memory
    speed: dict | None = None  # engine Speed options for every worker
    force: bool = False  # redo from the start: saved checkpoints are not used
    max_pixels: int | None = None  # the largest input image the workers accept (None: the engine's default)
    preview_interval: float = 0.0  # seconds between live previews of a running item (--web); 0: none


@dataclass
class ClipCount:
    """A clip's frames in this batch: how many there are, how many are done, and the seconds each
    frame made in this run took (for its rate and ETA)."""

    total: int
    done: int = 0
    seconds: list[float] = field(default_factory=list)

    def frames_per_second(self, running: int) -> float:
        """Frames a second at the current pace: the median frame's time over the chains running."""
        if not self.seconds or not running:
            return 0.0
        ordered = sorted(self.seconds)
        return running / ordered[len(ordered) // 2]

    def eta(self, running: int) -> float | None:
        rate = self.frames_per_second(running)
        return (self.total - self.done) / rate if rate else None


@dataclass
class BatchState:
    """What the display shows: counts, the workers and their calls, failures."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)
    queued: int = 0
    units_total: int = 0  # pixel-iterations at the cap, of the items to make
    units_done: int = 0
    adaptive_units_total: int = 0  # of these, those of items under the adaptive schedule
    adaptive_units_done: int = 0
    adaptive_shares: list[float] = field(default_factory=list)  # the share of its cap each adaptive image ran
    draining: bool = False
    interrupted: int = 0  # images stopped mid-way by a second Ctrl-C (they resume from their checkpoints)
    message: str = ""
    failures: list[FailureRecord] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    clips: dict[str, ClipCount] = field(default_factory=dict)  # by the clip's name (its video, or its frames folder)

    @property
    def running(self) -> list[tuple[Item, Worker]]:
        """Every item being made now, with its worker (whose call has its progress)."""
        return [(item, w) for w in self.workers if w.call for item in w.call.items]

    @property
    def pending(self) -> int:
        return self.total - self.skipped - self.done - self.failed - len(self.running)


def clip_name(item: Item) -> str:
    """What a frame's clip is called on screen: its video, or its frames folder."""
    return item.frame.video or item.frame.clip


def clip_counts(todo: list[Item], done: list[Item]) -> dict[str, ClipCount]:
    counts: dict[str, ClipCount] = {}
    for item in [*todo, *done]:
        if item.frame is not None:
            counts.setdefault(clip_name(item), ClipCount(item.frame.count))
    for item in done:
        if item.frame is not None:
            counts[clip_name(item)].done += 1
    return counts


class Display(Protocol):
    def update(self, state: BatchState) -> None: ...
    def log(self, text: str) -> None: ...


__all__ = ["BatchOptions", "BatchState", "ClipCount", "Display", "clip_name", "clip_counts"]
