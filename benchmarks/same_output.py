"""Does the engine still make the same images, bit for bit, as at another revision?

    python -m benchmarks.same_output [REV] [--weights PATH] [--threads N]

Checks REV (default ``HEAD``, the last commit) out into a temporary git worktree, runs the same small
float32 CPU stylizations in a fresh Python process against that tree and against this working tree,
and compares the output tensors byte for byte, and the resume case's checkpoint (its tensors and
metadata). This tree resumes from the checkpoint file the other tree wrote, so the file format is
checked too. Real
VGG-19 weights come from ``--weights`` or ``$BATCHSTYLE_WEIGHTS``; images from ``jobs/demo/``.
Both trees run with the same thread count, so that oneDNN picks the same kernels. Exit status 1
when any case differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "jobs" / "demo"

BASE = {"end_scale": 64, "min_scale": 32, "initial_iterations": 6, "iterations": 3}  # scales 32, 45, 64
ASTRONAUT, CAT, COFFEE = "content/astronaut_eileen_collins.jpg", "content/chelsea_cat.jpg", "content/coffee.jpg"
STARRY, WAVE = "styles/van_gogh_starry_night.jpg", "styles/hokusai_great_wave.jpg"


def job(content: str = ASTRONAUT, styles: tuple[str, ...] = (STARRY,), **settings) -> dict:
    return {"content": content, "styles": list(styles), "settings": {**BASE, **settings}}


# name -> the jobs of one run (several: optimised together) and the scale after which to resume
CASES = {
    "adam (defaults)": {"jobs": [job()]},
    "lbfgs": {"jobs": [job(optimizer="lbfgs")]},
    "w2 style loss": {"jobs": [job(style_loss="w2")]},
    "two styles, weights 3:1": {"jobs": [job(styles=(STARRY, WAVE), style_weights=[3.0, 1.0])]},
    "original_colors": {"jobs": [job(original_colors=True)]},
    "average pooling": {"jobs": [job(pooling="average")]},
    "init gray, seed 5": {"jobs": [job(init="gray", seed=5)]},
    "group of 3": {"jobs": [job(CAT), job(COFFEE, (WAVE,), init="uniform", seed=3, content_weight=0.05),
                            job(COFFEE, (STARRY, WAVE), tv_weight=4.0, original_colors=True)]},
    "resume after scale 1": {"jobs": [job(COFFEE, (WAVE,))], "resume_after": 0},
}

# Runs inside the tree under test. It speaks the API of before the redesign (``run_batch`` yielding
# ``(index, event)``) and after it (``run_group`` yielding events that carry ``item``).
CHILD = r'''
import json, sys
import torch
from safetensors.torch import save_file
from batchstyle.engine import Checkpoint, Job, Speed, StyleSettings, Stylizer, load_image

spec = json.loads(sys.stdin.read())
torch.set_num_threads(spec["threads"])
stylizer = Stylizer(spec["weights"], ["cpu"], speed=Speed(precision="fp32", memory_format="contiguous"))
demo = spec["demo"]


def start(jobs):
    if hasattr(stylizer, "run_group"):
        run = stylizer.run_group(jobs)
        return run, ((event.item, event) for event in run)
    run = stylizer.run_batch(jobs)
    return run, iter(run)


out = {}
for name, case in spec["cases"].items():
    jobs = [Job(load_image(f"{demo}/{j['content']}"), [load_image(f"{demo}/{s}") for s in j["styles"]],
                StyleSettings.from_dict(j["settings"])) for j in case["jobs"]]
    resume_after = case.get("resume_after")
    run, events = start(jobs)
    for index, event in events:
        if resume_after is not None and getattr(event, "checkpoint", None) is not None \
                and event.scale_index == resume_after:
            saved = event.checkpoint.to_bytes()
            # the file's tensors and metadata (safetensors writes metadata keys in a random order)
            meta = json.loads(saved[8:8 + int.from_bytes(saved[:8], "little")])["__metadata__"]
            out[f"{name}/checkpoint metadata"] = torch.tensor(list(json.dumps(meta, sort_keys=True).encode()),
                                                              dtype=torch.uint8)
            ck = Checkpoint.from_bytes(saved)
            for key, t in [("image", ck.image), ("rng_state", ck.rng_state)] + ([] if ck.adam is None else
                    [("exp_avg", ck.adam.exp_avg), ("exp_avg_sq", ck.adam.exp_avg_sq)]):
                out[f"{name}/checkpoint {key}"] = t.contiguous()
            out[f"{name}/checkpoint file"] = torch.frombuffer(bytearray(saved), dtype=torch.uint8)
            if name in spec["resume_from"]:  # the other tree's file: the format must still load
                saved = open(spec["resume_from"][name], "rb").read()
            jobs = [Job(j.content, j.styles, j.settings, Checkpoint.from_bytes(saved)) for j in jobs]
            run, events = start(jobs)
            for _ in events:
                pass
            break
    for k in range(len(jobs)):
        out[f"{name}/image {k}"] = run.image(k).contiguous()
save_file(out, spec["output"])
import batchstyle
print(f"{batchstyle.__file__.rsplit('/batchstyle/', 1)[0]}: {'run_group' if hasattr(stylizer, 'run_group') else 'run_batch'}")
'''


def run_tree(tree: Path, output: Path, weights: str, threads: int, resume_from: dict | None = None) -> dict:
    from safetensors.torch import load_file

    spec = {"cases": CASES, "weights": weights, "demo": str(DEMO), "threads": threads, "output": str(output),
            "resume_from": resume_from or {}}
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(spec), text=True, cwd=tree, env=env,
                            capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{result.stderr[-4000:]}")
    print(f"ran {result.stdout.strip()}")  # which tree's code ran, and its API
    return load_file(str(output))


def compare(old: dict, new: dict) -> list[tuple[str, bool, float]]:
    rows = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or a.shape != b.shape:
            rows.append((key, False, float("nan")))
            continue
        same = a.dtype == b.dtype and a.numpy().tobytes() == b.numpy().tobytes()
        diff = 0.0 if same else (a.double() - b.double()).abs().max().item()
        rows.append((key, same, diff))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="the revision to compare with")
    parser.add_argument("--weights", default=os.environ.get("BATCHSTYLE_WEIGHTS"),
                        help="VGG-19 weights file (default: $BATCHSTYLE_WEIGHTS)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="torch threads in both runs")
    args = parser.parse_args(argv)
    if not args.weights or not Path(args.weights).is_file():
        parser.error("give a VGG-19 weights file with --weights or BATCHSTYLE_WEIGHTS")
    with tempfile.TemporaryDirectory(prefix="same-output-") as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(old_tree), args.rev],
                       check=True)
        try:
            old = run_tree(old_tree, tmp / "old.safetensors", args.weights, args.threads)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=True)
        resume_from = {}  # this tree resumes from the checkpoint files the other tree wrote
        for key in [k for k in old if k.endswith("/checkpoint file")]:
            path = tmp / f"{len(resume_from)}.checkpoint"
            path.write_bytes(old.pop(key).numpy().tobytes())
            resume_from[key.removesuffix("/checkpoint file")] = str(path)
        new = run_tree(ROOT, tmp / "new.safetensors", args.weights, args.threads, resume_from)
        new = {k: v for k, v in new.items() if not k.endswith("/checkpoint file")}
    rows = compare(old, new)
    width = max(len(key) for key, _, _ in rows)
    print(f"{'case':<{width}}  identical  max abs diff   ({args.rev} vs working tree, fp32 CPU, "
          f"{args.threads} threads)")
    for key, same, diff in rows:
        print(f"{key:<{width}}  {'yes' if same else 'NO ':<9}  {diff:.3g}")
    return 0 if all(same for _, same, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
