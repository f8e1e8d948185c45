"""``batchstyle run``: every image of a manifest, on this machine or a Ray cluster; resumable."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click
from rich.console import Console

from batchstyle.batch.make import BatchObserver

from .batch_view import BatchView, web_options
from .common import (EXIT_FAILED, EXIT_INTERRUPTED, UserError, max_pixels_option, note_unreadable,
                     setting_options, settings_from_options, speed_from_options, speed_options)

NOTES_SHOWN = 20  # notes about input files printed before a run; all of them are in the records


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False),
              help="Where the images (and the records that make the batch resumable) go. "
                   "[default: output/ next to the manifest]")
@setting_options
@click.option("--address", envvar="RAY_ADDRESS",
              help="Ray cluster to join (auto, HOST:PORT or ray://HOST:PORT). [default: $RAY_ADDRESS, "
                   "else start Ray on this machine]")
@click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where workers run. auto: GPUs if the cluster has any, else one CPU worker per node. "
                   "gpu: ask for GPU workers even if no GPU node is up yet (autoscaling clusters).")
@click.option("--workers", type=click.IntRange(min=1),
              help="At most this many workers at once. [default: one per GPU (or per node without GPUs)]")
@click.option("--two-gpu-pixels", type=click.IntRange(min=1), default=None,
              help="Items whose final image has more pixels than this run split over two GPUs (a node with "
                   "two is needed). [default: none: every image runs on one GPU, tiled where it does not fit]")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Extra attempts for an item whose worker died (killed, node lost).")
@click.option("--force", is_flag=True, help="Redo every item, even those already done.")
@click.option("--weights", type=click.Path(dir_okay=False), envvar="BATCHSTYLE_WEIGHTS",
              help="VGG-19 weights file; read once here and shipped to the workers. "
                   "[default: $BATCHSTYLE_WEIGHTS, the cache, or torchvision's download]")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="Torch threads per worker. [default: the node's CPUs for CPU workers]")
@click.option("--stall-timeout", type=click.FloatRange(min=0), default=1800, show_default=True,
              help="Seconds without any progress from an image before its worker is replaced and the image "
                   "retried (a hung GPU); 0 never.")
@click.option("--group-size", "group_size", default="auto", show_default=True, metavar="N|auto",
              help="Images of the same size and loop settings that a worker optimises together in one pass (each "
                   "keeps its own loss and result). auto: on a GPU up to 8 images of at most 512x512 px, as many "
                   "as fit in half its memory; on a CPU up to 4 of at most 256x256 px.")
@click.option("--batch-size", "old_group_size", hidden=True, help="The older name of --group-size.")
@max_pixels_option
@speed_options
@click.option("--plain", is_flag=True, help="Plain log lines instead of the live table (automatic when not a terminal).")
@web_options
@click.pass_obj
def run(obj: dict | None, manifest: str, outdir: str | None, address: str | None, device: str, workers: int | None,
        two_gpu_pixels: int | None, retries: int, force: bool, weights: str | None, cpu_threads: int | None,
        stall_timeout: float, group_size: str, old_group_size: str | None, max_input_pixels: int, plain: bool,
        web: bool, host: str, port: int, **options: Any) -> None:
    """Stylize every image of a MANIFEST (CSV), on this machine or a Ray cluster; resumable.

    \b
    The manifest has a header and one row per content/style pair:
        content,style,output,end_scale,content_weight
        photos/,paintings/starry.jpg,{content}__starry.png,512,5
        me.jpg,a.jpg;b.jpg,me.tif,1024,
    content is an image, a folder or a glob; style is one or more images separated by ';';
    optional columns: style_weights (';'), output ({content}, {ext}, {style}, {line}, {n}), gpus (1
    or 2), tile (auto, off or PX), and any engine option by its long name. Empty cells take the
    command-line value.
    Paths are relative to the manifest. Run the same command again to resume.
    OUTDIR/index.html shows every image (open it in a browser); --web shows the running batch too.
    """
    from batchstyle.batch.make import BatchRequest
    from batchstyle.batch.state import BatchOptions

    console = Console(highlight=False, soft_wrap=True)  # log lines are never wrapped
    if old_group_size is not None:
        console.print("[cyan]note:[/] --batch-size is now called --group-size (images optimised together)", markup=True)
        group_size = old_group_size
    backend = (obj or {}).get("backend")
    request = BatchRequest(
        manifest, outdir, settings_from_options(options), weights, address, two_gpu_pixels,
        BatchOptions(backend=backend, device=device, workers=workers, retries=retries, cpu_threads=cpu_threads,
                   stall_timeout=stall_timeout or None, group_size=_group_size(group_size),
                   speed=speed_from_options(options).to_dict(), force=force, max_pixels=max_input_pixels,
                   preview_interval=_preview_interval(web)))
    try:
        code = run_batch(console, request, plain=plain, web=(host, port) if web else None)
    except KeyboardInterrupt:  # before the scheduler took over Ctrl-C: nothing was made yet
        console.print("[yellow]Interrupted[/] before any image was started; nothing was lost.")
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _group_size(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"--group-size must be a whole number >= 1 or auto, not {text!r}")
    return value


def _preview_interval(web: bool) -> float:
    """Workers send live previews only while a dashboard can show them."""
    from batchstyle.web.dashboard import PREVIEW_INTERVAL

    return PREVIEW_INTERVAL if web else 0.0


def run_batch(console: Console, request, *, plain: bool, web: tuple[str, int] | None = None) -> int:
    """Make the batch, showing it on the terminal (and the pages); the exit code."""
    from batchstyle.batch.make import BatchError, make_batch
    from batchstyle.batch.manifest import ManifestError

    from .display import warnings_as_notes

    terminal = Terminal(console, web, plain)
    try:
        with warnings_as_notes(console.print):
            outcome = make_batch(request, terminal)
    except KeyboardInterrupt:  # one the scheduler did not take: before it started, or after it gave Ctrl-C back
        console.print("[yellow]Interrupted[/] " + ("while shutting down; every image made so far is kept. Run the "
                                                   "same command again for the rest." if terminal.display is not None
                                                   else "before any image was started; nothing was lost."))
        return EXIT_INTERRUPTED
    except ManifestError as exc:
        raise _manifest_problems(exc) from None
    except BatchError as exc:
        raise UserError(str(exc)) from None
    except RuntimeError as exc:  # the scheduler gave up (no workers can be had, the output directory went)
        console.print(f"[red]error:[/] {exc}", markup=True)
        return EXIT_FAILED
    finally:
        terminal.close()
    return terminal.outcome(outcome, request.outdir)


def _manifest_problems(exc) -> UserError:
    if len(exc.problems) == 1 and exc.problems[0].line == 0:  # the file as a whole
        return UserError(str(exc))
    Console(stderr=True, highlight=False).print(str(exc), markup=False, soft_wrap=True)
    noun = "problem" if len(exc.problems) == 1 else "problems"
    return UserError(f"{len(exc.problems)} {noun} in {exc.path}; nothing was started")


class Terminal(BatchObserver):
    """What ``batchstyle run`` shows of a batch: lines and the live table on the terminal, the gallery
    and, with ``web``, the live dashboard."""

    def __init__(self, console: Console, web: tuple[str, int] | None, plain: bool):
        self.console, self.web, self.plain = console, web, plain
        self.view: BatchView | None = None
        self.out: Any = None
        self.display: Any = None
        self.started = time.time()

    def opened(self, out) -> None:
        self.out = out
        self.view = BatchView(out, self.web).open(self.console)

    def took_over(self, out, holder: dict) -> None:
        self.console.print(f"Taking over {out.root} from a run that ended without cleaning up "
                           f"(pid {holder.get('pid')} on {holder.get('host')}).")

    def removed_temp_files(self, out, count: int) -> None:
        self.console.print(f"Removed {count} temporary file(s) left by an interrupted run.")

    def fetching_weights(self) -> None:
        self.console.print("No VGG-19 weights given or cached: trying torchvision's download (548 MB, once)...")

    def planned(self, out, plan) -> None:
        note_unreadable(self.console, out)
        for note in plan.notes:
            self.console.print(f"[cyan]note:[/] {note}")
        self.console.print(f"{len(plan.all)} image(s) in the manifest: {len(plan.done)} already done (skipped), "
                           f"{len(plan.todo)} to make, into {out.root}")
        _print_notes(self.console, plan.todo)
        self.view.start(self.console, plan)

    @contextlib.contextmanager
    def scheduling(self, plan):
        from .display import BatchDisplay

        self.started = time.time()
        with BatchDisplay(self.console, live=False if self.plain else None) as display, display.warnings_as_notes():
            self.display = display
            yield self.view.display(display)

    def stopped(self, scheduler) -> None:
        self.view.finished(scheduler.state, aborted=scheduler.aborting)

    def clip_note(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        if self.view is not None:
            self.view.close(self.console)

    def outcome(self, outcome, outdir) -> int:
        """The summary and what to do next; the exit code."""
        from .display import summary_table

        state = outcome.state
        clips_failed = bool(outcome.clips and outcome.clips.failed)
        if state is None:
            return EXIT_FAILED if clips_failed else 0
        self.console.print(summary_table(state, time.time() - self.started))
        if outcome.interrupted:
            self.console.print(f"Interrupted. Run the same command again to make the {state.pending} remaining image(s).")
            return EXIT_INTERRUPTED
        if state.failed:
            self.console.print(f"{state.failed} image(s) failed (see above, or batchstyle status {self.out.root}); "
                               f"running the same command again retries them.")
            return EXIT_FAILED
        return EXIT_FAILED if clips_failed else 0


def _print_notes(console: Console, items) -> None:
    """What the user should know about the inputs (library warnings, shortened ladders), each once."""
    notes = list(dict.fromkeys(note for item in items for note in item.notes))
    for note in notes[:NOTES_SHOWN]:
        console.print(f"[cyan]note:[/] {note}", markup=True)
    if len(notes) > NOTES_SHOWN:
        console.print(f"[cyan]note:[/] ... and {len(notes) - NOTES_SHOWN} more (kept in each image's record)")
