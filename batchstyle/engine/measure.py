"""``batchstyle bench``: engine throughput per configuration, side by side.

Every (configuration, size) measurement runs in a fresh Python process, so that peak memory,
compiled graphs and allocator caches of one do not colour the next. A measurement optimises
``group`` jobs (images optimised together) at one fixed size (one scale: ``end_scale = min_scale = size``) for ``warmup``
untimed iterations and then ``iterations`` timed ones, or with ``full`` the whole multi-scale
run of the default settings at that end scale. It reports optimiser steps per second, images
(items) x iterations per second, megapixel-iterations per second, achieved TFLOP/s (from the
layer shapes: forward plus backward to the input) and its fraction of the device's peak where
known, peak memory, and each item's final loss evaluated in float32, compared with the first
configuration (the baseline) at the same size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from .layers import LAYER_INDEX, conv_macs
from .settings import StyleSettings
from .speed import MEMORY_FORMATS, PRECISIONS, Speed, parse_tile

# Dense peak TFLOP/s by (device name fragment) for fp32 / tf32 / bf16 (vendor datasheets, no sparsity).
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}),
]

QUALITY_TOLERANCE = 0.03  # the final loss may be this much above the baseline's before it is flagged


def peak_tflops(device_name: str, precision: str) -> float | None:
    for fragment, peaks in PEAK_TFLOPS:
        if fragment.lower() in device_name.lower():
            return peaks.get(precision)
    return None


@dataclass(frozen=True)
class Config:
    """One column of the comparison: engine speed options (tiles too) plus the group size."""

    precision: str = "fp32"
    memory_format: str = "contiguous"
    compile: bool = False
    group: int = 1
    tile: str | int = "auto"

    @classmethod
    def parse(cls, text: str) -> "Config":
        """``fp32``, ``bf16,channels_last,group=4,compile``, ``fp32,tile=512`` or ``precision=bf16,...``
        (``batch=``, the older name of ``group=``, too)."""
        values: dict[str, Any] = {}
        for part in (p.strip() for p in text.replace("+", ",").split(",")):
            if part:
                values.update(_config_part(part, text))
        config = cls(**values)
        config.speed()  # validates precision and memory format
        return config

    def speed(self) -> Speed:
        return Speed(precision=self.precision, memory_format=self.memory_format, compile=self.compile,
                     tile=self.tile)

    @property
    def name(self) -> str:
        return f"{self.speed().label()} g{self.group}"


def _config_part(part: str, text: str) -> dict[str, Any]:
    """One ``key=value`` (or bare value) of a configuration, as Config fields."""
    key, sep, value = part.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        bare = {**{p: ("precision", p) for p in PRECISIONS}, **{m: ("memory_format", m) for m in MEMORY_FORMATS},
                "nhwc": ("memory_format", "channels_last"), "cl": ("memory_format", "channels_last"),
                "compile": ("compile", "1")}
        if key not in bare:
            raise ValueError(f"unknown configuration part {part!r} in {text!r}; use precision "
                             f"({'/'.join(PRECISIONS)}), memory format ({'/'.join(MEMORY_FORMATS)}), "
                             f"compile, group=N, tile=auto|off|PX")
        key, value = bare[key]
    if key in ("group", "batch"):
        try:
            group = int(value)
        except ValueError:
            raise ValueError(f"group must be a whole number, not {value!r}") from None
        if group < 1:
            raise ValueError("group must be at least 1")
        return {"group": group}
    if key == "compile":
        return {"compile": value.strip().lower() in ("1", "true", "yes", "on")}
    if key in ("precision", "memory_format"):
        return {key: value.strip()}
    if key == "tile":
        return {"tile": parse_tile(value)}
    raise ValueError(f"unknown configuration key {key!r} in {text!r}")


def default_configs(device_kind: str) -> list[Config]:
    """The baseline (fp32, NCHW, one item), each option alone, then the options combined."""
    configs = [Config()]
    if device_kind == "cuda":
        configs.append(Config(precision="tf32"))
    configs += [Config(precision="bf16"), Config(memory_format="channels_last"), Config(compile=True),
                Config(group=4), Config(precision="bf16", group=4)]
    if device_kind == "cuda":
        configs.append(Config(precision="bf16", memory_format="channels_last", compile=True, group=4))
    return configs


@dataclass
class Measurement:
    config: str
    size: int
    width: int
    height: int
    group: int
    steps: int
    seconds: float  # timed part (or, with full, the whole run)
    steps_per_s: float
    item_iterations_per_s: float
    megapixel_iterations_per_s: float
    tflops: float
    peak_tflops: float | None
    fraction_of_peak: float | None
    peak_memory_bytes: int
    memory_kind: str  # "gpu allocated" or "process RSS"
    final_losses: list[float]
    device: str
    images_per_hour: float | None = None
    loss_vs_baseline: float | None = None  # relative, filled in by the parent
    extra: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0  # this process's CPU time in the timed part (steadier than seconds on a busy CPU)
    tiles: int = 0  # at the last scale; 0: the whole image
    tile_core: int = 0  # px, the longest core side
    box_pixels: int = 0  # of the largest tile with its margins
    predicted_memory_bytes: float = 0.0  # the engine's memory model for this step (engine/memory.py)
    work_ratio: float = 1.0  # the cost model's network work of a step against the whole image's (engine/tile_grid.py)
    memory_limit: int | None = None  # the address-space limit the measurement ran under


# --- one measurement (in a child process) ----------------------------------------------------------

def synthetic_images(size: int, seed: int = 0):
    """A smooth random content image and a busier style image, deterministic, as PIL images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)

    def smooth(side: int, octaves: int) -> Image.Image:
        out = np.zeros((side, side, 3))
        for o in range(octaves):
            cells = 2 ** (o + 2)
            grid = rng.random((cells, cells, 3))
            layer = Image.fromarray((grid * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
            out += np.asarray(layer, dtype=np.float64) / 2 ** o
        out = out / out.max() * 255
        return Image.fromarray(out.astype(np.uint8), "RGB")

    return smooth(size, 3), smooth(max(size, 256), 6)


def measure(config: Config, size: int, iterations: int, warmup: int, devices: list[str], weights: str | None,
            content: str | None, style: str | None, full: bool, settings: dict | None,
            memory_limit: int | None = None) -> Measurement:
    import torch

    from .devices import use_tf32_convolutions
    from .memory import model_for
    from .stylizer import Stylizer
    from .tile_grid import largest_box, largest_core, tiled_work

    stylizer = Stylizer(weights, devices, speed=config.speed())
    device = stylizer.devices[0]
    content_image, style_image = _inputs(content, style, size)
    base = StyleSettings.from_dict(settings or {})
    base = base.replace(end_scale=size) if full else \
        base.replace(end_scale=size, min_scale=size, initial_iterations=warmup + iterations)
    run = stylizer.run_group(_jobs(content_image, style_image, base, config.group))
    steps, seconds, cpu_seconds = _timed(run, device, full, warmup, iterations)
    memory, kind = _peak_memory(device)  # of the iterations (and targets), before the evaluation below
    tiles = run.current_tiles or []
    if device.type == "cuda":
        use_tf32_convolutions(False)  # evaluate in true float32
    losses = run.evaluate()
    flops, pixel_its = _work(run, base, config.group, full, steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, stylizer.speed.precision) if device.type == "cuda" else None
    tflops = flops / seconds / 1e12
    w, h = run.ladder[-1].size
    box = largest_box(tiles) if tiles else 0
    model = model_for(stylizer.speed.precision)
    predicted = model.tiled_bytes(w * h, box, config.group) if tiles else model.whole_bytes(w * h, config.group)
    return Measurement(
        config=config.name, size=size, width=w, height=h, group=config.group, steps=steps, seconds=seconds,
        steps_per_s=steps / seconds, item_iterations_per_s=steps * config.group / seconds,
        megapixel_iterations_per_s=pixel_its / seconds / 1e6, tflops=tflops, peak_tflops=peak,
        fraction_of_peak=tflops / peak if peak else None, peak_memory_bytes=memory, memory_kind=kind,
        final_losses=losses, device=name, images_per_hour=3600 * config.group / seconds if full else None,
        extra={"threads": torch.get_num_threads(), "torch": torch.__version__}, cpu_seconds=cpu_seconds,
        tiles=len(tiles), tile_core=largest_core(tiles) if tiles else 0, box_pixels=box,
        predicted_memory_bytes=predicted, memory_limit=memory_limit, work_ratio=tiled_work(tiles) if tiles else 1.0)


def _inputs(content: str | None, style: str | None, size: int):
    from .images import load_image

    if content and style:
        return load_image(content), load_image(style)
    return synthetic_images(size)


def _jobs(content, style, settings: StyleSettings, count: int) -> list:
    """``count`` distinct jobs: mirrored/flipped contents and their own seeds (the first is the baseline's)."""
    from PIL import Image

    from .run import Job

    variants = [content, content.transpose(Image.FLIP_LEFT_RIGHT), content.transpose(Image.FLIP_TOP_BOTTOM),
                content.transpose(Image.ROTATE_180)]
    return [Job(variants[k % 4], [style], settings.replace(seed=k)) for k in range(count)]


def _timed(run, device, full: bool, warmup: int, iterations: int) -> tuple[int, float, float]:
    """Optimiser steps timed, their seconds and this process's CPU seconds: the whole run, or the
    iterations after the warm-up."""
    import time

    import torch

    def now() -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter(), time.process_time()

    start = timed_from = now()
    steps = 0
    for event in run:
        if event.item != 0 or not hasattr(event, "iteration"):
            continue
        if not full and event.iteration == warmup:
            timed_from = now()
        steps += 1
    end = now()
    since = start if full else timed_from
    return (steps if full else iterations), end[0] - since[0], end[1] - since[1]


def _work(run, settings: StyleSettings, group: int, full: bool, steps: int) -> tuple[float, float]:
    """FLOPs and pixel-iterations of what was timed (from the layer shapes)."""
    deepest = max(LAYER_INDEX[n] for n in settings.content_layers + settings.style_layers)
    if full:  # the iterations each scale ran: fewer than the ladder's where the schedule is adaptive
        flops = sum(4 * conv_macs(s.width, s.height, deepest) * its for s, its in run.scales_run()) * group
        return flops, run.units_run() * group
    w, h = run.ladder[-1].size
    return 4 * conv_macs(w, h, deepest) * group * steps, w * h * group * steps


def _peak_memory(device) -> tuple[int, str]:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "gpu allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"


def child_main(argv: list[str]) -> None:
    """``python -m batchstyle.engine.measure CHILD-JSON``: one measurement, printed as JSON on the last line."""
    spec = json.loads(argv[0])
    if spec.get("memory_limit"):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (spec["memory_limit"], resource.RLIM_INFINITY))
    if spec.get("threads"):
        import torch
        torch.set_num_threads(spec["threads"])
    config = Config(**spec.pop("config"))
    spec.pop("threads", None)
    result = measure(config, **spec)
    print(json.dumps(asdict(result)))


# --- the parent ------------------------------------------------------------------------------------

class OutOfMemory(RuntimeError):
    """A measurement ran out of memory (or was killed for it): a result, not a bench failure."""


OUT_OF_MEMORY_SIGNS = ("can't allocate memory", "OutOfMemoryError", "out of memory")


def run_child(config: Config, size: int, **spec: Any) -> Measurement:
    payload = json.dumps({"config": asdict(config), "size": size, **spec})
    proc = subprocess.run([sys.executable, "-m", "batchstyle.engine.measure", payload], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        if proc.returncode == -9 or any(sign in proc.stderr for sign in OUT_OF_MEMORY_SIGNS):
            limit = spec.get("memory_limit")
            within = f" within {limit / 2**30:.1f} GiB" if limit else ""
            raise OutOfMemory(f"{config.name} at {size} px: out of memory{within}")
        raise RuntimeError(f"{config.name} at {size} px failed:\n{tail}")
    return Measurement(**json.loads(proc.stdout.strip().splitlines()[-1]))


def fit_memory_model(results: list[Measurement]) -> dict[str, float] | None:
    """The memory model's constants (``engine/memory.py``) fitted to these peaks by least squares:
    whole rows ``base + whole·pixels``, tiled rows ``base + state·pixels + tile·box`` (per image of a
    group). None when the rows cannot determine them (two sizes each, at least, are needed)."""
    import numpy as np

    whole = [r for r in results if not r.tiles]
    tiled = [r for r in results if r.tiles]
    names = ["base"] + (["whole"] if whole else []) + (["state", "tile"] if tiled else [])
    rows, peaks = [], []
    for r in whole + tiled:
        pixels, box = r.width * r.height * r.group, r.box_pixels * r.group
        rows.append([1.0] + ([0.0 if r.tiles else pixels] if whole else []) +
                    ([pixels, box] if r.tiles else [0.0, 0.0] if tiled else []))
        peaks.append(float(r.peak_memory_bytes))
    a = np.array(rows)
    if not rows or np.linalg.matrix_rank(a) < len(names):
        return None
    solution, *_ = np.linalg.lstsq(a, np.array(peaks), rcond=None)
    return dict(zip(names, solution.tolist()))


def compare(results: list[Measurement]) -> None:
    """Fill in each result's final loss relative to the baseline (the first configuration) at its size.

    The first job of every configuration has the baseline's inputs and seed (the others of a group
    are mirrored variants), so its loss is the one compared.
    """
    baseline: dict[int, float] = {}
    for r in results:
        first = r.final_losses[0]
        baseline.setdefault(r.size, first)
        r.loss_vs_baseline = first / baseline[r.size] - 1


def quality_problems(results: list[Measurement], tolerance: float = QUALITY_TOLERANCE) -> list[str]:
    return [f"{r.config} at {r.size} px: final loss {r.loss_vs_baseline:+.1%} against the baseline"
            for r in results if r.loss_vs_baseline is not None and r.loss_vs_baseline > tolerance]


def median_of(runs: list[Measurement]) -> Measurement:
    """The run with the median time (its other figures come with it), over repeats of one measurement."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


__all__ = ["Config", "Measurement", "default_configs", "measure", "run_child", "compare", "quality_problems",
           "median_of", "peak_tflops", "PEAK_TFLOPS", "synthetic_images", "OutOfMemory", "fit_memory_model"]


if __name__ == "__main__":
    child_main(sys.argv[1:])
