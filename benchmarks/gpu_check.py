"""Every CUDA path of the product on one GPU, in one command, with one JSON and one Markdown report.

    python -m benchmarks.gpu_check [--out DIR] [--small] [--weights PATH] [--budget SECONDS]

On a machine with an NVIDIA GPU it runs, as separate steps (each ok, failed or skipped, with its
reason and its seconds, so that one broken path does not hide the others):

* ``device``: the engine's device resolution picks the GPU, and ``auto`` speed resolves for it;
* ``throughput``: iterations/s, megapixel-iterations/s, TFLOP/s and the fraction of the device's peak
  at 512, 1024 and 2048 px at the GPU defaults, peak memory per pixel against the engine's memory
  model and the model fitted to the three sizes (``batchstyle bench``'s own measurement, in this
  process);
* ``bf16_autocast``, ``channels_last``, ``groups``: each option against the configuration without
  it, with the final loss against float32;
* ``tile_auto``: ``--tile auto`` with the device's real memory budget: the whole image where it fits
  and tiles just past the largest whole image the model allows;
* ``oom_retry``: the worker backend out of memory under a tight budget, and the retries with smaller
  tiles that the scheduler's policy orders, until the image is made;
* ``batch_run``: a real ``batchstyle run`` of 4 images of the demo batch on a GPU Ray worker: images
  per hour at the GPU defaults;
* ``two_gpu``: one image split over two GPUs (skipped on a machine with one);
* ``schedule``: the ``fixed`` and ``adaptive`` schedules, where the engine has the setting;
* ``compile``: ``torch.compile`` against the same configuration without it (last: the slowest).

``--small``, and any machine without CUDA, runs the same steps on the CPU at 64-128 px with a few
iterations and a 2-image batch (``compile`` is skipped there, saying why), in well under a minute.
The VGG-19 weights come from ``--weights`` or ``$BATCHSTYLE_WEIGHTS``; nothing is downloaded. The
reports are ``gpu_check.json`` and ``gpu_check.md`` in ``--out`` (default ``gpu_check/``). The exit
status is 1 if any step failed, 2 if the check could not start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .gpu_steps import Check, CheckFailed, Plan, Skip, StepResult, free_memory


def run_step(check: Check, name: str, function: Callable[[Check, dict], None]) -> StepResult:
    """One step: ok with its figures, skipped with its reason, or failed with what went wrong (with
    the figures it had gathered by then). A step fills in ``figures`` as it goes."""
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    if check.elapsed() + check.plan.estimate(name) > check.plan.budget:
        result = StepResult(name, "skipped", f"it would end past the time budget of {check.plan.budget:.0f} s "
                                             f"({check.elapsed():.0f} s so far, about {check.plan.estimate(name):.0f} "
                                             f"s for this step)")
    else:
        try:
            function(check, figures)
            result = StepResult(name, "ok")
        except Skip as exc:
            result = StepResult(name, "skipped", str(exc))
        except CheckFailed as exc:
            result = StepResult(name, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken path must not hide the others
            tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
            result = StepResult(name, "failed", f"{type(exc).__name__}: {exc}\n{tail.strip()}")
            free_memory()
    result.figures = figures
    result.seconds = round(time.perf_counter() - started, 2)
    check.results.append(result)
    first = result.reason.splitlines()[0] if result.reason else ""
    print(f"{name:>14}: {result.status:7} {result.seconds:7.1f} s  {first}", flush=True)
    return result


def steps() -> list[tuple[str, Callable[[Check, dict], None]]]:
    from . import gpu_batch, gpu_steps

    return [("device", gpu_steps.device), ("throughput", gpu_steps.throughput),
            ("bf16_autocast", gpu_steps.bf16_autocast), ("channels_last", gpu_steps.channels_last),
            ("groups", gpu_steps.groups), ("tile_auto", gpu_steps.tile_auto), ("oom_retry", gpu_batch.oom_retry),
            ("batch_run", gpu_batch.batch_run), ("two_gpu", gpu_steps.two_gpu), ("schedule", gpu_steps.schedule),
            ("masks", gpu_steps.masks), ("compile", gpu_steps.compile_step)]


# --- the reports -----------------------------------------------------------------------------------

def clean(value: Any) -> Any:
    """JSON-able figures: NaN and infinities as None, tuples as lists, floats rounded."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def report(check: Check, environment: dict) -> dict:
    counts = {status: sum(r.status == status for r in check.results) for status in ("ok", "failed", "skipped")}
    return clean({"command": "python -m benchmarks.gpu_check" + (" --small" if check.plan.small else ""),
                  "mode": "small" if check.plan.small else "gpu", "device": check.plan.device,
                  "environment": environment, "plan": dataclasses.asdict(check.plan),
                  "total_seconds": round(check.elapsed(), 2), "counts": counts,
                  "steps": [{"name": r.name, "status": r.status, "reason": r.reason, "seconds": r.seconds,
                             "figures": r.figures} for r in check.results]})


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:120]
    return str(value).replace("|", "/").replace("\n", " ")


