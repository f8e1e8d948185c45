"""Everything the commands draw with rich: the batch's live table and plain log lines, its summary,
the stylize progress bar, the bench table and the status tables."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Callable, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batchstyle.batch.progress import BatchProgress, duration, images_per_hour
from batchstyle.batch.items import Item
from batchstyle.batch.state import BatchState, clip_name

PLAIN_INTERVAL = 10.0  # seconds between summary lines when output is not a terminal


@contextlib.contextmanager
def warnings_as_notes(log: Callable[[str], None]) -> Iterator[None]:
    """Warnings become one note line each (the same text once), never raw text on the screen.

    Those of background threads are dropped: the gallery's thumbnails decode inputs whose warnings
    were given as notes at planning (and the web server's requests are not the user's inputs)."""
    noted: set[str] = set()

    def note(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if threading.current_thread() is threading.main_thread() and text not in noted:
            noted.add(text)
            log(f"[cyan]note:[/] {text}")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = note
        yield


class BatchDisplay:
    """Feeds on the scheduler's state every tick; owns all output while the batch runs."""

    def __init__(self, console: Console, live: bool | None = None):
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self.progress = BatchProgress()
        self._live: Live | None = None
        self._last_plain = 0.0
        self._last_counts = ""

    def __enter__(self) -> "BatchDisplay":
        if self.live_mode:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()  # the table goes; the last counts stay, above the summary
            self._live = None
            if self._last_counts:
                self.console.print(self._last_counts)

    def warnings_as_notes(self) -> contextlib.AbstractContextManager:
        """Warnings raised while the batch runs become one note line each, never raw text over the table."""
        return warnings_as_notes(self.log)

    def counts(self, state: BatchState) -> str:
        return (f"done {state.done}/{state.total - state.skipped} · failed {state.failed} · skipped "
                f"{state.skipped} · running {len(state.running)} · pending {state.queued} · "
                f"{images_per_hour(state):.1f} images/h · ETA {duration(self.progress.batch_eta(state))}")

    def table(self, state: BatchState) -> Table:
        table = Table(expand=False, show_edge=False, pad_edge=False, header_style="bold")
        for column, justify in (("image", "left"), ("worker", "left"), ("scale", "left"),
                                ("iteration", "right"), ("loss", "right"), ("it/s", "right"),
                                ("elapsed", "right"), ("ETA", "right")):
            table.add_column(column, justify=justify, no_wrap=True)
        now = time.time()
        shown: set[str] = set()
        for item, worker in sorted(state.running, key=lambda iw: iw[1].call.started):
            if item.frame is not None:
                if clip_name(item) not in shown:
                    shown.add(clip_name(item))
                    table.add_row(*self._clip_row(state, item, now))
                continue
            p = worker.call.progress.get(item.id)
            rate = self.progress.iterations_per_s(item)
            table.add_row(
                Text(item.output, overflow="ellipsis"), worker.label,
                f"{p.scale_index + 1}/{p.scale_count} {p.width}×{p.height}" if p else "starting",
                f"{p.iteration}/{p.iterations}" if p else "", f"{p.loss:.4g}" if p else "",
                f"{rate:.2f}" if rate else "", duration(now - worker.call.started),
                duration(self.progress.item_eta(item, p, state)))
        table.caption = self.counts(state) + (f"\n{state.message}" if state.message else "")
        table.caption_justify = "left"
        return table

    def _clip_row(self, state: BatchState, first: Item, now: float) -> list:
        """A clip's one row: its frames done, the earliest frame running (and how many more run), the
        clip's frames a second and ETA."""
        name = clip_name(first)
        running = sorted(((item, worker) for item, worker in state.running
                          if item.frame is not None and clip_name(item) == name), key=lambda iw: iw[0].frame.index)
        item, worker = running[0]
        count = state.clips[name]
        p = worker.call.progress.get(item.id)
        more = f" (+{len(running) - 1})" if len(running) > 1 else ""
        fps = count.frames_per_second(len(running))
        return [Text(f"{name} · {count.done}/{count.total} frames · frame {item.frame.index}{more}",
                     overflow="ellipsis"), worker.label + more,
                f"{p.scale_index + 1}/{p.scale_count} {p.width}×{p.height}" if p else "starting",
                f"{p.iteration}/{p.iterations}" if p else "", f"{p.loss:.4g}" if p else "",
                f"{fps:.3f} fps" if fps else "", duration(now - worker.call.started),
                duration(count.eta(len(running)))]

    def update(self, state: BatchState) -> None:
        self.progress.track(state)
        self._last_counts = self.counts(state)
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
            ("interrupted (resume next time)", str(state.interrupted)),
            ("not started", str(max(state.pending - state.interrupted, 0))), ("time", duration(seconds)),
            ("images per hour", f"{state.done / hours:.1f}" if hours > 0 else "–")]
    for name, value in rows:
        table.add_row(name, value)
    for failure in state.failures:
        table.add_row(Text(f"line {failure.line}", style="red"), Text(f"{failure.output}: {failure.error}"))
    return table


