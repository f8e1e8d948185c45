"""What a run reports as it goes. No torch here: workers and displays that only relay events use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


@dataclass(frozen=True)
class Progress:
    """One optimiser step of one job. ``scale_index`` and ``iteration`` count from 0 and 1; ``item``
    is the job's index in its group. ``iterations`` is the most the scale runs (its cap), and at the
    job's last step of the scale the iterations it ran (less than the cap where an adaptive schedule
    ended it early). ``units``: the pixel-iterations this job has run so far in this run."""

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
    units: int = 0

    @property
    def last_of_scale(self) -> bool:
        return self.iteration == self.iterations


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
