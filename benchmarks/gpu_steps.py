"""The engine's steps of ``python -m benchmarks.gpu_check`` (device choice, throughput and memory,
bf16 autocast, channels_last, groups, ``--tile auto``, the two-GPU split, the schedules,
compilation), and what every step shares: the plan of sizes, the check's state, Skip and CheckFailed.

Each step takes the check and the figures it fills in, and raises ``Skip`` or ``CheckFailed``; the
measurements are ``batchstyle bench``'s own (``batchstyle/engine/measure.py``: its FLOP counting, its
table of peaks, its memory model's prediction), made in this process.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "jobs" / "demo"


class Skip(Exception):
    """A step that does not apply here; the text says why."""


class CheckFailed(Exception):
    """A step ran but what it found is wrong; the text says what."""


@dataclass
class Plan:
    """The sizes and counts of one mode: the GPU's, or the small one on the CPU."""

    small: bool
    device: str
    sizes: tuple[int, ...]
    mid: int  # the size at which options are compared
    group_size: int  # the size at which groups are compared
    group: int  # images in the compared group
    warmup: int
    iterations: int
    batch_images: int
    budget: float  # seconds: a step that would end past it (by its estimate) is skipped

    def estimate(self, step: str) -> float:
        """About how many seconds a step takes on a GPU (small mode: all of them fit)."""
        return 0.0 if self.small else STEP_SECONDS.get(step, 30.0)

    @classmethod
    def for_mode(cls, small: bool, device: str, budget: float | None) -> "Plan":
        if small:
            return cls(True, device, (64, 96, 128), 96, 64, 2, 1, 3, 2, budget or 300.0)
        return cls(False, device, (512, 1024, 2048), 1024, 512, 4, 3, 20, 4, budget or 470.0)


# Generous guesses of a step's seconds on one GPU, so that the check ends within 8 minutes.
STEP_SECONDS = {"throughput": 45.0, "tile_auto": 60.0, "oom_retry": 60.0, "batch_run": 90.0, "schedule": 90.0,
                "compile": 150.0}


@dataclass
class StepResult:
    name: str
    status: str  # ok | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """What the steps share: the plan, the weights, the measurements made so far, the clock."""

    plan: Plan
    weights_path: str
    out: Path
    started: float = field(default_factory=time.monotonic)
    weights: Any = None  # VGGWeights, loaded once
    speed: dict[str, Any] = field(default_factory=dict)  # the device's resolved defaults
    measured: dict[tuple, Any] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.plan.device.startswith("cuda")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left of the budget (at least 30: the timeout of a child process)."""
        return max(30.0, self.plan.budget - self.elapsed())

    def default_config(self, **changes: Any):
        """The device's defaults (``auto`` resolved) as a bench configuration."""
        from batchstyle.engine.measure import Config

        values = {"precision": self.speed.get("precision", "fp32"),
                  "memory_format": self.speed.get("memory_format", "contiguous")}
        return Config(**{**values, **changes})

    def measure(self, config, size: int, *, full: bool = False, settings: dict | None = None,
                devices: list[str] | None = None, warmup: int | None = None, iterations: int | None = None):
        """``batchstyle bench``'s measurement of one configuration at one size, in this process
        (remembered: a step that needs a measurement another made reuses it)."""
        from batchstyle.engine.measure import measure

        warmup = self.plan.warmup if warmup is None else warmup
        iterations = self.plan.iterations if iterations is None else iterations
        devices = devices or [self.plan.device]
        key = (config, size, full, json.dumps(settings, sort_keys=True), tuple(devices), warmup, iterations)
        if key not in self.measured:
            started = time.perf_counter()
            try:
                result = measure(config, size, iterations, warmup, devices, self.weights, None, None, full,
                                 settings)
            finally:
                free_memory()
            result.extra["call_seconds"] = time.perf_counter() - started
            self.measured[key] = result
        return self.measured[key]


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def row(m) -> dict[str, Any]:
    """One measurement as a report row: speed, the fraction of the device's peak, memory against the model."""
    pixels = m.width * m.height * m.group
    out = {"config": m.config, "size": f"{m.width}x{m.height}", "group": m.group, "steps": m.steps,
           "it_per_s": m.steps_per_s, "image_it_per_s": m.item_iterations_per_s,
           "mp_it_per_s": m.megapixel_iterations_per_s, "tflops": m.tflops, "peak_tflops": m.peak_tflops,
           "fraction_of_peak": m.fraction_of_peak, "final_loss": m.final_losses[0], "tiles": m.tiles}
    if m.memory_kind == "gpu allocated":
        out.update(peak_gib=m.peak_memory_bytes / 2**30, bytes_per_pixel=m.peak_memory_bytes / pixels,
                   model_bytes_per_pixel=m.predicted_memory_bytes / pixels,
                   measured_over_model=m.peak_memory_bytes / m.predicted_memory_bytes)
    return out


