"""What the user sees while a batch runs: a rich live table on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batchstyle.engine.schedule import scale_ladder

from .scheduler import BatchState, Running

PLAIN_INTERVAL = 10.0  # seconds between summary lines when output is not a terminal


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _ladder(running: Running) -> list[tuple[int, int, int]]:
    """(width, height, iterations) of each scale of a running item."""
    item = running.work.item
    return [(s.width, s.height, s.iterations) for s in scale_ladder(item.content_size, item.settings)]


def remaining_units(running: Running) -> int:
    """Pixel-iterations still to do for a running item, from its last progress event."""
    p = running.progress
    if p is None:
        return running.work.units
    rest = (p.iterations - p.iteration) * p.width * p.height
    return rest + sum(w * h * n for w, h, n in _ladder(running)[p.scale_index + 1:])


def iterations_done(running: Running) -> int:
    p = running.progress
    return 0 if p is None else sum(n for _, _, n in _ladder(running)[: p.scale_index]) + p.iteration


def units_done(running: Running) -> int:
    """Pixel-iterations done so far (scales before a resumed-from checkpoint count as done)."""
    p = running.progress
    if p is None:
        return 0
    return sum(w * h * n for w, h, n in _ladder(running)[: p.scale_index]) + p.iteration * p.width * p.height


@dataclass
class _Rate:
    time: float
    units: int
    iteration_total: int
    units_per_s: float = 0.0
    its_per_s: float = 0.0


class BatchDisplay:
    """Feeds on the scheduler's state every tick; owns all output while the batch runs."""

    def __init__(self, console: Console, live: bool | None = None):
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._rates: dict[str, _Rate] = {}
        self._last_plain = 0.0

    def __enter__(self) -> "BatchDisplay":
        if self.live_mode:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- rates and ETAs ------------------------------------------------------------------------------

    def _track(self, state: BatchState) -> None:
        now = time.monotonic()
        for key in list(self._rates):
            if key not in state.running:
                del self._rates[key]
        for key, running in state.running.items():
            p = running.progress
            if p is None:
                continue
            done_its, done_units = iterations_done(running), units_done(running)
            rate = self._rates.get(key)
            if rate is None or done_units < rate.units:
                self._rates[key] = _Rate(now, done_units, done_its)
                continue
            dt = now - rate.time
            if dt >= 0.5 and done_units > rate.units:
                ups = (done_units - rate.units) / dt
                its = (done_its - rate.iteration_total) / dt
                alpha = 0.3 if rate.units_per_s else 1.0
                rate.units_per_s = (1 - alpha) * rate.units_per_s + alpha * ups
                rate.its_per_s = (1 - alpha) * rate.its_per_s + alpha * its
                rate.time, rate.units, rate.iteration_total = now, done_units, done_its

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
        running = sum(remaining_units(r) for r in state.running.values())
        queued = state.units_total - state.units_done - sum(r.work.units for r in state.running.values())
        return (running + max(queued, 0)) / rate

    def item_eta(self, key: str, running: Running) -> float | None:
        rate = self._rates.get(key)
        return remaining_units(running) / rate.units_per_s if rate and rate.units_per_s else None

    @staticmethod
    def images_per_hour(state: BatchState) -> float:
        hours = (time.time() - state.started) / 3600
        return state.done / hours if hours > 0 else 0.0

    # -- rendering -----------------------------------------------------------------------------------

    def counts(self, state: BatchState) -> str:
        return (f"done {state.done}/{state.total - state.skipped} · failed {state.failed} · skipped "
                f"{state.skipped} · running {len(state.running)} · pending {state.queued} · "
                f"{self.images_per_hour(state):.1f} images/h · ETA {duration(self.batch_eta(state))}")

    def table(self, state: BatchState) -> Table:
        table = Table(expand=False, show_edge=False, pad_edge=False, header_style="bold")
        for column, justify in (("image", "left"), ("worker", "left"), ("scale", "left"),
                                ("iteration", "right"), ("loss", "right"), ("it/s", "right"),
                                ("elapsed", "right"), ("ETA", "right")):
            table.add_column(column, justify=justify, no_wrap=True)
        now = time.time()
        for key, running in sorted(state.running.items(), key=lambda kv: kv[1].started):
            p = running.progress
            rate = self._rates.get(key)
            table.add_row(
                Text(running.work.item.output, overflow="ellipsis"), running.worker.label,
                f"{p.scale_index + 1}/{p.scale_count} {p.width}×{p.height}" if p else "starting",
                f"{p.iteration}/{p.iterations}" if p else "", f"{p.loss:.4g}" if p else "",
                f"{rate.its_per_s:.2f}" if rate and rate.its_per_s else "", duration(now - running.started),
                duration(self.item_eta(key, running)))
        table.caption = self.counts(state) + (f"\n{state.message}" if state.message else "")
        table.caption_justify = "left"
        return table

    def update(self, state: BatchState) -> None:
        self._track(state)
        if self._live is not None:
            self._live.update(Group(self.table(state)))
        elif time.monotonic() - self._last_plain >= PLAIN_INTERVAL:
            self._last_plain = time.monotonic()
            self.console.print(f"[{time.strftime('%H:%M:%S')}] {self.counts(state)}")

    def log(self, text: str) -> None:
        prefix = "" if self._live is not None else f"[{time.strftime('%H:%M:%S')}] "
        self.console.print(prefix + text)


def summary_table(state: BatchState, seconds: float) -> Table:
    """The end-of-run table: counts, timing and every failure with its reason."""
    table = Table(title="batch summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    hours = seconds / 3600
    rows = [("done", str(state.done)), ("failed", str(state.failed)), ("skipped (already done)", str(state.skipped)),
            ("not started", str(max(state.pending, 0))), ("time", duration(seconds)),
            ("images per hour", f"{state.done / hours:.1f}" if hours > 0 else "–")]
    for name, value in rows:
        table.add_row(name, value)
    for failure in state.failures:
        table.add_row(Text(f"line {failure.line}", style="red"), Text(f"{failure.output}: {failure.error}"))
    return table


__all__ = ["BatchDisplay", "summary_table", "duration", "remaining_units", "iterations_done", "units_done"]
