"""The batch's steps of ``python -m benchmarks.gpu_check``: the out-of-memory retry and a real
``batchstyle run``.

``oom_retry`` runs in a fresh process (``python -m benchmarks.gpu_batch oom-child SPEC``), so that
its tight memory budget and what running out of memory leaves in the allocator touch nothing else:
the worker's engine backend (``batch/engine_backend.py``) makes one image whole under a budget
just above what tiles of half its side need (measured first, without the budget); it runs out of
memory, and the image is made again with the tiles the scheduler's policy orders
(``batch.policies.after_out_of_memory``: half the tile that ran out, then half again), as the
scheduler does, until it is made. The budget is ``torch.cuda.set_per_process_memory_fraction`` on
a GPU and the process's address space (``RLIMIT_AS``, as ``batchstyle bench --memory-limit``) on a
CPU, where the image uses the two shallowest style layers so that tiles of a small image save memory.

``batch_run`` is ``python -m batchstyle run`` of 4 images of the demo batch (2 tiny ones in small
mode) from a manifest written into a temporary folder, on a GPU Ray worker: exit code, one record per
image made on the GPU, images per hour.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .gpu_steps import DEMO, ROOT, Check, CheckFailed

CAT, STARRY, WAVE = "content/chelsea_cat.jpg", "styles/van_gogh_starry_night.jpg", "styles/hokusai_great_wave.jpg"
SHALLOW = {"content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]}


def child_env() -> dict:
    """This tree first on the import path of a child process, whatever is installed."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), "PYTHONWARNINGS": "ignore",
            "RAY_USAGE_STATS_ENABLED": "0"}


# --- out of memory, and the retry ------------------------------------------------------------------

def oom_retry(check: Check, figures: dict) -> None:
    """The worker backend out of memory under a tight budget, then made with the policy's smaller tiles."""
    size = 384 if check.plan.small else 2048
    settings = {"end_scale": size, "min_scale": size, "initial_iterations": 1, "iterations": 1, "content_weight": 10,
                **(SHALLOW if check.plan.small else {})}
    spec = {"weights": check.weights_path, "device": check.plan.device, "settings": settings,
            "speed": check.speed, "threads": 1 if check.plan.small else None}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_batch", "oom-child", json.dumps(spec)], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=min(300.0, check.remaining()))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-8:])
        raise CheckFailed(f"the child process ended with {proc.returncode}:\n{tail}")
    figures.update(json.loads(lines[-1]))
    attempts = figures["attempts"]
    if attempts[0]["outcome"] != "oom":
        raise CheckFailed(f"the whole {size} px image did not run out of memory under the budget: {attempts[0]}")
    if attempts[-1]["outcome"] != "made":
        raise CheckFailed(f"not made after {len(attempts)} attempts: {attempts[-1]}")


def oom_child(spec: dict) -> dict:
    """In the child: the budget, then attempts as the scheduler makes them; what happened, as JSON."""
    import torch

    from batchstyle.batch.engine_backend import EngineBackend
    from batchstyle.batch.policies import after_out_of_memory
    from batchstyle.engine.weights import load_weights_file

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    weights = load_weights_file(spec["weights"])
    cuda = spec["device"].startswith("cuda")
    backend = EngineBackend(weights.to_numpy(), weights.identity, 1 if cuda else 0, spec.get("threads"),
                            {**spec["speed"], "tile": "auto"})
    attempt = _attempts(backend, spec["settings"])
    first = after_out_of_memory(1, False, spec["settings"]["end_scale"])  # what the first retry will use
    calibration = attempt(first.tile)
    if calibration["outcome"] != "made":
        return {"calibration": calibration, "attempts": [calibration]}
    budget = _set_budget(cuda, calibration["need_bytes"])
    tile, attempts = "off", []
    for _ in range(4):
        attempts.append(attempt(tile))
        if attempts[-1]["outcome"] != "oom":
            break
        decision = after_out_of_memory(1, False, attempts[-1]["tile_used"])
        if isinstance(decision, str):
            attempts.append({"outcome": "given up", "reason": decision})
            break
        tile = decision.tile
    return {"size": spec["settings"]["end_scale"], "device": backend.devices, "budget_bytes": budget,
            "calibration": calibration, "attempts": attempts}


