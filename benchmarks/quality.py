"""Quality against time: what each share of the iteration budget buys, measured on real pairs.

    python -m benchmarks.quality [--sizes 256,512] [--pairs 6] [--budgets 1,0.4,0.2] [--schedules fixed]
                                 [--only 0,1,2] [--json FILE]
                                 [--save DIR] [--weights PATH] [--threads N] [--content-weight 10]
                                 [--full-iterations 1000,500] [--precision auto] [--cpu] [--trace N]

Every content/style pair (the first ``--pairs`` of the shared images and ``jobs/demo``) is stylized
at each size with the default ladder and each budget: the share of the default iterations (1000 at
the first scale, 500 at each later one) that a run gets. Each run reports its wall time, its
pixel-iterations, the final objective of its output (the engine's loss at the last scale, evaluated
in float32 on the averaged image, so the same way for every budget), and two distances measured
with plain VGG-19 code that shares nothing with the engine but the weights: the content distance
(relative L2 of relu4_2 features against the content image) and the style distance (mean over
relu1_1..relu5_1 of the relative Frobenius distance of normalised Gram matrices against the style
image at the same size). The table gives each schedule and budget against fixed at the full budget: time ratio, objective
(relative) and the distances' differences, with the medians over the pairs. ``--save`` writes, per
pair and size, the outputs side by side as one PNG. Real VGG-19 weights come from ``--weights`` or
``$BATCHSTYLE_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "jobs" / "demo"
SHARED = ROOT.parent / "shared" / "images"
STYLE_LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features
CONTENT_LAYER = 22  # relu4_2
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Result:
    pair: str
    size: int
    budget: float
    schedule: str
    seconds: float
    pixel_iterations: int
    objective: float
    content_distance: float
    style_distance: float
    iterations: list  # the iterations each scale ran
    trace: list  # with --trace N: (scale, iteration, RMS change of the averaged image over the last N iterations)


def pairs(count: int) -> list[tuple[Path, Path]]:
    """Content/style pairs: the shared images where they are, else the demo's, each content once."""
    contents = sorted((SHARED / "content").glob("*.jpg")) or sorted((DEMO / "content").glob("*.jpg"))
    styles = sorted((SHARED / "style").glob("*.jpg")) or sorted((DEMO / "styles").glob("*.jpg"))
    contents = [c for c in contents if "grayscale" not in c.name]  # a grey photo says little about colour
    return [(contents[k % len(contents)], styles[(3 * k) % len(styles)]) for k in range(count)]


class PlainVGG:
    """VGG-19's features as torchvision builds them, with the engine's weights: the yardstick."""

    def __init__(self, weights):
        import torch
        import torchvision

        self.torch = torch
        self.net = torchvision.models.vgg19(weights=None).features[:30].eval()
        state = {k[len("features."):]: v for k, v in weights.tensors.items() if int(k.split(".")[1]) < 30}
        self.net.load_state_dict(state)
        for p in self.net.parameters():
            p.requires_grad_(False)

    def features(self, image) -> dict[int, object]:
        import numpy as np

        torch = self.torch
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype="float32") / 255)
        x = x.permute(2, 0, 1)[None]
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        found = {}
        with torch.no_grad():
            for i, layer in enumerate(self.net):
                x = layer(x)
                if i in STYLE_LAYERS or i == CONTENT_LAYER:
                    found[i] = x
        return found

    def gram(self, f):
        _, c, h, w = f.shape
        flat = f.reshape(c, h * w)
        return flat @ flat.T / (c * h * w)

    def distances(self, output, content, style) -> tuple[float, float]:
        """(content distance, style distance) of ``output``; content and style resized to its size."""
        from PIL import Image

        size, lanczos = output.size, Image.Resampling.LANCZOS
        out, ref = self.features(output), self.features(content.convert("RGB").resize(size, lanczos))
        scale = min(1.0, max(size) / max(style.size))  # the style at the output's long side, never upscaled
        sty = self.features(style.convert("RGB").resize((round(style.width * scale), round(style.height * scale)),
                                                        lanczos))
        content_d = ((out[CONTENT_LAYER] - ref[CONTENT_LAYER]).norm() / ref[CONTENT_LAYER].norm()).item()
        style_d = statistics.mean(((self.gram(out[i]) - self.gram(sty[i])).norm() / self.gram(sty[i]).norm()).item()
                                  for i in STYLE_LAYERS)
        return content_d, style_d


def run_one(stylizer, yardstick: PlainVGG, content, style, size: int, budget: float, schedule: str, args):
    from batchstyle.engine import StyleSettings

    first, later = args.full_iterations
    settings = StyleSettings(end_scale=size, content_weight=args.content_weight, schedule=schedule,
                             initial_iterations=max(1, round(first * budget)), iterations=max(1, round(later * budget)))
    run = stylizer.run(content, [style], settings)
    trace: list[tuple[int, int, float]] = []  # (scale, iteration, change of the averaged image)
    start = time.perf_counter()
    last, pixel_iterations, iterations = None, 0, []
    for event in run:
        if hasattr(event, "iteration"):
            pixel_iterations += event.width * event.height
            if event.last_of_scale:
                iterations.append(event.iteration)
        if args.trace and hasattr(event, "iteration") and event.iteration % args.trace == 0:
            image = run.image()
            if last is not None and last.shape == image.shape:
                trace.append((event.scale_index, event.iteration, (image - last).pow(2).mean().sqrt().item()))
            last = image
    seconds = time.perf_counter() - start  # with --trace, the snapshots are counted too
    objective = run.evaluate()[0]
    output = run.pil()
    return output, seconds, (pixel_iterations, iterations), objective, yardstick.distances(output, content, style), trace