def sane(m) -> None:
    """A measurement that ran: positive speed, finite losses."""
    if not (m.steps_per_s > 0 and math.isfinite(m.steps_per_s)):
        raise CheckFailed(f"{m.config} at {m.size} px: {m.steps_per_s} iterations/s")
    if not all(math.isfinite(loss) for loss in m.final_losses):
        raise CheckFailed(f"{m.config} at {m.size} px: final losses {m.final_losses}")


def against(base, other, figures: dict, name: str, per: str = "steps_per_s") -> None:
    """``other`` against ``base``: the speed ratio and the final loss (float32) against the base's;
    a loss more than ``bench``'s tolerance above fails the step."""
    from batchstyle.engine.measure import QUALITY_TOLERANCE

    sane(base)
    sane(other)
    figures.setdefault("rows", []).extend(row(m) for m in (base, other) if row(m) not in figures.get("rows", []))
    figures[f"{name}_speedup"] = getattr(other, per) / getattr(base, per)
    change = other.final_losses[0] / base.final_losses[0] - 1
    figures[f"{name}_loss_change"] = change
    if change > QUALITY_TOLERANCE:
        raise CheckFailed(f"{other.config}: final loss {change:+.1%} against {base.config} "
                          f"(more than {QUALITY_TOLERANCE:.0%})")


# --- the steps ---------------------------------------------------------------------------------------

def device(check: Check, figures: dict) -> None:
    """The engine's device resolution picks the GPU; ``auto`` speed options resolve for it."""
    import torch

    from batchstyle.engine.devices import check_devices, default_devices
    from batchstyle.engine.speed import Speed

    chosen = default_devices()
    figures["default_devices"] = chosen
    devices = check_devices([check.plan.device])
    speed = Speed().resolve(devices)
    check.speed = {"precision": speed.precision, "memory_format": speed.memory_format}
    figures.update(checked=[str(d) for d in devices], resolved_speed=speed.to_dict())
    if not torch.cuda.is_available():
        if chosen != ["cpu"]:
            raise CheckFailed(f"no CUDA here, but the engine chose {chosen}")
        return
    index = torch.device(chosen[0]).index or 0
    props = torch.cuda.get_device_properties(index)
    major, minor = torch.cuda.get_device_capability(index)
    figures.update(gpu=torch.cuda.get_device_name(index), capability=f"{major}.{minor}",
                   total_memory_gib=props.total_memory / 2**30, gpus=torch.cuda.device_count())
    if chosen != ["cuda:0"]:
        raise CheckFailed(f"CUDA is available, but the engine chose {chosen}")
    if not check.cuda:
        return  # --small on a GPU machine: the steps run on the CPU
    want = ("bf16" if major >= 8 else "fp32", "channels_last")
    if (speed.precision, speed.memory_format) != want:
        raise CheckFailed(f"auto resolved to {speed.precision}, {speed.memory_format} on {figures['gpu']}; "
                          f"expected {want[0]}, {want[1]}")


