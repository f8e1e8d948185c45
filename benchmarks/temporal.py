"""Clips: how consistent the temporal method is against frames made one by one, and what it costs.

    python -m benchmarks.temporal [--clips pan,handheld] [--frames 16] [--size 128] [--threads 1]
                                  [--configs "50:40:1;200:40:1"] [--iterations 60,30] [--min-scale 64]
                                  [--cache DIR] [--save DIR] [--json FILE] [--weights PATH]
    python -m benchmarks.temporal --flow         # the end-point error of each flow method, no stylization

Two test clips with their true motion (``tests/support/clips.py``) of real photos (the shared images,
else ``jobs/demo``): a camera panning 2 px a frame, and a handheld camera (pan, zoom, roll) with an
object crossing the frame. Each is stylized with a real painting at ``--size`` px

* one frame at a time ("independent"): every frame the full ladder (``--min-scale`` to ``--size``,
  ``--iterations`` at the first and at each later scale) from the same seed;
* by the temporal method (``engine.frames.stylize_clip``) for each ``--configs`` entry
  ``temporal_weight:frame_iterations:long_term`` (long_term written 1,2,4): the first frame as above,
  every later one its end scale alone.

The consistency of a clip's outputs is the mean over consecutive frames of the mean absolute difference
(levels 0-255) between output t and output t-1 warped by the true flow, over the pixels visible in both;
also with the estimated flow (DIS) as the yardstick, over the pixels its confidence trusts. The style
distance (``benchmarks.quality``'s plain VGG-19: the mean relative Gram distance to the painting) says
whether the frames still carry the style. Costs: seconds and pixel-iterations of a later frame against
the first. ``--cache DIR`` keeps the independent frames between runs (they do not depend on the
configurations); ``--save DIR`` writes ``clip_strip.jpg``: a few frames of each clip, content /
independent / temporal (the first configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.quality import DEMO, SHARED, PlainVGG
from tests.support.clips import Clip, handheld_clip, pan_clip


def photos() -> tuple[Path, Path, Path]:
    """The panned photo, the object that crosses the handheld clip, and the painting."""
    if (SHARED / "content" / "tubingen_neckarfront.jpg").is_file():
        return (SHARED / "content" / "tubingen_neckarfront.jpg", SHARED / "content" / "chelsea_cat.jpg",
                SHARED / "style" / "van_gogh_starry_night.jpg")
    return DEMO / "content" / "coffee.jpg", DEMO / "content" / "chelsea_cat.jpg", DEMO / "styles" / "van_gogh_starry_night.jpg"


def make_clip(name: str, frames: int, size: int) -> Clip:
    photo, other, _ = (Image.open(p) for p in photos())
    shape = (size, round(size * 3 / 4))
    return pan_clip(photo, frames, shape, step=2) if name == "pan" else handheld_clip(photo, other, frames, shape)


def consistency(outputs: list[Image.Image], clip: Clip) -> tuple[float, float]:
    """(against the true flow over visible pixels, against the estimated flow over trusted pixels)."""
    from batchstyle.engine.flow import confidence, optical_flow, warp

    true, estimated = [], []
    for t in range(1, len(outputs)):
        now, before = (np.asarray(o, np.float32) for o in (outputs[t], outputs[t - 1]))
        true.append(np.abs(now - warp(before, clip.flows[t]))[clip.valid[t]].mean())
        backward = optical_flow(clip.frames[t], clip.frames[t - 1])
        trusted = confidence(backward, optical_flow(clip.frames[t - 1], clip.frames[t])) == 1
        estimated.append(np.abs(now - warp(before, backward))[trusted].mean())
    return float(np.mean(true)), float(np.mean(estimated))


def run_frame(stylizer, job) -> tuple[Image.Image, float, int]:
    start = time.perf_counter()
    run = stylizer.run_group([job])
    for _ in run:
        pass
    return run.pil(), time.perf_counter() - start, run.units_run()


def independent(stylizer, clip: Clip, style, settings, cache: Path | None, key: str) -> tuple[list, list]:
    """Every frame by itself (the full ladder), or from the cache; each frame's (seconds, pixel-iterations)."""
    from batchstyle.engine import Job

    folder = cache / key if cache else None
    if folder and (folder / "costs.json").is_file():
        costs = json.loads((folder / "costs.json").read_text())
        return [Image.open(folder / f"{t:03d}.png").convert("RGB") for t in range(len(clip.frames))], costs
    outputs, costs = [], []
    for frame in clip.frames:
        image, seconds, units = run_frame(stylizer, Job(frame, [style], settings))
        outputs.append(image)
        costs.append((seconds, units))
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        for t, image in enumerate(outputs):
            image.save(folder / f"{t:03d}.png")
        (folder / "costs.json").write_text(json.dumps(costs))
    return outputs, costs


def temporal(stylizer, clip: Clip, style, settings, config, first: Image.Image, first_cost) -> tuple[list, list]:
    """The temporal method; the first frame is the independent one (the same job, so the same image)."""
    from batchstyle.engine import frame_job

    outputs, costs = [first], [first_cost]
    for t in range(1, len(clip.frames)):
        earlier = [(clip.frames[t - j], outputs[t - j]) for j in config.long_term if j <= t]
        image, seconds, units = run_frame(stylizer, frame_job(clip.frames[t], [style], settings, config, earlier))
        outputs.append(image)
        costs.append((seconds, units))
    return outputs, costs


