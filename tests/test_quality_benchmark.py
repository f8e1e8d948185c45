"""The quality-against-time benchmark runs and reports what it says it does (benchmarks/quality.py):
a tiny run of one real pair with the real weights, checked for its shape, not its figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_quality_benchmark_compares_budgets_with_the_full_one_and_saves_the_outputs(weights_file, tmp_path):
    report, sheets = tmp_path / "quality.json", tmp_path / "sheets"
    done = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--sizes", "128", "--pairs", "1",
                           "--budgets", "1,0.5", "--full-iterations", "6,4", "--cpu", "--threads", "2",
                           "--weights", str(weights_file), "--json", str(report), "--save", str(sheets)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    full, half = data["runs"]
    assert (full["budget"], half["budget"]) == (1.0, 0.5) and full["pair"] == half["pair"]
    assert half["pixel_iterations"] / full["pixel_iterations"] == 0.5  # 3 and 2 iterations against 6 and 4
    for run in data["runs"]:
        assert all(math.isfinite(run[k]) and run[k] > 0 for k in ("objective", "content_distance", "style_distance"))
    (row,) = data["against_full"]
    assert math.isclose(row["objective_change"], half["objective"] / full["objective"] - 1)
    assert data["summary"][0]["pairs"] == 1 and "time ratio" in done.stdout
    (sheet,) = sheets.iterdir()
    assert Image.open(sheet).width == 2 * 128  # the two outputs side by side


def test_the_quality_benchmark_compares_the_adaptive_schedule_with_fixed(weights_file, tmp_path):
    report = tmp_path / "quality.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--sizes", "181", "--pairs", "1",
                           "--budgets", "1", "--schedules", "adaptive", "--full-iterations", "80,60", "--cpu",
                           "--threads", "2", "--weights", str(weights_file), "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    fixed, adaptive = data["runs"]  # fixed at the full budget is always run first: the baseline
    assert (fixed["schedule"], adaptive["schedule"]) == ("fixed", "adaptive")
    assert fixed["iterations"] == [80, 60]  # scales 128 and 181
    assert all(a <= f for a, f in zip(adaptive["iterations"], fixed["iterations"]))
    (row,) = data["against_full"]
    assert row["schedule"] == "adaptive" and row["units_ratio"] == adaptive["pixel_iterations"] / fixed["pixel_iterations"]
    assert data["summary"][0]["schedule"] == "adaptive"
