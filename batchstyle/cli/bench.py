"""``batchstyle bench``: engine configurations measured side by side, each in a fresh process."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import click
from rich.console import Console

from .common import UserError, setting_options, settings_from_options, split_list, user_errors
from .display import bench_table


@click.command()
@click.option("--sizes", default="128,256,512", show_default=True, metavar="PX[,PX]",
              help="Image sizes (long side; square for synthetic images).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed iterations per measurement.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed iterations first (cuDNN autotuning, compilation, caches).")
@click.option("-c", "--config", "configs", multiple=True, metavar="SPEC",
              help="A configuration to measure, e.g. fp32, bf16,channels_last, bf16,group=4,compile; repeat "
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
@click.option("--memory-limit", metavar="BYTES", callback=lambda ctx, param, value: _bytes(value),
              help="CPU only: run each measurement within this much memory (e.g. 18G), as the process's "
                   "address-space limit, which tile=auto plans for too. A measurement that runs out is "
                   "reported, not fatal.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@setting_options
def bench(sizes: str, steps: int, warmup: int, configs: tuple[str, ...], full: bool, content: str | None,
          style: str | None, devices: str | None, weights: str | None, repeats: int, cpu_threads: int | None,
          memory_limit: int | None, as_json: bool, **options: Any) -> None:
    """Measure engine throughput for several configurations side by side (precision, memory format,
    compilation, group size, tiles): iterations/s, megapixel-iterations/s, fraction of peak FLOP/s,
    peak memory against the engine's memory model, and the final loss in float32 against the first
    configuration. Prints the memory model, and the model fitted to these measurements.

    Each measurement runs in its own process. Examples:

    \b
    batchstyle bench --sizes 256 -c fp32 -c bf16 -c bf16,group=4
    batchstyle bench --full --sizes 512 -c fp32 -c bf16,channels_last,group=8 --json
    batchstyle bench --sizes 1024,2048 --steps 1 --warmup 0 -c fp32,tile=off -c fp32,tile=512
    batchstyle bench --sizes 4096 --steps 1 --warmup 0 -c fp32,tile=auto --memory-limit 12G
    """
    from batchstyle.engine.measure import compare, quality_problems

    size_list = _sizes(sizes)
    settings = settings_from_options(options)
    parsed, checked, weights_path = _configurations(configs, devices, weights)
    if memory_limit and any(d.type != "cpu" for d in checked):
        raise UserError("--memory-limit is for measurements on a CPU; on a GPU its own memory is the limit "
                        "(measure on a GPU of the size in question)")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    spec = dict(iterations=steps, warmup=warmup, devices=[str(d) for d in checked], weights=weights_path,
                content=content, style=style, full=full, settings=settings.to_dict(), threads=cpu_threads,
                memory_limit=memory_limit)
    outcomes = [m for size in size_list for m in _measure_size(console, parsed, size, repeats, spec)]
    results = [m for m in outcomes if not isinstance(m, str)]
    compare(results)
    if as_json:
        import dataclasses

        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    elif results:
        out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        out.print(bench_table(results, full))
        out.print(memory_model_text(results))
    for problem in quality_problems(results):
        console.print(f"[yellow]quality:[/] {problem}")
    for failure in (m for m in outcomes if isinstance(m, str)):
        console.print(f"[yellow]did not fit:[/] {failure}")


def _bytes(text: str | None) -> int | None:
    """``24G``, ``512M`` or a number of bytes (binary units: G = 2**30)."""
    if text is None:
        return None
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(value[-1:], 1)
    try:
        number = float(value[:-1] if scale > 1 else value) * scale
    except ValueError:
        number = 0
    if number < 2**28:
        raise click.BadParameter(f"a memory size of at least 256M, such as 24G, not {text!r}")
    return int(number)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in split_list((text,))]
        if sizes and min(sizes) >= 32:
            return sizes
    except ValueError:
        pass
    raise UserError(f"--sizes must be pixel sizes of at least 32 separated by commas, not {text!r}")


def _configurations(configs: tuple[str, ...], devices: str | None, weights: str | None):
    """The configurations to measure, the checked devices and the weights file (failing early)."""
    from batchstyle.engine.measure import Config, default_configs

    try:
        parsed = [Config.parse(c) for c in configs]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if any(re.search(r"(^|[,+])\s*batch\s*=", c) for c in configs):
        click.echo("note: batch= is now called group= (images optimised together)", err=True)
    from batchstyle.engine import DeviceError, WeightsError

    with user_errors({DeviceError: "--devices", WeightsError: "--weights"}):
        from batchstyle.engine.devices import check_devices, default_devices
        from batchstyle.engine.weights import resolve_weights

        checked = check_devices(split_list((devices,)) or default_devices())
        weights_path = weights or os.environ.get("BATCHSTYLE_WEIGHTS")
        if not weights_path:
            resolve_weights()  # fails now, with the message that says how to get weights
    return parsed or default_configs(checked[0].type), checked, weights_path


def _measure_size(console: Console, configs, size: int, repeats: int, spec: dict) -> list:
    """Every configuration at one size, ``repeats`` times alternating; the median of each, or what
    ran out of memory (text)."""
    from batchstyle.engine.measure import OutOfMemory, median_of, run_child

    runs: dict[Any, list] = {c: [] for c in configs}
    failed: dict[Any, str] = {}
    for r in range(repeats):
        for config in (c for c in configs if c not in failed):
            try:
                runs[config].append(run_child(config, size, **spec))
            except OutOfMemory as exc:
                failed[config] = str(exc)
                console.print(f"{exc}")
                continue
            except RuntimeError as exc:
                raise UserError(str(exc)) from None
            m = runs[config][-1]
            console.print(f"{size} px {config.name}: {m.item_iterations_per_s:.2f} image-it/s, "
                          f"{m.seconds:.1f} s, peak {m.peak_memory_bytes / 2**30:.2f} GiB"
                          + (f" (repeat {r + 1})" if repeats > 1 else ""))
    return [failed[c] if c in failed else median_of(runs[c]) for c in configs]


def memory_model_text(results) -> str:
    """The engine's memory model for the precisions measured, and the model these measurements fit."""
    from batchstyle.engine.measure import fit_memory_model
    from batchstyle.engine.memory import model_for

    lines = []
    for precision in dict.fromkeys(r.config.split()[0] for r in results):
        m = model_for(precision)
        lines.append(f"memory model ({precision}, engine/memory.py): whole {m.base / 1e9:.2f} GB + {m.whole:,.0f} B "
                     f"per image pixel; tiled {m.base / 1e9:.2f} GB + {m.state:,.0f} B per image pixel + "
                     f"{m.tile:,.0f} B per pixel of the largest tile with its margins")
        fitted = fit_memory_model([r for r in results if r.config.split()[0] == precision])
        if fitted:
            parts = ", ".join(f"{k} {v / 1e9:.2f} GB" if k == "base" else f"{k} {v:,.0f} B/px"
                              for k, v in fitted.items())
            lines.append(f"  fitted to these {precision} measurements: {parts}")
    return "\n".join(lines)
