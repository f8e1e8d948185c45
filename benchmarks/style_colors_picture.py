"""The pictures of the ``style_colors`` setting in the README and docs/engine.md, made again.

    python -m benchmarks.style_colors_picture [--content jobs/demo/content/chelsea_cat.jpg]
        [--style jobs/demo/styles/van_gogh_starry_night.jpg] [--size 384] [--iterations 150,75]
        [--content-weight 2] [--threads 1] [--weights PATH] [--out docs/images]

``style_colors_<content>_<style>.jpg``: the photo, the painting, and the stylized photo with
``style_colors=keep`` and ``=match``, side by side (two real runs on the CPU at ``--size``, the
default ladder from 128 px, ``--iterations`` at the first scale and each later one; a few minutes
with one thread). ``style_colors_decompositions.jpg``: the colour map alone (no run) for the
astronaut and *The Starry Night*: the photo, the painting, the painting matched with ``eig`` (the
default), with ``cholesky`` in R, G, B order, and with ``cholesky`` in B, G, R order. Printed, for
each of the six demo pairs: how far the Cholesky image is from the ``eig`` one, how far it is from
itself computed in B, G, R order, and the share of the painting's pixels the map clips. Only images
whose licence allows it (jobs/demo/CREDITS.md) go into docs/images. Real VGG-19 weights come from
``--weights`` or ``$BATCHSTYLE_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "jobs" / "demo"
WIDTH, QUALITY = 1200, 85


def sheet(images: list[Image.Image], width: int = WIDTH) -> Image.Image:
    """The images in a row at one height, the row ``width`` pixels wide (images are only shrunk
    where they are larger than their place)."""
    height = round(width / sum(i.width / i.height for i in images))
    panels = [i.convert("RGB").resize((round(i.width * height / i.height), height), Image.LANCZOS) for i in images]
    row = Image.new("RGB", (sum(p.width for p in panels), height), "white")
    x = 0
    for panel in panels:
        row.paste(panel, (x, 0))
        x += panel.width
    return row


def save(image: Image.Image, path: Path) -> None:
    image.save(path, "JPEG", quality=QUALITY, optimize=True)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
          f"({image.width}x{image.height}, {path.stat().st_size // 1024} KiB)")


def runs(args, content: Image.Image, style: Image.Image) -> list[Image.Image]:
    """The stylized photo with style_colors keep and match, timed."""
    from batchstyle.engine import StyleSettings, Stylizer, stylize
    from batchstyle.engine.weights import resolve_weights

    stylizer = Stylizer(resolve_weights(args.weights, download=False), devices=["cpu"])
    first, later = args.iterations
    base = StyleSettings(end_scale=args.size, content_weight=args.content_weight, initial_iterations=first,
                         iterations=later)
    outputs = []
    for colors in ("keep", "match"):
        start = time.perf_counter()
        outputs.append(stylize(content, style, base.replace(style_colors=colors), stylizer=stylizer))
        print(f"style_colors={colors}: {time.perf_counter() - start:.0f} s")
    return outputs


def channels(image: Image.Image, order: list[int]) -> Image.Image:
    return Image.fromarray(np.asarray(image.convert("RGB"))[..., order].copy(), "RGB")


def levels(a: Image.Image, b: Image.Image) -> str:
    """The mean and 99th percentile of two images' differences, in 8-bit levels."""
    difference = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return f"{difference.mean():4.1f} / {np.percentile(difference, 99):3.0f}"


def clipped(style: Image.Image, content: Image.Image) -> float:
    """The share of the style's pixels that the map (eig) takes out of the RGB cube."""
    from batchstyle.engine.colors import color_statistics, color_transform

    a, b = color_transform(color_statistics(style), color_statistics(content))
    mapped = np.asarray(style, np.float64).reshape(-1, 3) / 255 @ a.T + b
    return float(((mapped < 0) | (mapped > 1)).any(axis=1).mean())


def decompositions() -> list[Image.Image]:
    """Prints, per demo pair, how far Cholesky is from eig and from itself in B, G, R order, and the
    pixels clipped; gives the astronaut and The Starry Night (where the two differ most): photo,
    painting, eig, Cholesky in R, G, B order, Cholesky in B, G, R order."""
    from batchstyle.engine.colors import match_colors

    bgr, shown = [2, 1, 0], {}
    print("pair                         eig vs cholesky   cholesky RGB vs BGR   clipped  (mean / 99th pct, levels)")
    for content_path in sorted((DEMO / "content").glob("*.jpg")):
        for style_path in sorted((DEMO / "styles").glob("*.jpg")):
            content, style = Image.open(content_path).convert("RGB"), Image.open(style_path).convert("RGB")
            eig, cholesky = match_colors(style, content), match_colors(style, content, "cholesky")
            cholesky_bgr = channels(match_colors(channels(style, bgr), channels(content, bgr), "cholesky"), bgr)
            print(f"{content_path.stem[:12]:>12} / {style_path.stem[:13]:<13}  {levels(eig, cholesky):>15}   "
                  f"{levels(cholesky, cholesky_bgr):>19}   {clipped(style, content):6.1%}")
            shown[content_path.stem, style_path.stem] = [content, style, eig, cholesky, cholesky_bgr]
    return shown["astronaut_eileen_collins", "van_gogh_starry_night"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", type=Path, default=DEMO / "content" / "chelsea_cat.jpg")
    parser.add_argument("--style", type=Path, default=DEMO / "styles" / "van_gogh_starry_night.jpg")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--iterations", type=lambda t: tuple(int(s) for s in t.split(",")), default=(150, 75),
                        metavar="FIRST,LATER")
    parser.add_argument("--content-weight", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    save(sheet(decompositions()), args.out / "style_colors_decompositions.jpg")
    content, style = Image.open(args.content).convert("RGB"), Image.open(args.style).convert("RGB")
    name = f"style_colors_{args.content.stem}_{args.style.stem}.jpg"
    save(sheet([content, style, *runs(args, content, style)]), args.out / name)


if __name__ == "__main__":
    main()
