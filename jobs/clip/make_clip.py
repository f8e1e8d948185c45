"""Write the clip of the clip example (jobs/clip/manifest.csv) from the demo's cat photo.

    python jobs/clip/make_clip.py            # -> jobs/clip/cat_pan.mp4
    python jobs/clip/make_clip.py OUTDIR     # the same file elsewhere

A camera panning right across the photo and slowly closing in: 24 frames of 160x120 at 12 frames a
second (two seconds, no sound), H.264 in an mp4. Every frame is a crop of the photo resized with
Lanczos, so the motion is smooth; the frames are the same on every run.
"""

from __future__ import annotations

import io
import sys
from fractions import Fraction
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTO = HERE.parent / "demo" / "content" / "chelsea_cat.jpg"
FRAMES, SIZE, FPS = 24, (160, 120), Fraction(12)


def frames() -> list[Image.Image]:
    photo = Image.open(PHOTO).convert("RGB")
    out = []
    for t in range(FRAMES):
        s = t / (FRAMES - 1)
        width = photo.width * (0.7 - 0.1 * s)  # closing in: the window narrows
        height = width * SIZE[1] / SIZE[0]
        left = (photo.width - width) * (0.15 + 0.6 * s)
        top = (photo.height - height) * 0.45
        out.append(photo.resize(SIZE, Image.LANCZOS, box=(left, top, left + width, top + height)))
    return out


def main(folder: Path) -> None:
    from batchstyle.batch.clip_files import encode_video

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for image in frames():
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        images.append(buffer.getvalue())
    encode_video(images, FPS, folder / "cat_pan.mp4")
    print(f"wrote {folder / 'cat_pan.mp4'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
