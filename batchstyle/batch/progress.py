"""How far a batch has got: work done and left per running item, rates, ETAs and images per hour.

Measured in pixel-iterations (``Item.units``), which do not depend on the device, so that an ETA
holds for a mix of image sizes. Displays (the terminal table, the web dashboard) read this.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from batchstyle.engine.events import Progress
from batchstyle.engine.schedule import Scale, scale_ladder

from .items import Item
from .state import BatchState


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _ladder(item: Item) -> tuple[Scale, ...]:
    return _scales(item.content_size, item.settings)


@functools.lru_cache(maxsize=4096)
def _scales(content_size: tuple[int, int], settings) -> tuple[Scale, ...]:
    """Remembered: the displays ask for every running item's ladder several times per tick."""
    return tuple(scale_ladder(content_size, settings))


def remaining_units(item: Item, progress: Progress | None) -> int:
    """Pixel-iterations still to do for a running item, from its last progress event."""
    if progress is None:
        return item.units
    rest = (progress.iterations - progress.iteration) * progress.width * progress.height
    return rest + sum(s.units for s in _ladder(item)[progress.scale_index + 1:])


def iterations_done(item: Item, progress: Progress | None) -> int:
    if progress is None:
        return 0
    return sum(s.iterations for s in _ladder(item)[: progress.scale_index]) + progress.iteration


def units_done(item: Item, progress: Progress | None) -> int:
    """Pixel-iterations done so far (scales before a resumed-from checkpoint count as done)."""
    if progress is None:
        return 0
    return (sum(s.units for s in _ladder(item)[: progress.scale_index])
            + progress.iteration * progress.width * progress.height)


@dataclass
class _Rate:
    time: float
    units: int
    iteration_total: int
    units_per_s: float = 0.0
    its_per_s: float = 0.0


class BatchProgress:
    """Rates of the running items (smoothed), the batch's throughput and ETAs; call :meth:`track`
    with the scheduler's state every tick."""

    def __init__(self):
        self._rates: dict[str, _Rate] = {}

    def track(self, state: BatchState) -> None:
        now = time.monotonic()
        running = {item.id: (item, worker.call.progress.get(item.id)) for item, worker in state.running}
        for key in [k for k in self._rates if k not in running]:
            del self._rates[key]
        for key, (item, progress) in running.items():
            if progress is None:
                continue
            done_its, done_units = iterations_done(item, progress), units_done(item, progress)
            rate = self._rates.get(key)
            if rate is None or done_units < rate.units:
                self._rates[key] = _Rate(now, done_units, done_its)
                continue
            dt = now - rate.time
            if dt >= 0.5 and done_units > rate.units:
                alpha = 0.3 if rate.units_per_s else 1.0
                rate.units_per_s = (1 - alpha) * rate.units_per_s + alpha * (done_units - rate.units) / dt
                rate.its_per_s = (1 - alpha) * rate.its_per_s + alpha * (done_its - rate.iteration_total) / dt
                rate.time, rate.units, rate.iteration_total = now, done_units, done_its

    def iterations_per_s(self, item: Item) -> float:
        rate = self._rates.get(item.id)
        return rate.its_per_s if rate else 0.0

    def throughput(self, state: BatchState) -> float:
        """Pixel-iterations per second of the whole batch: running items now, else the average so far."""
        live = sum(r.units_per_s for r in self._rates.values())
        if live > 0:
            return live
        elapsed = time.time() - state.started
        return state.units_done / elapsed if state.units_done and elapsed > 0 else 0.0

    def batch_eta(self, state: BatchState) -> float | None:
        rate = self.throughput(state)
        if not rate:
            return None
        running = state.running
        left = sum(remaining_units(item, worker.call.progress.get(item.id)) for item, worker in running)
        queued = state.units_total - state.units_done - sum(item.units for item, _ in running)
        return (left + max(queued, 0)) / rate

    def item_eta(self, item: Item, progress: Progress | None) -> float | None:
        rate = self._rates.get(item.id)
        return remaining_units(item, progress) / rate.units_per_s if rate and rate.units_per_s else None


def images_per_hour(state: BatchState) -> float:
    hours = (time.time() - state.started) / 3600
    return state.done / hours if hours > 0 else 0.0


__all__ = ["BatchProgress", "duration", "images_per_hour", "remaining_units", "iterations_done", "units_done"]
