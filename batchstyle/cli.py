"""The ``batchstyle`` command: ``stylize`` one image, ``run`` a manifest, ``status`` of an output directory.

This is the only module that prints and exits. Exit codes: 0 done, 1 failed, 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console

from batchstyle import __version__
from batchstyle.engine.settings import (INITS, OPTIMIZERS, POOLINGS, STYLE_LOSSES, StyleSettings,
                                        format_layer_spec, settings_from_text)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
WEB_GRACE = 2.0  # seconds the live view stays up after a run so the page can show the result

_DEFAULTS = StyleSettings()


def _default(name: str) -> str:
    value = getattr(_DEFAULTS, name)
    if name in ("content_layers", "style_layers"):
        return format_layer_spec(value, getattr(_DEFAULTS, name[:-1] + "_weights"))
    return "equal" if value is None and name == "style_weights" else str(value)


# (flags, setting, click type, help). Every default is StyleSettings' own, shown in --help.
ENGINE_OPTIONS: list[tuple[tuple[str, ...], str, Any, str]] = [
    (("-s", "--end-scale"), "end_scale", str,
     "Final long side in pixels. N+ keeps the pixel count of an N×N square at the image's aspect ratio."),
    (("-ms", "--min-scale"), "min_scale", int, "Smallest scale (long side) of the multi-scale ladder."),
    (("-ii", "--initial-iterations"), "initial_iterations", int, "Iterations at the first scale."),
    (("-i", "--iterations"), "iterations", int, "Iterations at every later scale."),
    (("-cw", "--content-weight"), "content_weight", float,
     "Content loss weight. With the original Caffe VGG-19 weights, values near 5-20 keep more of the photo."),
    (("-tw", "--tv-weight"), "tv_weight", float, "Smoothness (total variation) weight."),
    (("--style-weight",), "style_weight", float, "Global style loss weight."),
    (("-sw", "--style-weights"), "style_weights", str,
     "Blend weights of the style images, comma-separated (normalised by the sum of absolute values)."),
    (("--style-loss",), "style_loss", click.Choice(STYLE_LOSSES),
     "gram: normalised Gram matrices (2021). w2: Wasserstein-2 between Gaussian fits (2023)."),
    (("--optimizer",), "optimizer", click.Choice(OPTIMIZERS), "Optimiser."),
    (("--init",), "init", click.Choice(INITS), "Initial image."),
    (("-ss", "--step-size"), "step_size", float, "Adam learning rate."),
    (("-ad", "--avg-decay"), "avg_decay", float, "Decay of the iterate average that becomes the output."),
    (("--pooling",), "pooling", click.Choice(POOLINGS), "Pooling in VGG-19 (average/l2 are rescaled)."),
    (("--style-scale-fac", "--style-scale"), "style_scale", float,
     "Style image size relative to the current scale (styles are never upscaled)."),
    (("--style-size",), "style_size", int, "Fixed style image long side at every scale (overrides --style-scale-fac)."),
    (("--content-layers",), "content_layers", str, "Content layers, optionally with weights: relu4_2 or relu4_2:1,relu5_2:0.5."),
    (("--style-layers",), "style_layers", str,
     "Style layers with optional weights (default weights: each layer 4x the next deeper one)."),
    (("-r", "--random-seed"), "seed", int, "Random seed (initial noise)."),
    (("--original-colors/--no-original-colors",), "original_colors", None,
     "Transfer luminance only: the output keeps the content's colours."),
]


def engine_options(func: Callable) -> Callable:
    """Add every engine option to a command; all default to None (= not given)."""
    for flags, name, type_, help_ in reversed(ENGINE_OPTIONS):
        kwargs = dict(default=None, help=f"{help_} [default: {_default(name)}]")
        if type_ is not None:
            kwargs["type"] = type_
        func = click.option(*flags, name, **kwargs)(func)
    return func


def settings_from_options(options: dict[str, Any], base: StyleSettings | None = None) -> StyleSettings:
    """StyleSettings from the engine options the user gave (text or typed values)."""
    given = {name: value for name, value in options.items()
             if value is not None and name in {n for _, n, _, _ in ENGINE_OPTIONS}}
    text = {k: (("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in given.items()}
    return settings_from_text(text, base)


def speed_options(func: Callable) -> Callable:
    """--precision, --memory-format and --compile: how the engine runs (not what it makes)."""
    from batchstyle.engine.speed import MEMORY_FORMATS, PRECISIONS

    func = click.option("--compile", "compile_", is_flag=True,
                        help="torch.compile the network for each scale's size (pays off only on long runs; "
                             "the first iterations of each size wait for the compiler).")(func)
    func = click.option("--memory-format", type=click.Choice(MEMORY_FORMATS), default="auto", show_default=True,
                        help="Activation layout. auto: channels_last on CUDA, contiguous (NCHW) on CPU.")(func)
    func = click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="Convolution arithmetic. bf16 keeps Gram matrices, losses and the optimizer in "
                             "float32. auto: bf16 where the CPU or GPU has native bfloat16 units, else fp32. "
                             "fp32 reproduces the reference exactly.")(func)
    return func


def speed_from_options(options: dict[str, Any]):
    """Pop the speed options out of a command's keyword arguments into a :class:`Speed`."""
    from batchstyle.engine.speed import Speed

    return Speed(precision=options.pop("precision", "auto"), memory_format=options.pop("memory_format", "auto"),
                 compile=bool(options.pop("compile_", False)))