def throughput(check: Check, figures: dict) -> None:
    """Iterations/s, megapixel-iterations/s and the fraction of peak at each size, with peak memory
    against the engine's memory model and the model fitted to these sizes."""
    from batchstyle.engine.measure import fit_memory_model
    from batchstyle.engine.memory import model_for

    results = []
    figures["rows"] = rows = []
    for size in check.plan.sizes:
        m = check.measure(check.default_config(), size)
        results.append(m)
        rows.append(row(m))
        sane(m)
    model = model_for(check.speed.get("precision", "fp32"))
    figures["memory_model"] = {"base_bytes": model.base, "whole_bytes_per_pixel": model.whole}
    whole = [m for m in results if m.memory_kind == "gpu allocated" and not m.tiles]
    if len(whole) < 2:
        figures["memory_note"] = ("peak memory per pixel is measured on a GPU (on the CPU one process's "
                                  "RSS peak is that of everything it did before)")
        return
    fitted = fit_memory_model(whole)
    if fitted:
        figures["fitted_memory_model"] = {"base_bytes": fitted["base"], "whole_bytes_per_pixel": fitted["whole"]}
        figures["fitted_over_model_per_pixel"] = fitted["whole"] / model.whole


def bf16_autocast(check: Check, figures: dict) -> None:
    """The convolutions run in bfloat16 under the engine's autocast; bf16 against fp32 in speed and loss."""
    import torch

    from batchstyle.engine.measure import Config
    from batchstyle.engine.speed import Speed
    from batchstyle.engine.stylizer import Stylizer

    stylizer = Stylizer(check.weights, [check.plan.device], speed=Speed(precision="bf16"))
    x = torch.rand(1, 3, 32, 32, device=stylizer.devices[0]).contiguous(memory_format=stylizer.memory_format)
    with torch.no_grad(), stylizer.autocast():
        features = stylizer.features(["relu1_1"])(x)
    dtypes = sorted({str(t.dtype) for key, t in features.items() if key != "input"})
    figures["activation_dtypes_under_autocast"] = dtypes
    del stylizer, features
    if dtypes != ["torch.bfloat16"]:
        raise CheckFailed(f"under bf16 autocast the activations are {dtypes}, not torch.bfloat16")
    layout = check.speed.get("memory_format", "contiguous")
    base = check.measure(Config("fp32", layout), check.plan.mid)
    bf16 = check.measure(Config("bf16", layout), check.plan.mid)
    against(base, bf16, figures, "bf16")


def channels_last(check: Check, figures: dict) -> None:
    """The network's weights in NHWC under channels_last; NHWC against NCHW at the same precision."""
    import torch

    from batchstyle.engine.measure import Config
    from batchstyle.engine.speed import Speed
    from batchstyle.engine.stylizer import Stylizer

    stylizer = Stylizer(check.weights, [check.plan.device], speed=Speed(memory_format="channels_last"))
    convs = [m for m in stylizer.features(["relu2_1"]).modules() if isinstance(m, torch.nn.Conv2d)]
    nhwc = all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    figures["conv_weights_channels_last"] = nhwc
    del stylizer, convs
    if not nhwc:
        raise CheckFailed("with memory_format=channels_last the network's conv weights are not NHWC")
    precision = check.speed.get("precision", "fp32")
    nchw = check.measure(Config(precision, "contiguous"), check.plan.mid)
    channels = check.measure(Config(precision, "channels_last"), check.plan.mid)
    against(nchw, channels, figures, "channels_last")


def groups(check: Check, figures: dict) -> None:
    """Several images optimised together against one alone: image-iterations/s, and the group's
    first image (the lone image's inputs and seed) with the same loss."""
    size, count = check.plan.group_size, check.plan.group
    alone = check.measure(check.default_config(), size)
    together = check.measure(check.default_config(group=count), size)
    figures["group"] = count
    if len(together.final_losses) != count:
        raise CheckFailed(f"a group of {count} gave {len(together.final_losses)} losses")
    against(alone, together, figures, f"group_of_{count}", per="item_iterations_per_s")