def markdown(data: dict) -> str:
    lines = [f"# GPU check: {data['device']} ({data['mode']} mode)", "",
             f"`{data['command']}`: {data['counts']['ok']} ok, {data['counts']['failed']} failed, "
             f"{data['counts']['skipped']} skipped in {data['total_seconds']:.0f} s.", "",
             "| step | status | seconds | reason |", "| --- | --- | --- | --- |"]
    for s in data["steps"]:
        first = s["reason"].splitlines()[0] if s["reason"] else ""
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {_cell(first)} |")
    lines += ["", "## Environment", ""] + [f"* {k}: {_cell(v)}" for k, v in data["environment"].items()]
    for s in data["steps"]:
        lines += ["", f"## {s['name']}: {s['status']}", ""]
        if s["reason"]:
            lines += ["```", s["reason"], "```", ""]
        for key, value in s["figures"].items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                columns = list(dict.fromkeys(k for row in value for k in row))
                lines += ["", f"{key}:", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
                lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in value]
                lines.append("")
            else:
                lines.append(f"* {key}: {_cell(value)}")
    return "\n".join(lines) + "\n"


def write_reports(check: Check, environment: dict) -> tuple[Path, Path]:
    data = report(check, environment)
    check.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = check.out / "gpu_check.json", check.out / "gpu_check.md"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    md_path.write_text(markdown(data))
    return json_path, md_path


# --- the command -----------------------------------------------------------------------------------

def environment() -> dict:
    import platform

    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "gpus": torch.cuda.device_count(),
           "cpu_threads": torch.get_num_threads(), "host": platform.node()}
    if torch.cuda.is_available():
        env["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import ray

        env["ray"] = ray.__version__
    except ImportError:
        env["ray"] = None
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="where the reports go [gpu_check/]")
    parser.add_argument("--small", action="store_true", help="tiny sizes on the CPU (automatic without CUDA)")
    parser.add_argument("--weights", default=os.environ.get("BATCHSTYLE_WEIGHTS"),
                        help="VGG-19 weights file [$BATCHSTYLE_WEIGHTS]")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds within which the steps must end; those that would not are skipped "
                             "[470 on a GPU, 300 small]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process [1 in small mode, else torch's default]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not args.weights or not Path(args.weights).is_file():
        print(f"gpu_check: the VGG-19 weights are needed (--weights or $BATCHSTYLE_WEIGHTS; got "
              f"{args.weights!r}); nothing is downloaded", file=sys.stderr)
        return 2
    import torch

    from batchstyle.engine.weights import load_weights_file

    small = args.small or not torch.cuda.is_available()
    if small or args.threads:
        torch.set_num_threads(args.threads or 1)
    plan = Plan.for_mode(small, "cpu" if small else "cuda:0", args.budget)
    check = Check(plan, str(Path(args.weights).resolve()), args.out)
    check.weights = load_weights_file(args.weights)
    print(f"gpu_check: {'small mode on the CPU' if small else plan.device}, reports in {args.out}/", flush=True)
    env = environment()
    for name, function in steps():
        run_step(check, name, function)
        json_path, md_path = write_reports(check, env)  # after every step: a crash leaves what was found
    failed = [r.name for r in check.results if r.status == "failed"]
    print(f"gpu_check: {json_path} and {md_path}; " + (f"failed: {', '.join(failed)}" if failed else "no step failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