def side_by_side(images, path: Path) -> None:
    from PIL import Image

    width, height = sum(i.width for i in images), max(i.height for i in images)
    sheet = Image.new("RGB", (width, height), "white")
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width
    sheet.save(path)


def measure(args) -> list[Result]:
    from PIL import Image

    from batchstyle.engine import Stylizer
    from batchstyle.engine.speed import Speed
    from batchstyle.engine.weights import resolve_weights

    weights = resolve_weights(args.weights)
    stylizer = Stylizer(weights, ["cpu"] if args.cpu else None, speed=Speed(precision=args.precision))
    yardstick = PlainVGG(weights)
    results = []
    chosen = pairs(args.pairs)
    for content_path, style_path in [chosen[k] for k in args.only or range(len(chosen))]:
        content, style = Image.open(content_path), Image.open(style_path)
        name = f"{content_path.stem} / {style_path.stem}"
        for size in args.sizes:
            outputs = []
            for schedule, budget in runs(args):
                output, seconds, (units, its), objective, (cd, sd), trace = run_one(stylizer, yardstick, content, style,
                                                                                    size, budget, schedule, args)
                results.append(Result(name, size, budget, schedule, seconds, units, objective, cd, sd, its, trace))
                outputs.append(output)
                print(f"{name} {size}px {schedule} budget {budget:g}: {seconds:.1f} s, {units / 1e6:.1f} MP·it, "
                      f"iterations {'/'.join(map(str, its))}, objective {objective:.4g}, content {cd:.4f}, style {sd:.4f}",
                      flush=True)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                side_by_side(outputs, args.save / f"{content_path.stem}__{style_path.stem}_{size}.png")
    return results


def runs(args) -> list[tuple[str, float]]:
    """(schedule, budget) of each run of a pair and size: fixed at the full budget first, the baseline."""
    wanted = [(schedule, budget) for schedule in args.schedules for budget in args.budgets]
    return [("fixed", 1.0)] + [run for run in wanted if run != ("fixed", 1.0)]


def against_full(results: list[Result]) -> list[dict]:
    """Each run against the fixed schedule's full-budget run of the same pair and size."""
    full = {(r.pair, r.size): r for r in results if r.budget == 1.0 and r.schedule == "fixed"}
    rows = []
    for r in results:
        base = full.get((r.pair, r.size))
        if base is None or r is base:
            continue
        rows.append({"pair": r.pair, "size": r.size, "schedule": r.schedule, "budget": r.budget,
                     "time_ratio": r.seconds / base.seconds, "units_ratio": r.pixel_iterations / base.pixel_iterations,
                     "objective_change": r.objective / base.objective - 1,
                     "content_distance_change": r.content_distance - base.content_distance,
                     "style_distance_change": r.style_distance - base.style_distance})
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Medians over the pairs, per size, schedule and budget."""
    keys = sorted({(r["size"], r["schedule"], r["budget"]) for r in rows}, key=lambda k: (k[0], k[1], -k[2]))
    out = []
    for size, schedule, budget in keys:
        mine = [r for r in rows if (r["size"], r["schedule"], r["budget"]) == (size, schedule, budget)]
        out.append({"size": size, "schedule": schedule, "budget": budget, "pairs": len(mine),
                    **{f"median_{k}": statistics.median(r[k] for r in mine)
                       for k in ("time_ratio", "units_ratio", "objective_change", "content_distance_change",
                                 "style_distance_change")}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda t: [int(s) for s in t.split(",")], default=[256, 512])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--only", type=lambda t: [int(s) for s in t.split(",")],
                        help="run only these of the pairs (0-based, like 0,2): to split the pairs over processes")
    parser.add_argument("--budgets", type=lambda t: [float(s) for s in t.split(",")], default=[1.0, 0.4, 0.2])
    parser.add_argument("--schedules", type=lambda t: [s.strip() for s in t.split(",")], default=["fixed"],
                        help="the schedule settings to run each budget with (fixed, adaptive)")
    parser.add_argument("--content-weight", type=float, default=10.0)
    parser.add_argument("--full-iterations", type=lambda t: tuple(int(s) for s in t.split(",")), default=(1000, 500),
                        metavar="FIRST,LATER", help="what budget 1 is: iterations at the first scale, at each later one")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where there is a GPU")
    parser.add_argument("--weights")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="record the RMS change of the averaged image every N iterations (in the JSON)")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    parser.add_argument("--save", type=Path, help="write each pair's outputs side by side into this folder")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = measure(args)
    rows = against_full(results)
    medians = summary(rows)
    print("\nsize  schedule  budget  pairs  time ratio  MP·it ratio  objective  content dist.  style dist.   "
          "(medians against fixed at budget 1)")
    for m in medians:
        print(f"{m['size']:>4}  {m['schedule']:>8}  {m['budget']:>6g}  {m['pairs']:>5}  {m['median_time_ratio']:>10.2f}  "
              f"{m['median_units_ratio']:>11.2f}  "
              f"{m['median_objective_change']:>+9.1%}  {m['median_content_distance_change']:>+13.4f}  "
              f"{m['median_style_distance_change']:>+11.4f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in results], "against_full": rows,
                                         "summary": medians, "threads": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