def row(name: str, method: str, outputs, costs, clip, yardstick, style) -> dict:
    true, estimated = consistency(outputs, clip)
    style_d = statistics.mean(yardstick.distances(o, f, style)[1] for o, f in zip(outputs, clip.frames))
    later = costs[1:]
    return {"clip": name, "method": method, "consistency_true": round(true, 2),
            "consistency_estimated": round(estimated, 2), "style_distance": round(style_d, 3),
            "first_seconds": round(costs[0][0], 1), "later_seconds": round(statistics.mean(c[0] for c in later), 1),
            "first_pixel_iterations": costs[0][1], "later_pixel_iterations": round(statistics.mean(c[1] for c in later))}


def parse_configs(text: str):
    from batchstyle.engine import ClipSettings

    out = []
    for part in text.split(";"):
        weight, iterations, *look = part.split(":")
        out.append(ClipSettings(float(weight), int(iterations), tuple(int(v) for v in (look[0] if look else "1").split(","))))
    return out


def strip(clip_rows: list[tuple[Clip, list, list]], path: Path, picks: int = 4) -> None:
    """Each clip's frames at ``picks`` times, as rows content / independent / temporal; one JPEG."""
    w, h = clip_rows[0][0].frames[0].size
    count = len(clip_rows[0][0].frames)
    times = [round(k * (count - 1) / (picks - 1)) for k in range(picks)]
    sheet = Image.new("RGB", (picks * w + (picks - 1) * 2, len(clip_rows) * (3 * h + 4) - 4), "white")
    for c, (clip, alone, together) in enumerate(clip_rows):
        for r, images in enumerate((clip.frames, alone, together)):
            for k, t in enumerate(times):
                sheet.paste(images[t].convert("RGB").resize((w, h)), (k * (w + 2), c * (3 * h + 4) + r * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=85)


def flow_table(args) -> list[dict]:
    """The end-point error (px) of each flow method against the clips' true flow, over visible pixels."""
    from batchstyle.engine.flow import FLOW_METHODS, end_point_error, optical_flow

    rows = []
    for name in args.clips:
        clip = make_clip(name, args.frames, args.size)
        for method in FLOW_METHODS:
            start = time.perf_counter()
            errors = [end_point_error(optical_flow(clip.frames[t], clip.frames[t - 1], method), clip.flows[t],
                                      clip.valid[t]) for t in range(1, len(clip.frames))]
            rows.append({"clip": name, "method": method, "epe_mean": round(float(np.mean(errors)), 3),
                         "epe_worst_frame": round(float(np.max(errors)), 3),
                         "ms_per_flow": round((time.perf_counter() - start) / len(errors) * 1000, 1)})
    return rows


def measure(args) -> list[dict]:
    import torch

    from batchstyle.engine import Speed, StyleSettings, Stylizer

    torch.set_num_threads(args.threads)
    stylizer = Stylizer(args.weights, devices=["cpu"], speed=Speed(precision="fp32"))
    yardstick = PlainVGG(stylizer.weights)
    style = Image.open(photos()[2]).convert("RGB")
    first, later = args.iterations
    settings = StyleSettings(end_scale=args.size, min_scale=args.min_scale, initial_iterations=first,
                             iterations=later, content_weight=args.content_weight)
    rows, sheets = [], []
    for name in args.clips:
        clip = make_clip(name, args.frames, args.size)
        key = f"{name}-{args.frames}-{args.size}-{args.min_scale}-{first}-{later}-{args.content_weight}"
        alone, costs = independent(stylizer, clip, style, settings, args.cache, key)
        rows.append(row(name, "independent", alone, costs, clip, yardstick, style))
        print(json.dumps(rows[-1]), flush=True)
        for k, config in enumerate(args.configs):
            together, tcosts = temporal(stylizer, clip, style, settings, config, alone[0], costs[0])
            label = f"temporal w={config.temporal_weight:g} it={config.frame_iterations} lt={','.join(map(str, config.long_term))}"
            rows.append(row(name, label, together, tcosts, clip, yardstick, style))
            print(json.dumps(rows[-1]), flush=True)
            if k == 0:
                sheets.append((clip, alone, together))
    if args.save:
        strip(sheets, Path(args.save) / "clip_strip.jpg")
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=lambda t: t.split(","), default=["pan", "handheld"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--min-scale", type=int, default=64)
    parser.add_argument("--iterations", type=lambda t: [int(v) for v in t.split(",")], default=[60, 30],
                        help="of the independent frames (and the first): at the first scale, at each later one")
    parser.add_argument("--content-weight", type=float, default=2.0)
    parser.add_argument("--configs", type=parse_configs, default=None,
                        help="temporal_weight:frame_iterations:long_term, separated by ';' (default: ClipSettings())")
    parser.add_argument("--flow", action="store_true", help="only the end-point errors of the flow methods")
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--save")
    parser.add_argument("--json")
    parser.add_argument("--weights", default=os.environ.get("BATCHSTYLE_WEIGHTS"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.configs is None:
        from batchstyle.engine import ClipSettings

        args.configs = [ClipSettings()]
    rows = flow_table(args) if args.flow else measure(args)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