class UserError(click.ClickException):
    """A problem with the user's input: printed as one or two lines, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {self.message}", soft_wrap=True)


def _split_list(values: tuple[str, ...]) -> list[str]:
    out = []
    for value in values:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchstyle")
def main() -> None:
    """Neural style transfer for folders of images: the multi-scale Gatys optimisation, on one machine or a Ray cluster.

    \b
    batchstyle stylize photo.jpg painting.jpg -o out.png     one image
    batchstyle run manifest.csv -o outdir/                    a batch (resumable)
    batchstyle status outdir/                                 what is done, failed, pending
    """


# --- stylize ---------------------------------------------------------------------------------------

@main.command()
@click.argument("content", type=click.Path(dir_okay=False))
@click.argument("styles", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="out.png", show_default=True,
              help="Output image; the extension picks the format: .png .jpg .webp (8-bit) or .tif (16-bit).")
@engine_options
@click.option("--devices", multiple=True, metavar="DEV[,DEV]",
              help="Device(s): cpu, cuda:0, or several (cuda:0,cuda:1) to split the network over them. "
                   "[default: cuda:0 if available, else cpu]")
@click.option("--split", metavar="LAYER[,LAYER]", help="With N devices, the N-1 layers that start devices 2..N "
              "(e.g. conv3_1). [default: block boundaries; conv2_1 for two devices]")
@click.option("--weights", type=click.Path(dir_okay=False), envvar="BATCHSTYLE_WEIGHTS",
              help="VGG-19 weights file (.safetensors/.pt/.pth, torchvision layout). "
                   "[default: $BATCHSTYLE_WEIGHTS, the cache, or torchvision's download]")
@click.option("--save-every", type=click.IntRange(min=0), default=50, show_default=True,
              help="Write the current image every N iterations (and after each scale); 0 writes only at the end.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Save the optimiser state here after every scale; if the file exists, continue from it.")
@click.option("--proof", type=click.Path(exists=True, dir_okay=False),
              help="CMYK ICC profile to soft-proof the inputs with (limits them to that print gamut).")
@click.option("--web", is_flag=True, help="Serve a live view of the run (image, scale, loss, it/s).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --web.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port for --web.")
@click.option("--browser", is_flag=True, help="With --web, open the live view in the default browser.")
@click.option("--trace", type=click.Path(dir_okay=False),
              help="Write every iteration's size, loss and time as JSON to this file.")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="Torch threads on the CPU. [default: all cores]")
@speed_options
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def stylize(content: str, styles: tuple[str, ...], output: str, devices: tuple[str, ...], split: str | None,
            weights: str | None, save_every: int, checkpoint: str | None, proof: str | None, web: bool,
            host: str, port: int, browser: bool, trace: str | None, cpu_threads: int | None, quiet: bool,
            **options: Any) -> None:
    """Stylize CONTENT with one or more STYLE images (blended) and write the result to --output.

    Ctrl-C stops and writes the current image.
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    speed = speed_from_options(options)
    try:
        settings = settings_from_options(options)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        with _user_errors():
            code = _stylize(console, content, list(styles), output, settings, _split_list(devices),
                            _split_list((split,)) if split else None, weights, save_every, checkpoint, proof,
                            (host, port) if web else None, browser, trace, quiet, cpu_threads, speed)
    except KeyboardInterrupt:  # while loading weights or images: nothing to write yet
        console.print("[yellow]Interrupted[/] before the first iteration; nothing was written.")
        code = EXIT_INTERRUPTED
    sys.exit(code)