def _attempts(backend, settings: dict):
    """A function that makes the one image with a tile option, and says how it went."""
    from batchstyle.batch.items import Item
    from batchstyle.batch.messages import ItemFailure, ItemInputs, ItemResult
    from batchstyle.engine.settings import StyleSettings

    item = Item(line=1, content=DEMO / CAT, styles=(DEMO / STARRY,), settings=StyleSettings.from_dict(settings),
                output="oom.png", id="oom-retry")
    content, style = (DEMO / CAT).read_bytes(), (DEMO / STARRY).read_bytes()

    def attempt(tile) -> dict:
        started = time.perf_counter()
        final = None
        for _, event in backend.run([ItemInputs(item, content, [style], tile=tile)]):
            final = event
        out = {"tile": tile, "seconds": round(time.perf_counter() - started, 3), "need_bytes": _peak(backend)}
        if isinstance(final, ItemResult):
            return {**out, "outcome": "made", "final_loss": final.final_loss}
        if isinstance(final, ItemFailure):
            return {**out, "outcome": final.kind, "tile_used": final.tile_used, "message": final.message}
        return {**out, "outcome": f"no result ({type(final).__name__})"}

    return attempt


def _peak(backend) -> int:
    """Peak bytes of the last attempt: reserved by the CUDA allocator, or this process's address space."""
    import torch

    if backend.device_kind == "cuda":
        device = torch.device(backend.devices[0])
        peak = torch.cuda.max_memory_reserved(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak
    return _status("VmPeak")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _set_budget(cuda: bool, need: int) -> int:
    """A budget a little above ``need``: the CUDA allocator's limit, or the address space's."""
    import resource

    import torch

    if cuda:
        budget = int(need * 1.25)
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), 0)
        return budget
    budget = need + 80 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (budget, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return budget


# --- a real batch ------------------------------------------------------------------------------------

def manifest_text(small: bool) -> str:
    """4 images of the demo batch with its own settings (2 tiny ones in small mode), by absolute paths."""
    rows = [(CAT, STARRY, ""), ("content/astronaut_eileen_collins.jpg", STARRY, ""),
            ("content/coffee.jpg", STARRY, ""), (CAT, f"{DEMO / STARRY};{DEMO / WAVE}", "0.5;0.5")]
    settings = "90,64,3,2,10" if small else "256,128,120,60,10"
    lines = ["content,style,style_weights,output,end_scale,min_scale,initial_iterations,iterations,content_weight"]
    for k, (content, style, weights) in enumerate(rows[:2] if small else rows):
        style_cell = style if ";" in style else str(DEMO / style)
        lines.append(f"{DEMO / content},{style_cell},{weights},image{k + 1}.png,{settings}")
    return "\n".join(lines) + "\n"


def batch_run(check: Check, figures: dict) -> None:
    """``batchstyle run`` of the demo images on a GPU Ray worker (a CPU one in small mode)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-batch-") as folder:
        manifest, out = Path(folder) / "manifest.csv", Path(folder) / "output"
        manifest.write_text(manifest_text(check.plan.small))
        command = [sys.executable, "-m", "batchstyle", "run", str(manifest), "-o", str(out), "--plain", "--force",
                   "--weights", check.weights_path, "--device", "gpu" if check.cuda else "cpu",
                   *(["--cpu-threads", "1"] if check.plan.small else [])]
        figures["command"] = "python -m batchstyle run MANIFEST -o OUTDIR " + " ".join(command[7:])
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=min(120.0 if check.plan.small else 300.0, check.remaining()))
        figures.update(exit_code=proc.returncode, wall_seconds=time.perf_counter() - started)
        records = [json.loads(p.read_text()) for p in sorted((out / ".batchstyle" / "done").glob("*.json"))]
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise CheckFailed(f"batchstyle run exited with {proc.returncode}:\n" + "\n".join(text.splitlines()[-10:]))
    _batch_figures(check, figures, records, text)


def _batch_figures(check: Check, figures: dict, records: list[dict], text: str) -> None:
    want = check.plan.batch_images
    figures["images"] = [{"output": r["output"], "seconds": r["seconds"], "iterations": r["iterations"],
                          "worker": r["worker"], "devices": ",".join(r["devices"]), "group_size": r["group_size"],
                          "gpu_peak_gib": r["gpu_peak_bytes"] / 2**30, "final_loss": r["final_loss"]}
                         for r in records]
    if len(records) != want:
        raise CheckFailed(f"{len(records)} images recorded as made, not {want}")
    span = max(r["finished"] for r in records) - min(r["started"] for r in records)
    figures["images_per_hour_from_records"] = want * 3600 / span if span > 0 else None
    match = re.search(r"images per hour\s*│\s*([\d.,]+)", text)
    figures["images_per_hour"] = float(match.group(1).replace(",", "")) if match else None
    kind = "cuda" if check.cuda else "cpu"
    wrong = [r["output"] for r in records if not all(d.startswith(kind) for d in r["devices"])]
    if wrong:
        raise CheckFailed(f"{wrong} were not made on a {kind} device")


if __name__ == "__main__":
    if sys.argv[1:2] != ["oom-child"]:
        sys.exit("usage: python -m benchmarks.gpu_batch oom-child SPEC-JSON")
    print(json.dumps(oom_child(json.loads(sys.argv[2]))))
