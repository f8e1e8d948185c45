"""What a run reports as it goes. No torch here: workers and displays that only relay events use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .multiscale import Checkpoint


@dataclass(frozen=True)
class Progress:
    """One optimiser step. ``scale_index`` and ``iteration`` count from 0 and 1."""

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


@dataclass(frozen=True)
class ScaleFinished:
    scale_index: int
    scale_count: int
    width: int
    height: int
    checkpoint: "Checkpoint"


__all__ = ["Progress", "ScaleFinished"]
