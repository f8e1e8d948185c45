"""Throughput options of the engine: batched items, cached style targets, precision, memory format,
compilation, and the bench that measures them. Each must leave every item's result what it would be
alone in float32 (up to float tolerance, or a few percent of final loss for reduced precision)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from batchstyle.engine import Checkpoint, Job, Progress, ScaleFinished, Speed, StyleSettings, Stylizer
from batchstyle.engine.layers import LAYER_INDEX, conv_macs
from batchstyle.engine.settings import batch_key

TINY = StyleSettings(end_scale=48, min_scale=32, initial_iterations=6, iterations=4)  # scales 34, 48
FP32 = Speed(precision="fp32", memory_format="contiguous")


@pytest.fixture(scope="module")
def fp32_stylizer(random_weights):
    return Stylizer(random_weights, devices=["cpu"], speed=FP32)


@pytest.fixture(scope="module")
def images():
    from conftest import make_photo

    return [make_photo(60, 45, seed=k) for k in range(3)], [make_photo(50, 50, seed=10 + k) for k in range(2)]


def jobs_of(images):
    contents, styles = images
    return [Job(contents[0], [styles[0]], TINY),
            Job(contents[1], [styles[1], styles[0]], TINY.replace(seed=7, init="uniform", style_weights=(2.0, 1.0),
                                                                  content_weight=0.5)),
            Job(contents[2], [styles[1]], TINY.replace(tv_weight=10.0, original_colors=True))]


def same_image(a: torch.Tensor, b: torch.Tensor, step_size: float = TINY.step_size) -> bool:
    """Equal up to float rounding. Adam's normalised steps can amplify rounding differences to at
    most about one step at pixels whose gradient is near zero, so: max below a step, mean tiny."""
    diff = (a - b).abs()
    return a.shape == b.shape and diff.max().item() < step_size and diff.mean().item() < 1e-3


def alone(stylizer, job):
    run = stylizer.run(job.content, job.styles, job.settings, job.checkpoint)
    losses = [e.loss for e in run if isinstance(e, Progress)]
    return run, losses


def test_a_batched_run_gives_each_item_the_result_it_gets_alone(fp32_stylizer, images):
    jobs = jobs_of(images)
    batch = fp32_stylizer.run_batch(jobs)
    events = list(batch)
    for k, job in enumerate(jobs):
        own = [e for j, e in events if j == k]
        assert sum(isinstance(e, Progress) for e in own) == batch.total_iterations == 6 + 4
        assert [e.scale_index for e in own if isinstance(e, ScaleFinished)] == [0, 1]
        run, losses = alone(fp32_stylizer, job)
        batched_losses = [e.loss for e in own if isinstance(e, Progress)]
        assert batched_losses == pytest.approx(losses, rel=1e-4)
        assert same_image(batch.image(k), run.image()), k
    # the three items really differ (weights, seeds, styles and colours are per item)
    assert not torch.allclose(batch.image(0), batch.image(1), atol=0.05)


def test_batched_checkpoints_belong_to_their_items_and_resume_alone(fp32_stylizer, images):
    jobs = jobs_of(images)[:2]
    batch = fp32_stylizer.run_batch(jobs)
    for _, event in batch:
        if isinstance(event, ScaleFinished) and event.scale_index == 0:
            break
    for k, job in enumerate(jobs):
        saved = Checkpoint.from_bytes(batch.checkpoint_of(k).to_bytes())
        resumed = fp32_stylizer.run(job.content, job.styles, job.settings, saved)
        list(resumed)
        full, _ = alone(fp32_stylizer, job)
        assert same_image(resumed.image(), full.image())
        with pytest.raises(ValueError, match="other images"):
            other = jobs[1 - k]
            fp32_stylizer.run(other.content, other.styles, other.settings, saved)


def test_items_that_cannot_share_a_batch_are_refused(fp32_stylizer, images):
    contents, styles = images
    from conftest import make_photo

    with pytest.raises(ValueError, match="cannot share a batch"):
        fp32_stylizer.run_batch([Job(contents[0], [styles[0]], TINY), Job(make_photo(45, 60), [styles[0]], TINY)])
    with pytest.raises(ValueError, match="cannot share a batch"):
        fp32_stylizer.run_batch([Job(contents[0], [styles[0]], TINY), Job(contents[1], [styles[0]],
                                                                         TINY.replace(iterations=5))])
    lbfgs = TINY.replace(optimizer="lbfgs")
    with pytest.raises(ValueError, match="need Adam"):
        fp32_stylizer.run_batch([Job(contents[0], [styles[0]], lbfgs), Job(contents[1], [styles[0]], lbfgs)])
    # the planner's key agrees: per-item settings batch, loop settings and sizes do not
    sizes = [(34, 26), (48, 36)]
    assert batch_key(TINY, sizes) == batch_key(TINY.replace(seed=3, style_weight=4.0, init="gray"), sizes)
    assert batch_key(TINY, sizes) != batch_key(TINY.replace(step_size=0.01), sizes)
    assert batch_key(TINY, sizes) != batch_key(TINY, [(34, 25), (48, 36)])
    assert batch_key(lbfgs, sizes) is None


def test_style_targets_are_computed_once_per_style_and_scale(random_weights, images):
    contents, styles = images
    stylizer = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    list(stylizer.run(contents[0], [styles[0]], TINY))
    assert (stylizer.targets.misses, stylizer.targets.hits) == (2, 0)  # two scales
    list(stylizer.run(contents[1], [styles[0]], TINY.replace(seed=4)))
    assert (stylizer.targets.misses, stylizer.targets.hits) == (2, 2)  # same style: reused
    list(stylizer.run(contents[1], [styles[0]], TINY.replace(style_scale=0.8)))
    assert stylizer.targets.misses == 4  # another style size: computed
    # a cached target gives the same result as a fresh one
    fresh = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    a, b = fresh.run(contents[1], [styles[0]], TINY.replace(seed=4)), stylizer.run(contents[1], [styles[0]],
                                                                                    TINY.replace(seed=4))
    list(a), list(b)
    assert torch.equal(a.image(), b.image())


def test_target_cache_stays_within_its_byte_budget():
    from batchstyle.engine.multiscale import TargetCache

    cache = TargetCache(max_bytes=3 * 400)
    for k in range(5):
        cache.get(("style", k), lambda: [torch.zeros(100)])  # 400 bytes each
    assert len(cache.entries) == 3 and cache.bytes == 1200 and ("style", 4) in cache.entries
    cache.get(("style", 2), lambda: pytest.fail("should be cached"))
    assert cache.hits == 1


@pytest.mark.weights
def test_reduced_precision_and_layouts_keep_the_final_loss(real_weights, demo_images):
    """The quality guard on real weights and images: each speed option's final float32 loss stays
    within 3 % of the float32 run on the same inputs and seed."""
    from batchstyle.engine.images import load_image

    content = load_image(demo_images / "content" / "astronaut_eileen_collins.jpg")
    style = load_image(demo_images / "styles" / "van_gogh_starry_night.jpg")
    settings = StyleSettings(end_scale=96, min_scale=96, initial_iterations=40, content_weight=5)

    def final_loss(speed, batch=1):
        stylizer = Stylizer(real_weights, devices=["cpu"], speed=speed)
        run = stylizer.run_batch([Job(content, [style], settings)] * batch)
        list(run)
        return run.evaluate(), run

    (base,), base_run = final_loss(FP32)
    for speed, batch in ((Speed(precision="bf16", memory_format="contiguous"), 1),
                         (Speed(precision="fp32", memory_format="channels_last"), 1),
                         (FP32, 2), (Speed(precision="bf16", memory_format="contiguous"), 2)):
        losses, run = final_loss(speed, batch)
        for loss in losses:
            assert abs(loss / base - 1) < 0.03, (speed, batch, loss, base)
        if speed.precision == "fp32":  # same arithmetic, another layout or batch: visually the same image
            assert (run.image() - base_run.image()).abs().mean().item() < 0.005


def test_compiled_iterations_match_eager(random_weights, images):
    contents, styles = images
    settings = StyleSettings(end_scale=40, min_scale=40, initial_iterations=4)
    eager = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    compiled = Stylizer(random_weights, devices=["cpu"], speed=FP32.replace(compile=True))
    a, b = eager.run(contents[0], [styles[0]], settings), compiled.run(contents[0], [styles[0]], settings)
    la = [e.loss for e in a if isinstance(e, Progress)]
    lb = [e.loss for e in b if isinstance(e, Progress)]
    assert lb == pytest.approx(la, rel=1e-3)  # the compiler fuses and reorders float32 sums
    assert (a.image() - b.image()).abs().mean().item() < 1e-3


def test_speed_options_resolve_per_device_and_reject_nonsense(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for bf16, amx, expected in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")):
        # plain AVX-512 (oneDNN would emulate bf16, slower than fp32) stays fp32
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        cpu = Speed().resolve([torch.device("cpu")])
        assert cpu.precision == expected and cpu.memory_format == "contiguous" and cpu.loss_every == 1
    assert Speed(precision="tf32").resolve([torch.device("cpu")]).precision == "tf32"
    with pytest.raises(ValueError, match="precision must be one of"):
        Speed(precision="fp16")
    with pytest.raises(ValueError, match="memory_format"):
        Speed(memory_format="nhwc")


def test_losses_are_read_back_every_n_iterations_as_on_a_gpu(random_weights, images):
    """loss_every (10 on a GPU, so that the device is not stalled each step) on this CPU."""
    contents, styles = images
    every = Stylizer(random_weights, devices=["cpu"], speed=FP32.replace(loss_every=3))
    run = every.run(contents[0], [styles[0]], TINY)
    losses = [(e.scale_index, e.iteration, e.loss) for e in run if isinstance(e, Progress)]
    _, exact = alone(Stylizer(random_weights, devices=["cpu"], speed=FP32), Job(contents[0], [styles[0]], TINY))
    for (scale, i, loss), true in zip(losses, exact):
        last = TINY.initial_iterations if scale == 0 else TINY.iterations
        if i == 1 or i % 3 == 0 or i == last:
            assert loss == pytest.approx(true, rel=1e-6)
    # in between, the last value read is repeated
    assert losses[1][2] == losses[0][2] and losses[4][2] == losses[3][2]


def test_gpu_defaults_follow_the_device(monkeypatch):
    """The CUDA branch of the automatic choices, with the device's capability faked on this CPU machine."""
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    hopper = Speed().resolve([cuda])
    assert (hopper.precision, hopper.memory_format, hopper.loss_every) == ("bf16", "channels_last", 10)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert Speed().resolve([cuda]).precision == "fp32"  # Turing: no bf16 tensor cores
    assert Speed(precision="tf32", memory_format="contiguous").resolve([cuda]).memory_format == "contiguous"


