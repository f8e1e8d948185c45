"""How fast clips are read and written on this machine: frames per second of ``decode_frames`` (a video
to a frame folder of PNGs) and of ``encode_video`` (a frame folder to a video, with the source's audio
copied), per container, at ``--size`` px wide (3:4 high), and the seconds of ``probe``.

    python -m benchmarks.clip_files [--size 512] [--frames 48] [--repeats 3] [--json]

The clip is a pan across the demo's coffee photo (``tests.support.clips.pan_clip``), written once per
container by the tests' writer with a second of AAC (Opus in webm) audio. Each figure is the median
of ``--repeats`` runs into fresh folders; FFmpeg uses the threads it wants (all cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from PIL import Image

from batchstyle.batch.clip_files import decode_frames, encode_video, probe
from tests.support.clips import pan_clip
from tests.support.video_files import write_video

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "jobs" / "demo" / "content" / "coffee.jpg"
FPS = Fraction(24)


def _median_seconds(repeats: int, run) -> float:
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        run(index)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, frames: int, repeats: int, work: Path) -> dict:
    clip = pan_clip(Image.open(PHOTO), frames=frames, size=(size, size * 3 // 4), step=2)
    rows = {}
    for suffix in (".mp4", ".webm"):
        source = write_video(work / f"source{suffix}", clip.frames, FPS, audio_seconds=frames / FPS)
        probe_s = _median_seconds(repeats, lambda _: probe(source))
        decode_s = _median_seconds(repeats, lambda i: decode_frames(source, work / f"frames{suffix}{i}"))
        rows[f"decode {suffix}"] = {"fps": frames / decode_s, "seconds": decode_s, "probe_seconds": probe_s}
    pngs = decode_frames(work / "source.mp4", work / "frames.mp40")
    for suffix in (".mp4", ".webm", ".gif"):
        audio = work / ("source.webm" if suffix == ".webm" else "source.mp4")
        seconds = _median_seconds(repeats, lambda i: encode_video(pngs, FPS, work / f"out{i}{suffix}", audio))
        rows[f"encode {suffix}"] = {"fps": frames / seconds, "seconds": seconds,
                                    "bytes": (work / f"out0{suffix}").stat().st_size}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="frame width in px (height: 3/4 of it)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.size, args.frames, args.repeats, Path(work))
    if args.json:
        print(json.dumps({"size": args.size, "frames": args.frames, "rows": rows}, indent=2))
        return
    print(f"{args.frames} frames of {args.size}x{args.size * 3 // 4}, medians of {args.repeats}")
    for name, row in rows.items():
        extra = f"  probe {row['probe_seconds']:.3f} s" if "probe_seconds" in row else f"  {row['bytes'] / 1e3:.0f} kB"
        print(f"{name:<14} {row['fps']:7.1f} frames/s  {row['seconds']:6.2f} s{extra}")


if __name__ == "__main__":
    main()
