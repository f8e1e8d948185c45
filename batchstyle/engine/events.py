"""What a run reports as it goes. No torch here: workers and displays that only relay events use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


@dataclass(frozen=True)
class Progress:
    """One optimiser step of one job. ``scale_index`` and ``iteration`` count from 0 and 1; ``item``
    is the job's index in its group."""

    scale_index: int
    scale_count: int
    width: int
    height: int
    iteration: int
    iterations: int
    loss: float
    elapsed: float
    gpu_peak_bytes: int
    time: float
    item: int = 0


@dataclass(frozen=True)
class ScaleFinished:
    """A job finished a scale; ``checkpoint`` continues it from there."""

    scale_index: int
    scale_count: int
    width: int
    height: int
    checkpoint: "Checkpoint"
    item: int = 0


__all__ = ["Progress", "ScaleFinished"]
