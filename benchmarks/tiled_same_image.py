"""Does a run with tiles make the image of a run without? (README "Big images: tiles")

    python -m benchmarks.tiled_same_image [--size 256] [--tile 128] [--style-loss gram] [--weights PATH]

Runs the same float32 multi-scale stylization on the CPU twice, whole (``tile=off``) and with tiles
of ``--tile`` px at every scale larger than that, with the real VGG-19 weights and a demo photo
and painting, and prints each scale's tiles, the final losses and the difference between the two
images: the largest difference in 8-bit levels and the PSNR (of the float images in [0, 1]).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "jobs" / "demo"


def make(stylizer, content, style, settings, tile):
    run = stylizer.run(content, [style], settings, tile=tile)
    started, losses, tiles = time.perf_counter(), [], {}
    for event in run:
        if hasattr(event, "loss"):
            losses.append(event.loss)
            tiles[run.ladder[event.scale_index].size] = len(run.current_tiles or [])
    return run.image(), losses, tiles, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="end scale (long side, px)")
    parser.add_argument("--tile", type=int, default=128, help="tile core (px)")
    parser.add_argument("--style-loss", default="gram", choices=["gram", "w2"])
    parser.add_argument("--weights", default=os.environ.get("BATCHSTYLE_WEIGHTS"))
    args = parser.parse_args()

    from batchstyle.engine import Speed, StyleSettings, Stylizer, load_image

    stylizer = Stylizer(args.weights, ["cpu"], speed=Speed(precision="fp32", memory_format="contiguous"))
    content = load_image(DEMO / "content" / "chelsea_cat.jpg")
    style = load_image(DEMO / "styles" / "van_gogh_starry_night.jpg")
    settings = StyleSettings(end_scale=args.size, min_scale=args.size // 2, initial_iterations=10, iterations=5,
                             content_weight=5, style_loss=args.style_loss)
    whole, whole_losses, _, whole_s = make(stylizer, content, style, settings, "off")
    tiled, tiled_losses, tiles, tiled_s = make(stylizer, content, style, settings, args.tile)
    mse = (tiled - whole).pow(2).mean().item()
    levels = ((tiled * 255).round() - (whole * 255).round()).abs().max().item()
    print(f"scales (size: tiles, 0 = whole): {tiles}")
    print(f"final loss whole {whole_losses[-1]:.6g}, tiled {tiled_losses[-1]:.6g} "
          f"(relative {abs(tiled_losses[-1] / whole_losses[-1] - 1):.2e})")
    print(f"largest pixel difference {(tiled - whole).abs().max().item():.2e} ({levels:.0f} of 255 levels); "
          f"PSNR {'inf' if mse == 0 else f'{10 * math.log10(1 / mse):.1f}'} dB")
    print(f"seconds: whole {whole_s:.1f}, tiled {tiled_s:.1f}")


if __name__ == "__main__":
    main()
