"""Shared fixtures: real weights from ../shared (skipped when absent), the demo job's public-domain
images, tiny random weights, synthetic photos, moto's S3 server. Helpers shared by test modules live
in the ``support`` package beside this file (tests/support/), never in a test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.photos import make_photo

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_FILE = Path(os.environ.get("BATCHSTYLE_WEIGHTS") or ROOT.parent / "shared" / "models" /
                    "vgg19_features.safetensors")
DEMO_IMAGES = ROOT / "jobs" / "demo"  # real photos and paintings that ship with the repository


@pytest.fixture(scope="session")
def weights_file() -> Path:
    if not WEIGHTS_FILE.is_file():
        pytest.skip(f"real VGG-19 weights not found at {WEIGHTS_FILE} (set BATCHSTYLE_WEIGHTS to run this test)")
    return WEIGHTS_FILE


@pytest.fixture(scope="session")
def real_weights(weights_file):
    from batchstyle.engine.weights import load_weights_file

    return load_weights_file(weights_file)


@pytest.fixture(scope="session")
def demo_images() -> Path:
    """``content/`` (astronaut_eileen_collins, chelsea_cat, coffee .jpg) and ``styles/``
    (hokusai_great_wave, van_gogh_starry_night .jpg)."""
    return DEMO_IMAGES


@pytest.fixture(scope="session")
def random_weights():
    """Random VGG-19 weights (He init): for plumbing tests that check shapes, formulas and equality only."""
    import torch

    from batchstyle.engine.vgg import CONV_INDICES, CONV_SHAPES
    from batchstyle.engine.weights import VGGWeights

    gen = torch.Generator().manual_seed(1234)
    state = {}
    for i in CONV_INDICES:
        out_ch, in_ch = CONV_SHAPES[i]
        state[f"features.{i}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * (2 / (in_ch * 9)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(out_ch)
    return VGGWeights.from_state_dict(state, source="random (tests)")


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server for a test module, with the module's process pointed at it (support/moto_s3.py)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from support.moto_s3 import running_moto

    with running_moto() as server:
        yield server


@pytest.fixture
def photo():
    """``make_photo(w, h, seed=0)``: a smooth synthetic RGB photo (support/photos.py)."""
    return make_photo


def pytest_configure(config):
    # Ray must never see a CUDA_VISIBLE_DEVICES that lists fewer GPUs than tests declare.
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    # Ray's worker processes (and CLI subprocesses) import the fake backend from this folder, as
    # ``support.fake_backend`` (the module path a pickled ``Fake`` names).
    tests = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