class _user_errors:
    """Turn the engine's user-facing exceptions into one-line errors with exit code 2."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from batchstyle.engine.images import ImageError
        from batchstyle.engine.devices import DeviceError
        from batchstyle.engine.weights import WeightsError

        if exc is None or not isinstance(exc, (ImageError, WeightsError, DeviceError, ValueError, OSError)):
            return False
        if isinstance(exc, OSError) and not isinstance(exc, ImageError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise UserError(f"{where}{exc.strerror or exc}") from None
        raise UserError(str(exc)) from None


def _describe_devices(devices) -> str:
    import torch

    parts = []
    for dev in devices:
        if dev.type == "cuda":
            props = torch.cuda.get_device_properties(dev)
            parts.append(f"{dev} ({props.name}, compute {props.major}.{props.minor}, "
                         f"{props.total_memory // 2**20} MiB)")
        elif dev.type == "cpu":
            parts.append(f"cpu ({torch.get_num_threads()} threads)")
        else:
            parts.append(str(dev))
    return ", ".join(parts)


def _stylize(console: Console, content: str, styles: list[str], output: str, settings: StyleSettings,
             devices: list[str], split: list[str] | None, weights: str | None, save_every: int,
             checkpoint: str | None, proof: str | None, web: tuple[str, int] | None, browser: bool,
             trace: str | None, quiet: bool, cpu_threads: int | None = None, speed=None) -> int:
    import torch

    from batchstyle.engine.images import format_for, load_image, save_image
    from batchstyle.engine.checkpoint import Checkpoint
    from batchstyle.engine.events import Progress
    from batchstyle.engine.stylizer import Stylizer

    format_for(output)  # an unsupported extension fails now, not after an hour
    settings.blend_weights(len(styles))  # a wrong number of style weights, too
    content_image = load_image(content, proof=proof)
    style_images = [load_image(path, proof=proof) for path in styles]
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    stylizer = Stylizer(weights, devices or None, split, speed=speed)
    if not quiet:
        console.print(f"Devices: {_describe_devices(stylizer.devices)}, {stylizer.speed.label()}")
        console.print(f"Weights: {stylizer.weights.source}")
    resume = None
    if checkpoint and Path(checkpoint).is_file():
        resume = Checkpoint.load(checkpoint)
    try:
        run = stylizer.run(content_image, style_images, settings, resume)
    except ValueError as exc:
        if resume is None:
            raise
        raise ValueError(f"{checkpoint} was made for other images, settings or weights ({exc}); delete it or "
                         f"choose another --checkpoint") from None
    if resume is not None and not quiet:
        console.print(f"Continuing from {checkpoint} after scale {resume.scale_index + 1}/{resume.scale_count}")
    records: list[dict] = []
    preview = None
    if web:
        from batchstyle.web import LivePreview

        preview = LivePreview(*web)
        url = preview.start()
        console.print(f"Live view at [link={url}]{url}[/link]")
        if browser:
            import webbrowser

            webbrowser.open(url)
    display = _StylizeDisplay(console, run, quiet)
    snapshot_at, finished = 0.0, False
    try:
        with display:
            for event in run:
                if isinstance(event, Progress):
                    display.update(event)
                    if trace:
                        records.append({"w": event.width, "h": event.height, "i": event.iteration,
                                        "i_max": event.iterations, "loss": event.loss, "time": event.time,
                                        "gpu_ram": event.gpu_peak_bytes})
                    if preview is not None:
                        snapshot_at = _update_preview(preview, run, event, display, snapshot_at)
                    if save_every and event.iteration % save_every == 0 and event.iteration < event.iterations:
                        save_image(run.image(), output)
                else:
                    if checkpoint:
                        event.checkpoint.save(checkpoint)
                    if event.scale_index < event.scale_count - 1 and save_every:
                        save_image(run.image(), output)
        finished = True
    except KeyboardInterrupt:
        save_image(run.image(), output)
        console.print(f"[yellow]Interrupted:[/] wrote the current image to {output}")
        return EXIT_INTERRUPTED
    finally:
        if trace:
            Path(trace).write_text(json.dumps({"settings": settings.to_dict(), "iterates": records}, indent=1))
        if preview is not None and not finished:
            preview.stop()
    final = run.image()
    save_image(final, output)
    if preview is not None:  # show the final image and "Finished" before the page loses its server
        from batchstyle.engine.images import encode_image

        preview.update(None, image=lambda: encode_image(final, "jpeg"))
        preview.finish()
        time.sleep(WEB_GRACE)
        preview.stop()
    if not quiet:
        console.print(f"Wrote {output} ({display.summary()})")
    return 0


def _update_preview(preview, run, event, display, snapshot_at: float) -> float:
    """Status every iteration; a new image snapshot at most once a second (it costs a device copy)."""
    status = {"scale": event.scale_index + 1, "scales": event.scale_count, "width": event.width,
              "height": event.height, "iteration": event.iteration, "iterations": event.iterations,
              "loss": event.loss, "its_per_sec": display.rate, "elapsed": event.elapsed,
              "gpu_memory_mb": event.gpu_peak_bytes / 2**20, "done": False}
    now = time.monotonic()
    if now - snapshot_at < 1.0 and event.iteration not in (1, event.iterations):
        preview.update(status)
        return snapshot_at
    from batchstyle.engine.images import encode_image

    image = run.image()
    preview.update(status, image=lambda: encode_image(image, "jpeg"))
    return now


class _StylizeDisplay:
    """A rich progress bar per scale on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, console: Console, run, quiet: bool):
        self.console, self.run, self.quiet = console, run, quiet
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
            self._progress.update(self._task, completed=event.iteration, loss=f"{event.loss:.6g}",
                                  rate=f"{self.rate:.2f} it/s")
        elif now - self._last_line >= 5 or event.iteration == event.iterations:
            self._last_line = now
            rate = f" {self.rate:.2f} it/s" if self.rate else ""
            self.console.print(f"{label} iteration {event.iteration}/{event.iterations} loss {event.loss:.6g}{rate}")

    def summary(self) -> str:
        seconds = time.monotonic() - self._start
        return f"{self._iterations} iterations in {seconds:.1f} s"


