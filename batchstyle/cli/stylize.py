"""``batchstyle stylize``: one content image, one or more style images, one output, a progress bar."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from batchstyle.engine.settings import StyleSettings

from .common import (EXIT_INTERRUPTED, UserError, max_pixels_option, print_urls, setting_options,
                     settings_from_options, speed_from_options, speed_options, split_list, user_errors)
from .display import StylizeDisplay

WEB_GRACE = 2.0  # seconds the live view stays up after a run so the page can show the result


@dataclass
class StylizeOptions:
    """What ``batchstyle stylize`` was asked to do, parsed."""

    content: str
    styles: list[str]
    output: str
    settings: StyleSettings
    devices: list[str]
    split: list[str] | None
    weights: str | None
    save_every: int
    checkpoint: str | None
    proof: str | None
    web: tuple[str, int] | None
    browser: bool
    trace: str | None
    quiet: bool
    cpu_threads: int | None
    speed: Any
    max_pixels: int | None = None
    masks: list[str] = field(default_factory=list)  # one per style, or one segmentation with mask_colors
    mask_colors: str | None = None


@click.command()
@click.argument("content", type=click.Path(dir_okay=False))
@click.argument("styles", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="out.png", show_default=True,
              help="Output image; the extension picks the format: .png .jpg .webp (8-bit) or .tif (16-bit).")
@click.option("--masks", metavar="MASK[;MASK]",
              help="Where each style applies: one greyscale mask per style image, separated by ';' (quote it), in "
                   "the order of the styles, white where that style applies and black where it does not; or, with "
                   "--mask-colors, one colour-coded segmentation image. Masks have the content's shape.")
@click.option("--mask-colors", metavar="COLOR[;COLOR]",
              help="With --masks SEGMENTATION: the colour of each style's region, in the order of the styles "
                   "(hex like #ff0000 or CSS names like red, separated by ';').")
@setting_options
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
@max_pixels_option
@speed_options
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def stylize(content: str, styles: tuple[str, ...], output: str, devices: tuple[str, ...], split: str | None,
            weights: str | None, save_every: int, checkpoint: str | None, proof: str | None, web: bool,
            host: str, port: int, browser: bool, trace: str | None, cpu_threads: int | None,
            max_input_pixels: int, quiet: bool, masks: str | None, mask_colors: str | None, **options: Any) -> None:
    """Stylize CONTENT with one or more STYLE images (blended) and write the result to --output.

    Ctrl-C stops and writes the current image.
    """
    from batchstyle.batch.mask_inputs import split_cell
    from batchstyle.engine import DeviceError, WeightsError

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    speed = speed_from_options(options)
    opts = StylizeOptions(content, list(styles), output, settings_from_options(options), split_list(devices),
                          split_list((split,)) or None, weights, save_every, checkpoint, proof,
                          (host, port) if web else None, browser, trace, quiet, cpu_threads, speed, max_input_pixels,
                          split_cell(masks or ""), mask_colors)
    try:
        with user_errors({DeviceError: "--devices", WeightsError: "--weights"}):
            code = run_stylize(console, opts)
    except KeyboardInterrupt:  # while loading weights or images: nothing to write yet
        console.print("[yellow]Interrupted[/] before the first iteration; nothing was written.")
        code = EXIT_INTERRUPTED
    sys.exit(code)


def run_stylize(console: Console, opts: StylizeOptions) -> int:
    """Load, optimise with a live display, write; 130 after Ctrl-C (with the current image written)."""
    from batchstyle.engine.images import save_image

    run = _prepare(console, opts)
    live_view = _start_live_view(console, opts) if opts.web else None
    display, trace, finished = StylizeDisplay(console, opts.quiet), [], False
    try:
        with display:
            _optimise(run, opts, display, live_view, trace)
        finished = True
    except KeyboardInterrupt:
        save_image(run.image(), opts.output)
        console.print(f"[yellow]Interrupted:[/] wrote the current image to {opts.output}")
        return EXIT_INTERRUPTED
    finally:
        if opts.trace:
            Path(opts.trace).write_text(json.dumps({"settings": opts.settings.to_dict(), "iterates": trace}, indent=1))
        if live_view is not None and not finished:
            live_view.stop()
    final = run.image()
    save_image(final, opts.output)
    if live_view is not None:
        _show_final(live_view, final)
    if not opts.quiet:
        console.print(f"Wrote {opts.output} ({display.summary()})")
    return 0


def _prepare(console: Console, opts: StylizeOptions):
    """Check what can fail early, load the inputs and the model; the run, resumed if asked."""
    import torch

    from batchstyle.engine import Checkpoint, Stylizer
    from batchstyle.engine.images import format_for, load_image

    format_for(opts.output)  # an unsupported extension fails now, not after an hour
    opts.settings.blend_weights(len(opts.styles))  # a wrong number of style weights, too
    content = load_image(opts.content, proof=opts.proof, max_pixels=opts.max_pixels)
    styles = [load_image(path, proof=opts.proof, max_pixels=opts.max_pixels) for path in opts.styles]
    masks = load_masks(opts.masks, opts.mask_colors, content.size, len(styles))
    if opts.cpu_threads:
        torch.set_num_threads(opts.cpu_threads)
    stylizer = Stylizer(opts.weights, opts.devices or None, opts.split, speed=opts.speed)
    if not opts.quiet:
        console.print(f"Devices: {_describe_devices(stylizer.devices)}, {stylizer.speed.label()}")
        console.print(f"Weights: {stylizer.weights.source}")
    resume = Checkpoint.load(opts.checkpoint) if opts.checkpoint and Path(opts.checkpoint).is_file() else None
    try:
        run = stylizer.run(content, styles, opts.settings, resume, masks=masks)
    except ValueError as exc:
        if resume is None:
            raise
        raise ValueError(f"{opts.checkpoint} was made for other images, masks, settings or weights ({exc}); delete it or "
                         f"choose another --checkpoint") from None
    if resume is not None and not opts.quiet:
        console.print(f"Continuing from {opts.checkpoint} after scale {resume.scale_index + 1}/{resume.scale_count}")
    return run


def load_masks(paths: list[str], colors_text: str | None, content_size: tuple[int, int], styles: int) -> list | None:
    """The masks of ``--masks`` (and ``--mask-colors``), one per style, checked as a manifest's are; None
    without masks. Every problem is one line of a :class:`UserError`."""
    from batchstyle.batch.mask_inputs import load_mask, pixel_problems
    from batchstyle.engine.masks import MaskError, count_problems, parse_colors, shape_problems

    if not paths:
        if colors_text:
            raise UserError("--mask-colors goes with --masks SEGMENTATION; name the colour-coded segmentation image")
        return None
    labels = [f"mask {path!r}" for path in paths]
    try:
        colors = parse_colors(colors_text) if colors_text else None
        problems = count_problems(len(paths), colors, styles)
        images = [] if problems else [load_mask(_read(path, label), label) for path, label in zip(paths, labels)]
    except MaskError as exc:
        problems = [str(exc)]
    if not problems:
        problems = shape_problems(content_size, [image.size for image in images], labels)
    if not problems:
        problems, masks = pixel_problems(images, labels, colors)
    if problems:
        raise UserError("\n".join(_flags(problem) for problem in problems))
    return masks


def _read(path: str, label: str) -> bytes:
    """A mask file's bytes; a :class:`MaskError` that names it when it cannot be read."""
    from batchstyle.engine.files import file_kind, not_regular
    from batchstyle.engine.masks import MaskError

    try:
        kind = file_kind(path)  # a pipe or a device is never opened
        if kind:
            raise MaskError(f"{label} {not_regular(kind)}")
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MaskError(f"{label} does not exist") from None
    except OSError as exc:
        raise MaskError(f"{label} cannot be read: {exc.strerror or exc}") from None