class StylizeDisplay:
    """A rich progress bar per scale on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, console: Console, quiet: bool):
        self.console, self.quiet = console, quiet
        self.rate = 0.0
        self._gap: float | None = None
        self._last_time: float | None = None
        self._last_line = 0.0
        self._progress = None
        self._task = None
        self._scale = -1
        self._start = time.monotonic()
        self._iterations = 0

    def __enter__(self):
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                                      TimeRemainingColumn(), console=self.console)
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False

    def update(self, event) -> None:
        self._iterations += 1
        now = time.monotonic()
        if self._last_time is not None and event.iteration > 1:
            gap = max(now - self._last_time, 1e-9)
            self._gap = gap if self._gap is None else 0.9 * self._gap + 0.1 * gap  # smooth the gaps, not rates
            self.rate = 1 / self._gap
        self._last_time = now
        if self.quiet:
            return
        label = f"Scale {event.scale_index + 1}/{event.scale_count} {event.width}×{event.height}"
        if self._progress is not None:
            if event.scale_index != self._scale:
                self._scale = event.scale_index
                self._task = self._progress.add_task(label, total=event.iterations, loss="", rate="")
            # a scale that ends before its cap (adaptive) ends full: the bar never runs backwards
            self._progress.update(self._task, completed=event.iteration, total=event.iterations,
                                  loss=f"{event.loss:.6g}", rate=f"{self.rate:.2f} it/s")
        elif now - self._last_line >= 5 or event.iteration == event.iterations:
            self._last_line = now
            rate = f" {self.rate:.2f} it/s" if self.rate else ""
            self.console.print(f"{label} iteration {event.iteration}/{event.iterations} loss {event.loss:.6g}{rate}")

    def summary(self) -> str:
        seconds = time.monotonic() - self._start
        return f"{self._iterations} iterations in {seconds:.1f} s"


def bench_table(results, full: bool) -> Table:
    first = results[0]
    title = (f"{first.device}, {'whole runs' if full else f'{first.steps} timed iterations at one size'}; "
             f"memory: {first.memory_kind}")
    table = Table(title=title, title_justify="left")
    for name in ("size", "config", "tiles", "work", "it/s", "image-it/s", "speedup", "MP-it/s", "TFLOP/s",
                 "of peak", "peak mem", "model", "final loss", "vs base"):
        table.add_column(name, justify="left" if name == "config" else "right")
    if full:
        table.add_column("images/h", justify="right")
    base: dict[int, float] = {}
    for r in results:
        base.setdefault(r.size, r.item_iterations_per_s)
        row = [f"{r.width}x{r.height}", r.config, f"{r.tiles}×{r.tile_core}" if r.tiles else "whole",
               f"{r.work_ratio:.2f}x",
               f"{r.steps_per_s:.2f}", f"{r.item_iterations_per_s:.2f}",
               f"{r.item_iterations_per_s / base[r.size]:.2f}x", f"{r.megapixel_iterations_per_s:.2f}",
               f"{r.tflops:.2f}", "–" if r.fraction_of_peak is None else f"{r.fraction_of_peak:.1%}",
               f"{r.peak_memory_bytes / 2**20:,.0f} MiB", f"{r.predicted_memory_bytes / 2**20:,.0f} MiB",
               f"{r.final_losses[0]:.5g}",
               "–" if r.loss_vs_baseline is None else f"{r.loss_vs_baseline:+.2%}"]
        if full:
            row.append(f"{r.images_per_hour:,.0f}")
        table.add_row(*row)
    return table


def failed_table(failed, failures) -> Table:
    table = Table("line", "image", "error", title="failed", title_justify="left", show_lines=False)
    for item in failed:
        f = failures[item.id]
        table.add_row(str(item.line), item.output, f"{f.error} ({f.kind}, {f.attempts} attempt(s))")
    return table


def items_table(title: str, items, records) -> Table:
    done = any(item.id in records for item in items)
    table = Table("line", "image", "content", *(("time", "worker") if done else ()), title=title,
                  title_justify="left")
    for item in items:
        record = records.get(item.id)
        cells = [str(item.line), item.output, item.content]
        if done:
            cells += [duration(record.seconds), record.worker] if record else ["", ""]
        table.add_row(*cells)
    return table


__all__ = ["BatchDisplay", "summary_table", "StylizeDisplay", "bench_table", "failed_table", "items_table"]