# --- run -------------------------------------------------------------------------------------------

@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False),
              help="Where the images (and the records that make the batch resumable) go. "
                   "[default: output/ next to the manifest]")
@engine_options
@click.option("--address", envvar="RAY_ADDRESS",
              help="Ray cluster to join (auto, HOST:PORT or ray://HOST:PORT). [default: $RAY_ADDRESS, "
                   "else start Ray on this machine]")
@click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where workers run. auto: GPUs if the cluster has any, else one CPU worker per node. "
                   "gpu: ask for GPU workers even if no GPU node is up yet (autoscaling clusters).")
@click.option("--workers", type=click.IntRange(min=1),
              help="At most this many workers at once. [default: one per GPU (or per node without GPUs)]")
@click.option("--two-gpu-pixels", type=click.IntRange(min=1), default=12_000_000, show_default=True,
              help="Items whose final image has more pixels than this run split over two GPUs.")
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
@click.option("--batch-size", default="auto", show_default=True, metavar="N|auto",
              help="Images of the same size and loop settings that a worker optimises together (each keeps its "
                   "own loss and result). auto: on a GPU up to 8 images of at most 512x512 px, as many as fit "
                   "in half its memory; on a CPU up to 4 of at most 256x256 px.")
@speed_options
@click.option("--plain", is_flag=True, help="Plain log lines instead of the live table (automatic when not a terminal).")
@click.option("--backend", default="engine", hidden=True, help="engine, or fake:... for tests and benchmarks.")
def run(manifest: str, outdir: str | None, address: str | None, device: str, workers: int | None,
        two_gpu_pixels: int, retries: int, force: bool, weights: str | None, cpu_threads: int | None,
        stall_timeout: float, batch_size: str, plain: bool, backend: str, **options: Any) -> None:
    """Stylize every image of a MANIFEST (CSV), on this machine or a Ray cluster; resumable.

    \b
    The manifest has a header and one row per content/style pair:
        content,style,output,end_scale,content_weight
        photos/,paintings/starry.jpg,{content}__starry.png,512,5
        me.jpg,a.jpg;b.jpg,me.tif,1024,
    content is an image, a folder or a glob; style is one or more images separated by ';';
    optional columns: style_weights (';'), output ({content}, {style}, {line}, {n}), gpus (1 or 2),
    and any engine option by its long name. Empty cells take the command-line value.
    Paths are relative to the manifest. Run the same command again to resume.
    """
    from batchstyle.batch.manifest import ManifestError, read_manifest
    from batchstyle.batch.scheduler import RunOptions
    from batchstyle.batch.store import LockError, OutputDir

    console = Console(highlight=False, soft_wrap=True)  # log lines are never wrapped
    speed = speed_from_options(options)
    batch = _batch_size(batch_size)
    try:
        defaults = settings_from_options(options)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        items = read_manifest(manifest, defaults)
    except ManifestError as exc:
        Console(stderr=True, highlight=False).print(str(exc), markup=False, soft_wrap=True)
        noun = "problem" if len(exc.problems) == 1 else "problems"
        raise UserError(f"{len(exc.problems)} {noun} in {manifest}; nothing was started") from None
    out = OutputDir(outdir if outdir else Path(manifest).parent / "output")
    try:
        out.create()
        lock = out.lock().acquire()
    except LockError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot use {out.root} as the output directory: {exc.strerror or exc}") from None
    try:
        options_ = RunOptions(backend=backend, device=device, workers=workers, retries=retries,
                              cpu_threads=cpu_threads, stall_timeout=stall_timeout or None, batch_size=batch,
                              speed=speed.to_dict())
        code = _run_batch(console, items, out, lock, address, two_gpu_pixels, force, weights, plain, options_)
    finally:
        lock.release()
    sys.exit(code)