def _flags(problem: str) -> str:
    """A mask problem in the words of the command line (a manifest's columns are its flags here)."""
    return re.sub(r"\bmasks names\b", "--masks names", re.sub(r"\bmask_colors\b", "--mask-colors", problem))


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


def _optimise(run, opts: StylizeOptions, display: StylizeDisplay, live_view, trace: list[dict]) -> None:
    """Iterate the run: display, trace, live view, intermediate images and checkpoints."""
    from batchstyle.engine import Progress
    from batchstyle.engine.images import save_image

    snapshot_at = 0.0
    for event in run:
        if not isinstance(event, Progress):  # a scale finished
            if opts.checkpoint:
                event.checkpoint.save(opts.checkpoint)
            if event.scale_index < event.scale_count - 1 and opts.save_every:
                save_image(run.image(), opts.output)
            continue
        display.update(event)
        if opts.trace:
            trace.append({"w": event.width, "h": event.height, "i": event.iteration, "i_max": event.iterations,
                          "loss": event.loss, "time": event.time, "gpu_ram": event.gpu_peak_bytes})
        if live_view is not None:
            snapshot_at = _update_live_view(live_view, run, event, display, snapshot_at)
        if opts.save_every and event.iteration % opts.save_every == 0 and event.iteration < event.iterations:
            save_image(run.image(), opts.output)


def _start_live_view(console: Console, opts: StylizeOptions):
    from batchstyle.web import LiveView

    live_view = LiveView(*opts.web)
    url = live_view.start()
    print_urls(console, "Live view", live_view.server)
    if opts.browser:
        import webbrowser

        webbrowser.open(url)
    return live_view


def _update_live_view(live_view, run, event, display: StylizeDisplay, snapshot_at: float) -> float:
    """Status every iteration; a new image snapshot at most once a second (it costs a device copy)."""
    from batchstyle.engine.images import encode_image

    status = {"scale": event.scale_index + 1, "scales": event.scale_count, "width": event.width,
              "height": event.height, "iteration": event.iteration, "iterations": event.iterations,
              "loss": event.loss, "its_per_sec": display.rate, "elapsed": event.elapsed,
              "gpu_memory_mb": event.gpu_peak_bytes / 2**20, "done": False}
    now = time.monotonic()
    if now - snapshot_at < 1.0 and event.iteration not in (1, event.iterations):
        live_view.update(status)
        return snapshot_at
    image = run.image()
    live_view.update(status, image=lambda: encode_image(image, "jpeg"))
    return now


def _show_final(live_view, final) -> None:
    """Show the final image and "Finished" before the page loses its server."""
    from batchstyle.engine.images import encode_image

    live_view.update(None, image=lambda: encode_image(final, "jpeg"))
    live_view.finish()
    time.sleep(WEB_GRACE)
    live_view.stop()