def test_peak_flops_are_known_for_common_gpus():
    from batchstyle.bench import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA H200", "tf32") == 494.7
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert peak_tflops("cpu", "fp32") is None


def test_flops_per_iteration_from_layer_shapes():
    # forward plus backward to the input at 512x512 up to relu5_1: the ~190 GMAC of the issue
    assert 2 * conv_macs(512, 512, LAYER_INDEX["relu5_1"]) == pytest.approx(189.35e9, rel=1e-3)
    # conv1_1 alone: 512*512 positions * 64 * 3 * 9
    assert conv_macs(512, 512, LAYER_INDEX["conv1_1"]) == 512 * 512 * 64 * 3 * 9


def test_bench_compares_configurations_side_by_side(tmp_path, random_weights):
    from safetensors.torch import save_file

    from batchstyle.bench import Config

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in random_weights.tensors.items()}, weights)
    assert Config.parse("bf16,channels_last,batch=4,compile") == Config("bf16", "channels_last", True, 4)
    with pytest.raises(ValueError, match="unknown configuration part"):
        Config.parse("fp16")
    result = subprocess.run([sys.executable, "-m", "batchstyle", "bench", "--sizes", "48", "--steps", "2",
                             "--warmup", "1", "-c", "fp32", "-c", "fp32,batch=2", "--weights", str(weights),
                             "--devices", "cpu", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["config"], r["batch"], len(r["final_losses"])) for r in rows] == [("fp32 NCHW b1", 1, 1),
                                                                                ("fp32 NCHW b2", 2, 2)]
    base, batched = rows
    assert base["loss_vs_baseline"] == 0 and abs(batched["loss_vs_baseline"]) < 0.01
    assert base["steps"] == 2 and base["width"] == 48 and base["peak_memory_bytes"] > 0
    expected = 4 * conv_macs(48, 48, LAYER_INDEX["relu5_1"]) * 2 / base["seconds"] / 1e12
    assert base["tflops"] == pytest.approx(expected, rel=1e-6)
    assert batched["item_iterations_per_s"] == pytest.approx(2 * batched["steps_per_s"])