def tile_auto(check: Check, figures: dict) -> None:
    """``--tile auto`` with the device's real memory budget: whole where the model says the image
    fits; on a GPU, tiles just past the largest whole image, whose peak stays within the budget."""
    import torch

    from batchstyle.engine.memory import memory_budget, model_for

    device = torch.device(check.plan.device)
    budget, model = memory_budget(device), model_for(check.speed.get("precision", "fp32"))
    side = math.isqrt(model.largest_whole(budget))
    figures.update(budget_gib=budget / 2**30, largest_whole_side_by_model=side)
    m = check.measure(check.default_config(), max(check.plan.sizes))
    fits = model.whole_bytes(m.width * m.height) <= budget
    figures["largest_size"] = {"size": f"{m.width}x{m.height}", "tiles": m.tiles, "model_says_whole_fits": fits}
    if fits != (m.tiles == 0):
        raise CheckFailed(f"auto chose {m.tiles} tiles at {m.width}x{m.height}, but the model says the whole "
                          f"image {'fits' if fits else 'does not fit'} the budget")
    if not check.cuda:
        figures["past_the_whole_limit"] = (f"not run in small mode: the real budget tiles images from about "
                                           f"{side} px, too large for the CPU")
        return
    tiled_past_the_limit(check, figures, device, budget, model, -(-side * 108 // 1600) * 16)


def tiled_past_the_limit(check: Check, figures: dict, device, budget: int, model, side: int) -> None:
    """One iteration of a ``side``-px square with ``tile=auto``: it must tile, and fit the budget."""
    import torch

    from batchstyle.engine.devices import is_out_of_memory
    from batchstyle.engine.measure import synthetic_images
    from batchstyle.engine.settings import StyleSettings
    from batchstyle.engine.speed import Speed
    from batchstyle.engine.stylizer import Stylizer
    from batchstyle.engine.tile_grid import largest_box, largest_core

    stylizer = Stylizer(check.weights, [device], speed=Speed(**check.speed, tile="auto"))
    content, style = synthetic_images(1024)
    settings = StyleSettings(end_scale=side, min_scale=side, initial_iterations=1)
    run, started, failure = stylizer.run(content, [style], settings), time.perf_counter(), None
    try:
        for _ in run:
            pass
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - out of memory is this step's finding
        if not is_out_of_memory(exc):
            raise
        failure = str(exc).splitlines()[0]
    tiles, peak = run.current_tiles or [], torch.cuda.max_memory_allocated(device)
    w, h = run.ladder[-1].size
    box = largest_box(tiles) if tiles else w * h
    figures["past_the_whole_limit"] = out = {
        "size": f"{w}x{h}", "tiles": len(tiles), "core": largest_core(tiles) if tiles else 0, "box_pixels": box,
        "model_gib": model.tiled_bytes(w * h, box) / 2**30, "peak_gib": peak / 2**30,
        "peak_over_budget": peak / budget, "seconds": time.perf_counter() - started}
    del run, stylizer
    free_memory()
    if failure:
        raise CheckFailed(f"out of memory at {w}x{h} with the {len(tiles)} tiles auto chose by the model "
                          f"(the model underestimates this GPU): {failure}")
    if not tiles:
        raise CheckFailed(f"auto did not tile {w}x{h}, past the largest whole image of the model ({out})")
    if peak > budget:
        raise CheckFailed(f"peak {peak / 2**30:.1f} GiB over the budget of {budget / 2**30:.1f} GiB ({out})")


def two_gpu(check: Check, figures: dict) -> None:
    """One image with the network split over two GPUs, against one GPU (on two CPU devices in small
    mode: the split's code path, not its speed)."""
    import torch

    if check.cuda:
        if torch.cuda.device_count() < 2:
            raise Skip(f"one GPU here ({torch.cuda.get_device_name(0)}); the split needs two")
        devices = ["cuda:0", "cuda:1"]
    else:
        devices = ["cpu", "cpu"]
        figures["note"] = "two CPU devices: the split's code path, not its speed"
    split = check.measure(check.default_config(), check.plan.mid, devices=devices)
    if check.cuda:
        figures["peak_gib_per_gpu"] = [torch.cuda.max_memory_allocated(d) / 2**30 for d in devices]
    figures["devices"] = devices
    one = check.measure(check.default_config(), check.plan.mid)
    against(one, split, figures, "split")
    figures["rows"][0]["devices"], figures["rows"][-1]["devices"] = check.plan.device, ",".join(devices)


def schedule(check: Check, figures: dict) -> None:
    """The ``fixed`` and ``adaptive`` schedules over the whole ladder: time, iterations, final loss."""
    from batchstyle.engine.settings import FIELDS_BY_NAME, StyleSettings

    if "schedule" not in FIELDS_BY_NAME:
        raise Skip("schedule setting not available")
    end, base = (96, {"min_scale": 64, "initial_iterations": 8, "iterations": 6}) if check.plan.small else (512, {})
    figures["rows"] = rows = []
    results = {}
    for value in ("fixed", "adaptive"):
        settings = StyleSettings(**base, schedule=value).to_dict()
        m = results[value] = check.measure(check.default_config(), end, full=True, settings=settings)
        sane(m)
        rows.append({"schedule": value, "end_scale": end, "seconds": m.seconds, "iterations": m.steps,
                     "images_per_hour": m.images_per_hour, "final_loss": m.final_losses[0]})
    fixed, adaptive = results["fixed"], results["adaptive"]
    figures.update(adaptive_over_fixed_time=adaptive.seconds / fixed.seconds,
                   adaptive_over_fixed_iterations=adaptive.steps / fixed.steps,
                   adaptive_loss_change=adaptive.final_losses[0] / fixed.final_losses[0] - 1)


def compile_step(check: Check, figures: dict) -> None:
    """``torch.compile`` against the same configuration eager: speed, the cost of compiling, the loss."""
    if not check.cuda:
        raise Skip("torch.compile on the CPU builds C++ kernels for minutes; it is checked on a GPU "
                   "(without --small)")
    eager = check.measure(check.default_config(), check.plan.mid)
    compiled = check.measure(check.default_config(compile=True), check.plan.mid)
    figures["compile_and_warmup_seconds"] = compiled.extra["call_seconds"] - compiled.seconds
    against(eager, compiled, figures, "compile")


def masks(check: Check, figures: dict) -> None:
    """Two styles with masks (guided Gram matrices) against one style: seconds per evaluation and peak
    memory at the middle size, in the device's defaults; the masked loss must be finite."""
    import statistics

    import torch
    from PIL import Image

    from batchstyle.engine import Speed, StyleSettings, Stylizer
    from benchmarks.masks import split

    stylizer = Stylizer(check.weights, [check.plan.device], speed=Speed(**check.speed))
    content = Image.open(DEMO / "content" / "coffee.jpg")
    styles = [Image.open(DEMO / "styles" / name) for name in ("hokusai_great_wave.jpg", "van_gogh_starry_night.jpg")]
    size = check.plan.mid
    for name, chosen, mask in (("plain", styles[:1], None), ("masks", styles, split(*content.size, 0.25))):
        run = stylizer.run(content, chosen, StyleSettings(end_scale=size, min_scale=size), masks=mask, tile="off")
        objective, (w, h) = run.objective(0), run.ladder[0].size
        x = torch.rand(1, 3, h, w, device=check.plan.device).contiguous(memory_format=stylizer.memory_format)
        if check.cuda:
            torch.cuda.reset_peak_memory_stats()
        times, losses = [], None
        for _ in range(check.plan.iterations + 1):
            start = time.perf_counter()
            losses, _ = objective(x)
            if check.cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        if not torch.isfinite(losses).all():
            raise CheckFailed(f"the {name} loss is not finite: {losses.tolist()}")
        figures[f"{name}_seconds"] = statistics.median(times[1:])
        figures[f"{name}_peak_bytes"] = torch.cuda.max_memory_allocated() if check.cuda else None
        del run, objective, x
        free_memory()
    figures["masks_over_plain_time"] = figures["masks_seconds"] / figures["plain_seconds"]
    if check.cuda:
        figures["masks_over_plain_memory"] = figures["masks_peak_bytes"] / figures["plain_peak_bytes"]
