"""``python -m benchmarks.gpu_check --small``: every step of the GPU check, on the CPU at tiny sizes,
so that the check cannot rot on machines without a GPU. It runs as the command it is (a subprocess,
with real weights and a real ``batchstyle run`` through Ray), in about 20 seconds on 2 cores."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["device", "throughput", "bf16_autocast", "channels_last", "groups", "tile_auto", "oom_retry", "batch_run",
         "two_gpu", "schedule", "masks", "compile"]


def test_the_small_gpu_check_runs_every_step_and_reports_it(weights_file, tmp_path):
    out = tmp_path / "reports"
    env = {**os.environ, "BATCHSTYLE_WEIGHTS": str(weights_file), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--small", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    steps_by_name = {s["name"]: s for s in data["steps"]}
    assert list(steps_by_name) == STEPS
    for step in data["steps"]:
        assert step["status"] in ("ok", "skipped"), step
        assert step["status"] == "ok" or step["reason"], step
        assert step["seconds"] >= 0
    assert data["mode"] == "small" and data["counts"]["failed"] == 0
    _figures_are_sane(steps_by_name)
    text = (out / "gpu_check.md").read_text()
    assert all(f"| {name} |" in text and f"## {name}:" in text for name in STEPS)


def _figures_are_sane(steps: dict) -> None:
    for name in (n for n in STEPS if n not in ("schedule", "compile")):  # schedule: where the engine has it; compile: GPU only
        assert steps[name]["status"] == "ok", steps[name]
    assert steps["device"]["figures"]["default_devices"]
    rows = steps["throughput"]["figures"]["rows"]
    assert [r["size"] for r in rows] == ["64x64", "96x96", "128x128"]
    for r in rows + steps["groups"]["figures"]["rows"] + steps["bf16_autocast"]["figures"]["rows"]:
        assert r["it_per_s"] > 0 and r["mp_it_per_s"] > 0 and math.isfinite(r["final_loss"]), r
        if "bytes_per_pixel" in r:  # measured on a GPU only
            assert r["bytes_per_pixel"] > 0 and r["model_bytes_per_pixel"] > 0
    assert steps["bf16_autocast"]["figures"]["activation_dtypes_under_autocast"] == ["torch.bfloat16"]
    assert steps["channels_last"]["figures"]["conv_weights_channels_last"] is True
    assert steps["groups"]["figures"]["group_of_2_speedup"] > 0
    assert steps["tile_auto"]["figures"]["budget_gib"] > 0
    attempts = steps["oom_retry"]["figures"]["attempts"]
    assert attempts[0]["outcome"] == "oom" and attempts[0]["tile_used"] == 384
    assert attempts[-1]["outcome"] == "made" and attempts[-1]["tile"] == 192
    batch = steps["batch_run"]["figures"]
    assert batch["exit_code"] == 0 and len(batch["images"]) == 2 and batch["images_per_hour_from_records"] > 0
    assert {i["devices"] for i in batch["images"]} == {"cpu"}
    assert steps["two_gpu"]["figures"]["devices"] == ["cpu", "cpu"]
    assert steps["compile"]["status"] == "skipped" and "CPU" in steps["compile"]["reason"]
    masks = steps["masks"]["figures"]
    assert masks["plain_seconds"] > 0 and masks["masks_seconds"] > 0 and masks["masks_over_plain_time"] > 0
    schedule = steps["schedule"]
    if schedule["status"] == "skipped":
        assert schedule["reason"] == "schedule setting not available"
    else:
        assert [r["schedule"] for r in schedule["figures"]["rows"]] == ["fixed", "adaptive"]
        assert all(r["seconds"] > 0 and r["iterations"] > 0 for r in schedule["figures"]["rows"])
