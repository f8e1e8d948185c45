"""A clip's wall time on one worker and on two, and what the parallel segments cost at their seams.

    python -m benchmarks.clip_parallel [--frames 12] [--size 128] [--first 200] [--later 100] [--json FILE]

A handheld clip over a real photo (``tests.support.clips.handheld_clip``: a drifting, zooming, rolling
camera and an object crossing the frame, with its true motion) is written as an mp4 and made by a real
``make_batch`` with the real engine twice, on a Ray cluster of this machine's nodes of one CPU each
(one worker a node, one thread a worker): as one chain on one node, and as two segments of
``frames / 2`` (``segment_frames``) on two nodes. Reported: each run's wall time, and the temporal
consistency of the output, the mean absolute difference (levels 0-255) between frame t and frame t-1
warped by the true flow over the pixels visible in both, inside the chains and at the seam.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.support.clips import handheld_clip  # noqa: E402
from tests.support.video_files import write_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"


def consistency(frames: list[np.ndarray], clip) -> list[float]:
    """Per pair (t-1, t): mean |out_t - warp(out_{t-1}, true flow)| over the valid pixels, in levels."""
    from batchstyle.engine.flow import warp

    out = []
    for t in range(1, len(frames)):
        warped = warp(frames[t - 1], clip.flows[t])
        out.append(float(np.abs(frames[t] - warped).mean(-1)[clip.valid[t]].mean()))
    return out


def run(root: Path, clip, segment: int, nodes: int, args) -> tuple[float, list[float]]:
    import ray
    from ray.cluster_utils import Cluster

    from batchstyle.batch.make import BatchRequest, make_batch
    from batchstyle.batch.state import BatchOptions

    work = root / f"seg{segment}_nodes{nodes}"
    work.mkdir()
    manifest = work / "manifest.csv"
    manifest.write_text("content,style,segment_frames,end_scale,min_scale,initial_iterations,frame_iterations\n"
                        f"{root / 'clip.mp4'},{root / 'style.jpg'},{segment},{args.size},{args.size},{args.first},"
                        f"{args.later}\n")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        started = time.time()
        make_batch(BatchRequest(str(manifest), outdir=str(work / "out"), address=cluster.address,
                                options=BatchOptions(device="cpu", cpu_threads=1)))
        seconds = time.time() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    folder = work / "out" / "clip__style_frames"
    frames = [np.asarray(Image.open(p).convert("RGB"), np.float32) for p in sorted(folder.glob("*.png"))]
    return seconds, consistency(frames, clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=128, help="the frames' long side (4:3)")
    parser.add_argument("--first", type=int, default=200, help="iterations of a chain's first frame (one scale)")
    parser.add_argument("--later", type=int, default=100, help="frame_iterations of the later frames")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    photo = Image.open(SHARED / "content" / "tubingen_neckarfront.jpg")
    other = Image.open(SHARED / "content" / "chelsea_cat.jpg")
    clip = handheld_clip(photo, other, frames=args.frames, size=(args.size, args.size * 3 // 4))
    half = args.frames // 2
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_video(root / "clip.mp4", clip.frames, 12)
        Image.open(SHARED / "style" / "van_gogh_starry_night.jpg").convert("RGB").resize((256, 203)).save(
            root / "style.jpg")
        for name, segment, nodes in (("one chain, 1 worker", 0, 1), (f"2 segments of {half}, 2 workers", half, 2)):
            seconds, diffs = run(root, clip, segment, nodes, args)
            seam = diffs[half - 1]  # the pair (half, half + 1): the second segment's first frame
            inside = [d for k, d in enumerate(diffs) if k != half - 1]
            report[name] = {"seconds": round(seconds, 1), "inside": round(statistics.mean(inside), 2),
                            "seam": round(seam, 2)}
            print(f"{name:32s} {seconds:7.1f} s   consistency inside {statistics.mean(inside):5.2f}   "
                  f"at frame {half}->{half + 1} {seam:5.2f} levels", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