def _batch_size(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"--batch-size must be a whole number >= 1 or auto, not {text!r}")
    return value


def _run_batch(console: Console, items, out, lock, address, two_gpu_pixels, force, weights, plain,
               options) -> int:
    from batchstyle.batch.plan import make_plan
    from batchstyle.batch.progress import BatchDisplay, summary_table

    if lock.taken_over:
        holder = lock.taken_over
        console.print(f"Taking over {out.root} from a run that ended without cleaning up "
                      f"(pid {holder.get('pid')} on {holder.get('host')}).")
    removed = out.remove_temp_files()
    if removed:
        console.print(f"Removed {removed} temporary file(s) left by an interrupted run.")
    resolved = None
    if options.backend == "engine":
        from batchstyle.engine.weights import WeightsError, resolve_weights

        try:
            resolved = resolve_weights(weights)
        except WeightsError as exc:
            raise UserError(str(exc)) from None
        identity = resolved.identity
    else:
        identity = options.backend
    plan = make_plan(items, out, identity, force=force, two_gpu_pixels=two_gpu_pixels)
    console.print(f"{len(plan.all)} image(s) in the manifest: {len(plan.done)} already done (skipped), "
                  f"{len(plan.todo)} to make, into {out.root}")
    if not plan.todo:
        return 0
    started = time.time()
    ray = _start_ray(address)
    from batchstyle.batch.scheduler import Scheduler

    try:
        weights_ref = ray.put(resolved.to_numpy()) if resolved is not None else None
        with BatchDisplay(console, live=False if plain else None) as display:
            scheduler = Scheduler(plan.todo, len(plan.done), out, weights_ref, identity, options, display)
            try:
                state = scheduler.run()
            except RuntimeError as exc:
                display.log(f"[red]error:[/] {exc}")
                return EXIT_FAILED
        console.print(summary_table(state, time.time() - started))
        if scheduler.interrupted:
            console.print(f"Interrupted. Run the same command again to make the {state.pending + len(state.running)} "
                          f"remaining image(s).")
            return EXIT_INTERRUPTED
        if state.failed:
            console.print(f"{state.failed} image(s) failed (see above, or batchstyle status {out.root}); "
                          f"running the same command again retries them.")
            return EXIT_FAILED
        return 0
    finally:
        ray.shutdown()


