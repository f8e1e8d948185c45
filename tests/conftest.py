"""Shared fixtures: real weights from ../shared (skipped when absent), the demo job's public-domain
images, tiny random weights, synthetic photos, moto's S3 server. Helpers shared by test modules live
in the ``support`` package beside this file (tests/support/), never in a test module."""

from __future__ import annotations

import os
import subprocess
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
def one_thread():
    """One torch thread for a module of tiny images (the machine is shared): ``pytestmark =
    pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_stylizer(random_weights):
    """The engine on the CPU with the random weights, shared by a module's tests."""
    from batchstyle.engine import Stylizer

    return Stylizer(random_weights, devices=["cpu"])


@pytest.fixture(scope="module")
def pair():
    """A small photo and a painting-like image (content, style) of other sizes."""
    from support.photos import make_photo

    return make_photo(60, 45, seed=1), make_photo(50, 50, seed=2)


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server for a test module, with the module's process pointed at it (support/moto_s3.py)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from support.moto_s3 import running_moto

    with running_moto() as server:
        yield server


@pytest.fixture(scope="module", params=["s3", "az", "gs"])
def store(request):
    """A real server of each object store the README names (S3: moto, Azure: Azurite, GCS:
    fake-gcs-server), one per test module, with the module's process pointed at it
    (tests/support/store_servers.py); a store that cannot be had here is skipped, saying why."""
    import contextlib

    from support.store_servers import Unavailable, running

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running(request.param))
        except Unavailable as exc:
            pytest.skip(f"{request.param}://: {exc}")
        yield server


@pytest.fixture
def batch(tmp_path, photo):
    """An output directory planned for six photos in one style: two done before, one failed, three
    pending (support/gallery.py)."""
    from support.gallery import planned_batch

    return planned_batch(tmp_path, photo)


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
