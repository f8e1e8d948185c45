"""How long one job's scale runs, and its step size on the way: the ``schedule`` setting (docs/engine.md,
section Schedules).

``fixed`` runs every iteration of the scale at the settings' step size. ``adaptive`` judges the
averaged image, which is what becomes the output: every :data:`WINDOW` iterations it measures how much
that image changed over the window (the RMS change in 8-bit levels, of the image averaged over
:data:`POOL` × :data:`POOL` blocks). Once the change falls below :data:`THRESHOLD` at the last scale,
or :data:`EARLIER_THRESHOLD` at the scales before it (whose image is only where the next scale
starts, and which the next scale redoes at its finer grain), the job cools: its step size falls
linearly to zero over :data:`COOLING` times the iterations it has run, then its scale ends. The settings' iterations are the cap: a job still changing
starts to cool when the cooling would otherwise not fit, and ends at the cap.
"""

from __future__ import annotations

from typing import Callable

import torch

WINDOW = 25  # iterations between two looks at the averaged image
THRESHOLD = 0.6  # RMS change of the averaged image over a window, in 8-bit levels, below which the last scale cools
EARLIER_THRESHOLD = 3.0  # the same for the scales before the last
COOLING = 0.5  # the cooling's length, as a share of the iterations run before it
MIN_ITERATIONS = 2 * WINDOW  # no scale cools before this many iterations (the average is still filling)
POOL = 4  # the change is judged on the image averaged over POOL x POOL blocks (benchmarks/quality.py chose all these)


def change_in_levels(now: torch.Tensor, before: torch.Tensor) -> float:
    """The RMS difference of two images in [0, 1], in 8-bit levels, after averaging each over
    :data:`POOL` × :data:`POOL` blocks: Adam's step leaves a per-pixel jitter of about its step size
    that the average of the iterates keeps a trace of; the structure the eye sees is coarser."""
    difference = now.float() - before.float()
    if POOL > 1 and min(difference.shape[-2:]) >= 4 * POOL:
        difference = torch.nn.functional.avg_pool2d(difference, POOL, ceil_mode=True)
    return difference.pow(2).mean().sqrt().item() * 255


class Pace:
    """One job's schedule at one scale: call :meth:`after` after each iteration; it returns the step
    size of the next iteration, or None when the job's scale has ended."""

    def __init__(self, schedule: str, cap: int, step_size: float, last: bool = True):
        self.adaptive = schedule == "adaptive"
        self.last = last
        self.cap, self.step_size = cap, step_size
        self.cool_from: int | None = None  # the iteration after which the step size falls
        self.cool_until = cap
        self.latest = cap - round(COOLING * cap / (1 + COOLING))  # the latest start of a cooling that fits the cap
        self._seen: torch.Tensor | None = None  # the averaged image at the last look
        self.changes: list[tuple[int, float]] = []  # (iteration, change over the window before it)

    def _cool(self, iteration: int, length: int) -> None:
        self.cool_from, self.cool_until = iteration, iteration + max(1, length)

    def after(self, iteration: int, average: Callable[[], torch.Tensor]) -> float | None:
        """The step size for iteration ``iteration + 1``, judging the averaged image after ``iteration``
        (``average`` gives it, when it is looked at)."""
        if iteration >= self.cool_until:
            return None
        if not self.adaptive:
            return self.step_size
        if self.cool_from is None:
            self._look(iteration, average)
        if self.cool_from is None:
            return self.step_size
        left = self.cool_until - iteration
        return self.step_size * left / (self.cool_until - self.cool_from)

    def _look(self, iteration: int, average: Callable[[], torch.Tensor]) -> None:
        if iteration >= self.latest:
            self._cool(iteration, self.cap - iteration)
            return
        if iteration % WINDOW:
            return
        snapshot = average().detach().to("cpu", torch.float32, copy=True)
        if self._seen is not None:
            change = change_in_levels(snapshot, self._seen)
            self.changes.append((iteration, change))
            if change < (THRESHOLD if self.last else EARLIER_THRESHOLD) and iteration >= MIN_ITERATIONS:
                self._cool(iteration, round(COOLING * iteration))
        self._seen = snapshot


__all__ = ["Pace", "WINDOW", "THRESHOLD", "EARLIER_THRESHOLD", "POOL", "COOLING", "MIN_ITERATIONS", "change_in_levels"]
