"""``batchstyle run``: every image of a manifest, on this machine or a Ray cluster; resumable."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any

import click
from rich.console import Console

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
@click.option("--group-size", "--batch-size", "group_size", default="auto", show_default=True, metavar="N|auto",
              help="Images of the same size and loop settings that a worker optimises together in one pass (each "
                   "keeps its own loss and result). auto: on a GPU up to 8 images of at most 512x512 px, as many "
                   "as fit in half its memory; on a CPU up to 4 of at most 256x256 px.")
@max_pixels_option
@speed_options
@click.option("--plain", is_flag=True, help="Plain log lines instead of the live table (automatic when not a terminal).")
@web_options
@click.pass_obj
def run(obj: dict | None, manifest: str, outdir: str | None, address: str | None, device: str, workers: int | None,
        two_gpu_pixels: int | None, retries: int, force: bool, weights: str | None, cpu_threads: int | None,
        stall_timeout: float, group_size: str, max_input_pixels: int, plain: bool, web: bool, host: str,
        port: int, **options: Any) -> None:
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
    from batchstyle.batch.scheduler import RunOptions

    console = Console(highlight=False, soft_wrap=True)  # log lines are never wrapped
    backend = (obj or {}).get("backend")
    run_options = RunOptions(backend=backend, device=device, workers=workers, retries=retries,
                             cpu_threads=cpu_threads, stall_timeout=stall_timeout or None,
                             group_size=_group_size(group_size), speed=speed_from_options(options).to_dict(),
                             force=force, max_pixels=max_input_pixels,
                             preview_interval=_preview_interval(web))
    try:
        out = _output_dir(outdir, manifest)
        items = _read_manifest(manifest, settings_from_options(options), max_input_pixels, out)
        resolved, identity = _weights(console, backend, weights)
        lock = _open_output(out)
        try:
            code = run_batch(console, items, out, lock, resolved, identity, address=address,
                             two_gpu_pixels=two_gpu_pixels, plain=plain, options=run_options,
                             web=(host, port) if web else None)
        finally:
            lock.release()
    except KeyboardInterrupt:  # before the scheduler took over Ctrl-C: nothing was made yet
        console.print("[yellow]Interrupted[/] before any image was started; nothing was lost.")
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _read_manifest(manifest: str, defaults, max_pixels: int, out):
    from batchstyle.batch.manifest import ManifestError, read_manifest
    from batchstyle.batch.storage import StorageError

    try:
        return read_manifest(manifest, defaults, max_pixels=max_pixels, headers=out.headers, name_max=out.name_max())
    except StorageError as exc:  # the output location, where remote inputs' headers are cached
        raise UserError(str(exc)) from None
    except ManifestError as exc:
        if len(exc.problems) == 1 and exc.problems[0].line == 0:  # the file as a whole
            raise UserError(str(exc)) from None
        Console(stderr=True, highlight=False).print(str(exc), markup=False, soft_wrap=True)
        noun = "problem" if len(exc.problems) == 1 else "problems"
        raise UserError(f"{len(exc.problems)} {noun} in {exc.path}; nothing was started") from None


def _output_dir(outdir: str | None, manifest: str):
    """The output directory (not touched yet): as given, else output/ beside the manifest, local or remote."""
    from batchstyle.batch.storage import RemotePath, StorageError, as_path, redact
    from batchstyle.batch.store import OutputDir

    target = outdir
    if not target:
        parent = as_path(manifest).parent
        target = parent.url + "/output" if isinstance(parent, RemotePath) else str(parent / "output")
    try:
        return OutputDir(target)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:
        raise UserError(f"{redact(target)}: {exc}") from None


def _open_output(out):
    """Create and lock the output directory for this run (a lease on object storage)."""
    from batchstyle.batch.store import LockError

    try:
        out.create()
        return out.lock().acquire()
    except LockError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot use {out.root} as the output directory: {exc.strerror or exc}") from None


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
    from batchstyle.batch.dashboard import PREVIEW_INTERVAL

    return PREVIEW_INTERVAL if web else 0.0


def run_batch(console: Console, items, out, lock, resolved, identity: str, *, address: str | None,
              two_gpu_pixels: int | None, plain: bool, options, web: tuple[str, int] | None = None) -> int:
    """Plan the items against the output directory, then make the missing ones with Ray."""
    from batchstyle.batch.plan import make_plan

    from .display import warnings_as_notes

    _clean_up_after_a_crash(console, out, lock)
    with contextlib.ExitStack() as stack:  # undone in reverse: Ray, the warnings, the gallery and server
        view = BatchView(out, web).open(console)
        stack.callback(view.close, console)
        stack.enter_context(warnings_as_notes(console.print))
        plan = make_plan(items, out, identity, force=options.force, two_gpu_pixels=two_gpu_pixels)
        note_unreadable(console, out)
        for note in plan.notes:
            console.print(f"[cyan]note:[/] {note}")
        console.print(f"{len(plan.all)} image(s) in the manifest: {len(plan.done)} already done (skipped), "
                      f"{len(plan.todo)} to make, into {out.root}")
        _print_notes(console, plan.todo)
        view.start(console, plan)
        if not plan.todo:
            return 0
        ray = start_ray(address)
        stack.callback(ray.shutdown)
        weights_ref = ray.put(resolved.to_numpy()) if resolved is not None else None
        return _schedule(console, plan, out, weights_ref, identity, options, plain, view)


def _clean_up_after_a_crash(console: Console, out, lock) -> None:
    if lock.taken_over:
        holder = lock.taken_over
        console.print(f"Taking over {out.root} from a run that ended without cleaning up "
                      f"(pid {holder.get('pid')} on {holder.get('host')}).")
    removed = out.remove_temp_files()
    if removed:
        console.print(f"Removed {removed} temporary file(s) left by an interrupted run.")


def _print_notes(console: Console, items) -> None:
    """What the user should know about the inputs (library warnings, shortened ladders), each once."""
    notes = list(dict.fromkeys(note for item in items for note in item.notes))
    for note in notes[:NOTES_SHOWN]:
        console.print(f"[cyan]note:[/] {note}", markup=True)
    if len(notes) > NOTES_SHOWN:
        console.print(f"[cyan]note:[/] ... and {len(notes) - NOTES_SHOWN} more (kept in each image's record)")


def _weights(console: Console, backend, path: str | None):
    """The VGG-19 weights and their identity, before anything is written; another backend (tests,
    benchmarks) needs none."""
    if backend is not None:
        return None, getattr(backend, "identity", type(backend).__name__)
    from batchstyle.engine.weights import ENV_WEIGHTS, WeightsError, cache_dir, resolve_weights

    if not (path or os.environ.get(ENV_WEIGHTS) or (cache_dir() / "vgg19_features.safetensors").is_file()):
        console.print("No VGG-19 weights given or cached: trying torchvision's download (548 MB, once)...")
    try:
        resolved = resolve_weights(path)
    except WeightsError as exc:
        raise UserError(f"--weights: {exc}") from None
    return resolved, resolved.identity


def _schedule(console: Console, plan, out, weights_ref, identity: str, options, plain: bool, view: BatchView) -> int:
    from batchstyle.batch.scheduler import Scheduler

    from .display import BatchDisplay, summary_table

    started = time.time()
    with BatchDisplay(console, live=False if plain else None) as display, display.warnings_as_notes():
        scheduler = Scheduler(plan.todo, len(plan.done), out, weights_ref, identity, options, view.display(display))
        try:
            state = scheduler.run()
        except RuntimeError as exc:
            display.log(f"[red]error:[/] {exc}")
            return EXIT_FAILED
        finally:
            view.finished(scheduler.state, aborted=scheduler.aborting)
    console.print(summary_table(state, time.time() - started))
    if scheduler.interrupted:
        console.print(f"Interrupted. Run the same command again to make the {state.pending} remaining image(s).")
        return EXIT_INTERRUPTED
    if state.failed:
        console.print(f"{state.failed} image(s) failed (see above, or batchstyle status {out.root}); "
                      f"running the same command again retries them.")
        return EXIT_FAILED
    return 0


def start_ray(address: str | None):
    """Join the cluster at ``address``, or start Ray on this machine.

    Ctrl-C while Ray starts waits for the start to finish and then shuts Ray down again: an
    interrupted ``ray.init`` would leave its helper processes running.
    """
    import logging

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if not address:
        kwargs["include_dashboard"] = False
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        ray.init(address=address or "local", **kwargs)  # "local": a new instance, never one found running
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupted:
            ray.shutdown()
    if interrupted:
        raise KeyboardInterrupt
    return ray