def _start_ray(address: str | None):
    """Join the cluster at ``address``, or start Ray on this machine."""
    import logging
    import os

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if not address:
        kwargs["include_dashboard"] = False
    ray.init(address=address or None, **kwargs)
    return ray


# --- bench ---------------------------------------------------------------------------------------

@main.command()
@click.option("--sizes", default="128,256,512", show_default=True, metavar="PX[,PX]",
              help="Image sizes (long side; square for synthetic images).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed iterations per measurement.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed iterations first (cuDNN autotuning, compilation, caches).")
@click.option("-c", "--config", "configs", multiple=True, metavar="SPEC",
              help="A configuration to measure, e.g. fp32, bf16,channels_last, bf16,batch=4,compile; repeat "
                   "for a side-by-side table. The first is the baseline. [default: fp32, then each option "
                   "alone, then combined]")
@click.option("--full", is_flag=True, help="Time the whole multi-scale run (the engine options' settings, with "
              "--end-scale from --sizes) and report images per hour, instead of iterations at one size.")
@click.option("--content", type=click.Path(exists=True, dir_okay=False), help="Real content image. [default: synthetic]")
@click.option("--style", type=click.Path(exists=True, dir_okay=False), help="Real style image. [default: synthetic]")
@click.option("--devices", default=None, metavar="DEV[,DEV]", help="cpu, cuda:0, or cuda:0,cuda:1 to split. "
              "[default: cuda:0 if available, else cpu]")
@click.option("--weights", type=click.Path(dir_okay=False), envvar="BATCHSTYLE_WEIGHTS",
              help="VGG-19 weights file. [default: $BATCHSTYLE_WEIGHTS, the cache, or torchvision's download]")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure each configuration this many times (alternating) and report the median.")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="Torch threads on the CPU. [default: all cores]")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@engine_options
def bench(sizes: str, steps: int, warmup: int, configs: tuple[str, ...], full: bool, content: str | None,
          style: str | None, devices: str | None, weights: str | None, repeats: int, cpu_threads: int | None,
          as_json: bool, **options: Any) -> None:
    """Measure engine throughput for several configurations side by side (precision, memory format,
    compilation, batch size): iterations/s, megapixel-iterations/s, fraction of peak FLOP/s, peak
    memory and the final loss in float32 against the first configuration.

    Each measurement runs in its own process. Examples:

    \b
    batchstyle bench --sizes 256 -c fp32 -c bf16 -c bf16,batch=4
    batchstyle bench --full --sizes 512 -c fp32 -c bf16,channels_last,batch=8 --json
    """
    from batchstyle.bench import compare, default_configs, median_of, quality_problems, run_child
    from batchstyle.bench import Config

    try:
        size_list = [int(v) for v in _split_list((sizes,))]
        if not size_list or min(size_list) < 32:
            raise ValueError
    except ValueError:
        raise UserError(f"--sizes must be pixel sizes of at least 32 separated by commas, not {sizes!r}") from None
    try:
        settings = settings_from_options(options)
        parsed = [Config.parse(c) for c in configs]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device_list = _split_list((devices,)) if devices else None
    with _user_errors():
        from batchstyle.engine.devices import check_devices, default_devices
        from batchstyle.engine.weights import resolve_weights

        checked = check_devices(device_list or default_devices())
        weights_path = weights or os.environ.get("BATCHSTYLE_WEIGHTS")
        if not weights_path:
            resolve_weights()  # fails now, with the message that says how to get weights
    parsed = parsed or default_configs(checked[0].type)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    spec = dict(iterations=steps, warmup=warmup, devices=[str(d) for d in checked], weights=weights_path,
                content=content, style=style, full=full, settings=settings.to_dict(), threads=cpu_threads)
    results = []
    for size in size_list:
        runs: dict[Config, list] = {c: [] for c in parsed}
        for r in range(repeats):
            for config in parsed:
                try:
                    runs[config].append(run_child(config, size, **spec))
                except RuntimeError as exc:
                    raise UserError(str(exc)) from None
                m = runs[config][-1]
                console.print(f"{size} px {config.name}: {m.item_iterations_per_s:.2f} image-it/s, "
                              f"{m.seconds:.1f} s" + (f" (repeat {r + 1})" if repeats > 1 else ""))
        results += [median_of(runs[c]) for c in parsed]
    compare(results)
    if as_json:
        import dataclasses

        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    else:
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(bench_table(results, full))
    for problem in quality_problems(results):
        console.print(f"[yellow]quality:[/] {problem}")


