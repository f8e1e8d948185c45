"""Shared fixtures: real weights from ../shared (skipped when absent), the demo job's public-domain
images, tiny random weights."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

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
    """moto's S3 server for a test module, with the module's process pointed at it (tests/moto_s3.py)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from moto_s3 import running_moto

    with running_moto() as server:
        yield server


@pytest.fixture(scope="module", params=["s3", "az", "gs"])
def store(request):
    """A real server of each object store the README names (S3: moto, Azure: Azurite, GCS:
    fake-gcs-server), one per test module, with the module's process pointed at it
    (tests/store_servers.py); a store that cannot be had here is skipped, saying why."""
    import contextlib

    from store_servers import Unavailable, running

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running(request.param))
        except Unavailable as exc:
            pytest.skip(f"{request.param}://: {exc}")
        yield server


def make_photo(w: int, h: int, seed: int = 0):
    """A smooth synthetic RGB 'photo' (gradients plus a few shapes) as a PIL image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([x, y, 1 - x * y], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.uniform(0, 1, 3)
    noise = rng.normal(0, 0.02, base.shape)
    return Image.fromarray(np.clip((base + noise) * 255, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def photo():
    return make_photo


def folder_job(root, folder: str, count: int, size: tuple[int, int], style_seed: int, manifest: str,
               comment: str = ""):
    """``count`` photos in ``root/folder``, one style image and a one-row manifest over the folder."""
    (root / folder).mkdir()
    for i in range(count):
        make_photo(*size, i).save(root / folder / f"p{i}.png")
    make_photo(32, 32, style_seed).save(root / "style.png")
    path = root / manifest
    path.write_text(comment + f"content,style\n{folder},style.png\n")
    return root, path


_HOLD_LOCK = """
import sys, time
from batchstyle.batch.outdir import open_output_dir
lock = open_output_dir(sys.argv[1]).lock().acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(outdir):
    """A separate process that holds the run lock of ``outdir`` until killed (a live run, to the lock)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(outdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def pytest_configure(config):
    # Ray must never see a CUDA_VISIBLE_DEVICES that lists fewer GPUs than tests declare.
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    # Ray's worker processes (and CLI subprocesses) import the fake backend from this folder.
    tests = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 1 MiB (tmpfs) at ``tmp_path/disk``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                                 text=True)
        why = mounted.stderr.strip() or f"mount exited with {mounted.returncode}" if mounted.returncode else ""
    except OSError as exc:  # no mount command
        why = str(exc)
    if why:
        pytest.skip(f"a small tmpfs cannot be mounted here ({why}); full-disk tests need one (they run as root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk, leave: int):
    """Fill ``disk`` up, then give back ``leave`` bytes; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:  # full
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))
    return filler
