"""Masks measured: does each region take its own style, and what do guided Gram matrices cost?

    python -m benchmarks.masks [--size 256] [--budget 0.5] [--soft 0,0.25] [--save DIR] [--json FILE]
    python -m benchmarks.masks --cost [--cost-size 512] [--repeats 5]

Quality: the demo's coffee photo with Hokusai's wave on the left and Van Gogh's night on the right,
once with a hard left/right split and once with a soft boundary (a ramp over ``--soft`` of the
width). For each side of the output (the part where its mask is white) the style distance to both
paintings is measured with plain VGG-19 code (``benchmarks.quality.PlainVGG``: relative Frobenius
distance of Gram matrices, mean over relu1_1..relu5_1); a side should be closer to its own style
than to the other. The same is shown for the unmasked 50/50 blend, where neither side should be.

Cost (``--cost``): seconds per objective evaluation (loss and gradient) and the process's peak
memory at ``--cost-size``, for one style, two blended styles, and two styles with masks, each in a
fresh process (median of ``--repeats`` evaluations after one warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.quality import DEMO, STYLE_LAYERS, PlainVGG, side_by_side

STYLES = ("hokusai_great_wave.jpg", "van_gogh_starry_night.jpg")  # left, right
CONTENT = "coffee.jpg"


def split(width: int, height: int, soft: float) -> list:
    """Left and right masks; ``soft``: the share of the width over which they ramp."""
    from PIL import Image

    x = np.arange(width) + 0.5
    ramp = max(soft * width, 1e-9)
    left = np.clip((width / 2 - x) / ramp + 0.5, 0, 1) if soft else (x < width / 2).astype(float)
    grey = np.repeat(np.round(left * 255).astype(np.uint8)[None], height, 0)
    return [Image.fromarray(grey, "L"), Image.fromarray(255 - grey, "L")]


def side_distances(yardstick: PlainVGG, output, styles, masks) -> dict:
    """Per side (where its mask is white): the style distance to each painting."""
    out = {}
    for side, mask in zip(("left", "right"), masks):
        columns = np.nonzero(np.asarray(mask.resize(output.size))[0] >= 250)[0]
        part = output.crop((int(columns.min()), 0, int(columns.max()) + 1, output.height))
        feats = yardstick.features(part)
        out[side] = {name: _style_distance(yardstick, feats, style) for name, style in zip(("hokusai", "van_gogh"), styles)}
    return out


def _style_distance(yardstick: PlainVGG, feats: dict, style) -> float:
    from PIL import Image

    scale = min(1.0, 256 / max(style.size))
    sty = yardstick.features(style.convert("RGB").resize((round(style.width * scale), round(style.height * scale)),
                                                         Image.Resampling.LANCZOS))
    return statistics.mean(((yardstick.gram(feats[i]) - yardstick.gram(sty[i])).norm()
                            / yardstick.gram(sty[i]).norm()).item() for i in STYLE_LAYERS)


def quality(args) -> dict:
    import torch
    from PIL import Image

    from batchstyle.engine import StyleSettings, Stylizer

    torch.set_num_threads(args.threads)
    stylizer = Stylizer(args.weights, devices=["cpu"])
    yardstick = PlainVGG(stylizer.weights)
    content = Image.open(DEMO / "content" / CONTENT).convert("RGB")
    styles = [Image.open(DEMO / "styles" / name).convert("RGB") for name in STYLES]
    settings = StyleSettings(end_scale=args.size, content_weight=10.0, initial_iterations=round(1000 * args.budget),
                             iterations=round(500 * args.budget))
    report, images = {}, [content.resize(_size(content, args.size))]
    for label, soft in [("blend", None)] + [(f"soft {s:g}" if s else "hard", s) for s in args.soft]:
        masks = None if soft is None else split(*content.size, soft)
        start = time.perf_counter()
        run = stylizer.run(content, styles, settings, masks=masks)
        list(run)
        output = run.pil()
        images.append(output)
        report[label] = {"seconds": time.perf_counter() - start,
                         "sides": side_distances(yardstick, output, styles, masks or split(*content.size, 0))}
        print(label, json.dumps(report[label]), flush=True)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        side_by_side(images, Path(args.save) / f"masks_{args.size}.png")
        sheet([images[0], *styles, split(*content.size, args.soft[-1])[0].convert("RGB")], images[1:],
              Path(args.save) / f"masks_{args.size}.jpg")
    return report


def sheet(inputs: list, outputs: list, path: Path) -> None:
    """Two rows as one JPEG: the inputs (content, styles, a mask) above the outputs, each row scaled to
    the outputs' height."""
    from PIL import Image

    height = outputs[0].height
    rows = [[image.resize((round(image.width * height / image.height), height), Image.Resampling.LANCZOS)
             for image in row] for row in (inputs, outputs)]
    width = max(sum(image.width for image in row) for row in rows)
    out = Image.new("RGB", (width, 2 * height), "white")
    for r, row in enumerate(rows):
        x = 0
        for image in row:
            out.paste(image, (x, r * height))
            x += image.width
    out.save(path, quality=85)


def _size(image, long_side: int) -> tuple[int, int]:
    scale = long_side / max(image.size)
    return round(image.width * scale), round(image.height * scale)


def cost_child(kind: str, size: int, repeats: int, weights: str | None) -> dict:
    """One configuration's seconds per evaluation and peak RSS, in this (fresh) process."""
    import resource

    import torch
    from PIL import Image

    from batchstyle.engine import StyleSettings, Stylizer

    stylizer = Stylizer(weights, devices=["cpu"])
    content = Image.open(DEMO / "content" / CONTENT).convert("RGB")
    styles = [Image.open(DEMO / "styles" / name).convert("RGB") for name in STYLES]
    chosen = styles[:1] if kind == "one style" else styles
    masks = split(*content.size, 0.25) if kind == "two styles, masks" else None
    run = stylizer.run(content, chosen, StyleSettings(end_scale=size, min_scale=size), masks=masks)
    objective = run.objective(0)
    x = torch.rand(1, 3, run.ladder[0].height, run.ladder[0].width, generator=torch.Generator().manual_seed(0))
    objective(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        objective(x)
        times.append(time.perf_counter() - start)
    return {"kind": kind, "seconds": statistics.median(times),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def cost(args) -> list[dict]:
    rows = []
    for kind in ("one style", "two styles, blend", "two styles, masks"):
        command = [sys.executable, "-m", "benchmarks.masks", "--child", kind, "--cost-size", str(args.cost_size),
                   "--repeats", str(args.repeats)] + (["--weights", args.weights] if args.weights else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for row in rows:
        print(f"{row['kind']:>20}: {row['seconds']:.3f} s/evaluation ({row['seconds'] / base['seconds']:.2f}x), "
              f"peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB ({row['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--budget", type=float, default=0.5, help="share of the default iterations (1000, 500)")
    parser.add_argument("--soft", type=lambda t: [float(v) for v in t.split(",")], default=[0.0, 0.25])
    parser.add_argument("--save")
    parser.add_argument("--json")
    parser.add_argument("--weights", default=os.environ.get("BATCHSTYLE_WEIGHTS"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--cost-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(cost_child(args.child, args.cost_size, args.repeats, args.weights)))
        return
    report = cost(args) if args.cost else quality(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