def bench_table(results, full: bool):
    from rich.table import Table

    first = results[0]
    title = (f"{first.device}, {'whole runs' if full else f'{first.steps} timed iterations at one size'}; "
             f"memory: {first.memory_kind}")
    table = Table(title=title, title_justify="left")
    for name in ("size", "config", "it/s", "image-it/s", "speedup", "MP-it/s", "TFLOP/s", "of peak",
                 "peak mem", "final loss", "vs base"):
        table.add_column(name, justify="left" if name == "config" else "right")
    if full:
        table.add_column("images/h", justify="right")
    base: dict[int, float] = {}
    for r in results:
        base.setdefault(r.size, r.item_iterations_per_s)
        row = [f"{r.width}x{r.height}", r.config, f"{r.steps_per_s:.2f}", f"{r.item_iterations_per_s:.2f}",
               f"{r.item_iterations_per_s / base[r.size]:.2f}x", f"{r.megapixel_iterations_per_s:.2f}",
               f"{r.tflops:.2f}", "–" if r.fraction_of_peak is None else f"{r.fraction_of_peak:.1%}",
               f"{r.peak_memory_bytes / 2**20:,.0f} MiB", f"{r.final_losses[0]:.5g}",
               "–" if r.loss_vs_baseline is None else f"{r.loss_vs_baseline:+.2%}"]
        if full:
            row.append(f"{r.images_per_hour:,.0f}")
        table.add_row(*row)
    return table


# --- status ----------------------------------------------------------------------------------------

@main.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--all", "show_all", is_flag=True, help="List every pending and done image, not just the first few.")
def status(outdir: str, show_all: bool) -> None:
    """Show what is done, failed (with errors) and pending in an output directory (no Ray needed)."""
    from rich.table import Table

    from batchstyle.batch.store import OutputDir

    out = OutputDir(outdir)
    if not out.meta.is_dir():
        raise UserError(f"{outdir} is not a batchstyle output directory (no {out.meta.name}/ in it)")
    console = Console(highlight=False, soft_wrap=True)
    plan = out.plan()
    records = out.records()
    done_ids = out.done_ids(records)
    failures = out.failures()
    planned = {e.id for e in plan}
    done = [e for e in plan if e.id in done_ids]
    failed = [e for e in plan if e.id in failures and e.id not in done_ids]
    pending = [e for e in plan if e.id not in done_ids and e.id not in failures]
    console.print(f"[bold]{out.root}[/]: {len(plan)} image(s) in the latest run: [green]{len(done)} done[/], "
                  f"[red]{len(failed)} failed[/], {len(pending)} pending")
    extra = len(done_ids - planned)
    if extra:
        console.print(f"({extra} more done image(s) from earlier manifests or settings)")
    lock = out.lock()
    holder = lock.holder()
    if holder:
        since = time.strftime('%Y-%m-%d %H:%M', time.localtime(holder.get('started', 0)))
        who = f"pid {holder.get('pid')} on {holder.get('host')}, started {since}"
        console.print(f"A run is in progress ({who})." if lock.held_elsewhere() else
                      f"The last run ended without finishing ({who}); run the same command again to resume.")
    limit = None if show_all else 20
    if failed:
        table = Table("line", "image", "error", title="failed", title_justify="left", show_lines=False)
        for entry in failed:
            f = failures[entry.id]
            table.add_row(str(entry.line), entry.output, f"{f.error} ({f.kind}, {f.attempts} attempt(s))")
        console.print(table)
    for title, entries in (("pending", pending), ("done", done)):
        if not entries or (title == "done" and not show_all):
            continue
        table = Table("line", "image", "content", title=title, title_justify="left")
        for entry in entries[:limit]:
            record = records.get(entry.id)
            table.add_row(str(entry.line), entry.output, entry.content if record is None else
                          f"{entry.content} ({record.seconds:.0f} s on {record.worker})")
        console.print(table)
        if limit is not None and len(entries) > limit:
            console.print(f"... and {len(entries) - limit} more (--all lists them)")


if __name__ == "__main__":  # pragma: no cover
    main()
