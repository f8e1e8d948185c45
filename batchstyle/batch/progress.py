"""How far a batch has got: work done and left per running item, rates, ETAs and images per hour.

Measured in pixel-iterations (``Item.units``), which do not depend on the device, so that an ETA
holds for a mix of image sizes. Displays (the terminal table, the web dashboard) read this.

An item's ``units`` are the most it can run. Under the ``adaptive`` schedule a scale usually ends
before its cap, so the work still to do is the cap left times the share of the cap that the batch's
adaptive images have run so far (:data:`ADAPTIVE_SHARE` until one is done). Work done counts a scale
that ended early as done whole, so the bar only moves forward.
"""

from __future__ import annotations

import functools
import statistics
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


# The share of its cap an adaptive image runs, until the batch has made one: the median pixel-iterations
# of the quality benchmark's 6 pairs at 256 px (docs/performance.md, section Schedules).
ADAPTIVE_SHARE = 0.61


def adaptive_share(state: BatchState) -> float:
    """The share of its cap an adaptive image of this batch is expected to run."""
    return statistics.median(state.adaptive_shares) if state.adaptive_shares else ADAPTIVE_SHARE


def expected_share(item: Item, state: BatchState) -> float:
    """The share of its remaining cap that ``item`` is expected to run: 1 under the fixed schedule."""
    return adaptive_share(state) if item.settings.schedule == "adaptive" else 1.0


def remaining_units(item: Item, progress: Progress | None, share: float = 1.0) -> float:
    """Pixel-iterations still to do for a running item, from its last progress event, with ``share``
    of the cap expected to run (:func:`expected_share`)."""
    if progress is None:
        return item.units * share
    rest = 0 if progress.last_of_scale else (progress.iterations - progress.iteration) * progress.width * progress.height
    return (rest + sum(s.units for s in _ladder(item)[progress.scale_index + 1:])) * share


def iterations_done(item: Item, progress: Progress | None) -> int:
    if progress is None:
        return 0
    return sum(s.iterations for s in _ladder(item)[: progress.scale_index]) + progress.iteration


def units_done(item: Item, progress: Progress | None) -> int:
    """Pixel-iterations of the cap done so far: scales before a resumed-from checkpoint, and a scale that
    ended early, count as done whole."""
    if progress is None:
        return 0
    ladder = _ladder(item)
    current = (ladder[progress.scale_index].units if progress.last_of_scale
               else progress.iteration * progress.width * progress.height)
    return sum(s.units for s in ladder[: progress.scale_index]) + current


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
            done_its, done_units = iterations_done(item, progress), progress.units
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
        left = sum(remaining_units(item, worker.call.progress.get(item.id), expected_share(item, state))
                   for item, worker in running)
        queued = state.units_total - state.units_done - sum(item.units for item, _ in running)
        queued_adaptive = state.adaptive_units_total - state.adaptive_units_done - sum(
            item.units for item, _ in running if item.settings.schedule == "adaptive")
        queued_adaptive = min(max(queued_adaptive, 0), max(queued, 0))
        return (left + max(queued, 0) - queued_adaptive * (1 - adaptive_share(state))) / rate

    def item_eta(self, item: Item, progress: Progress | None, state: BatchState) -> float | None:
        rate = self._rates.get(item.id)
        if not rate or not rate.units_per_s:
            return None
        return remaining_units(item, progress, expected_share(item, state)) / rate.units_per_s


def pace_of(records) -> float | None:
    """Images per hour of the run that made ``records`` (done records, with their start and end times):
    how many it made between the first start and the last end, on all its workers together. It reflects
    what the images really cost, whatever their schedule. None with fewer than two."""
    timed = [r for r in records if r.finished > r.started > 0]
    if len(timed) < 2:
        return None
    span = max(r.finished for r in timed) - min(r.started for r in timed)
    return 3600 * len(timed) / span if span > 0 else None


def images_per_hour(state: BatchState) -> float:
    hours = (time.time() - state.started) / 3600
    return state.done / hours if hours > 0 else 0.0


__all__ = ["BatchProgress", "duration", "images_per_hour", "remaining_units", "iterations_done", "units_done",
           "expected_share", "adaptive_share", "ADAPTIVE_SHARE", "pace_of"]
