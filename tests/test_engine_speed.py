"""Throughput options of the engine: jobs optimised in groups, cached style targets, precision, memory
format, compilation, and the bench that measures them. Each must leave every job's result what it
would be alone in float32 (up to float rounding, or a few percent of final loss for reduced precision)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from batchstyle.engine import Checkpoint, Job, Progress, ScaleFinished, Speed, StyleSettings, Stylizer
from batchstyle.engine.layers import LAYER_INDEX, conv_macs
from batchstyle.engine.settings import group_key

TINY = StyleSettings(end_scale=48, min_scale=32, initial_iterations=6, iterations=4)  # scales 34, 48
FP32 = Speed(precision="fp32", memory_format="contiguous")


@pytest.fixture(scope="module")
def fp32_stylizer(random_weights):
    return Stylizer(random_weights, devices=["cpu"], speed=FP32)


@pytest.fixture(scope="module")
def images():
    from support.photos import make_photo

    return [make_photo(60, 45, seed=k) for k in range(3)], [make_photo(50, 50, seed=10 + k) for k in range(2)]


def jobs_of(images):
    contents, styles = images
    return [Job(contents[0], [styles[0]], TINY),
            Job(contents[1], [styles[1], styles[0]], TINY.replace(seed=7, init="uniform", style_weights=(2.0, 1.0),
                                                                  content_weight=0.5)),
            Job(contents[2], [styles[1]], TINY.replace(tv_weight=10.0, original_colors=True))]


# Float32 rounding: a group convolves its images with other kernels than one image alone (oneDNN
# picks them by shape), i.e. it sums the same products in another order. Each activation can then
# change by about sqrt(K)·u of its size (u = 2**-24 for float32; K up to 512·9 = 4608 products per
# sum: ~4e-6), and the backward pass to the image goes through 13 such layers (~1.5e-5 in quadrature).
# So: losses within 1e-5, gradients within 1e-4 (relative to their norm) of what the job has alone.
# A job that sees another job's targets or weights differs by O(1). Measured: 1e-7 and 3e-6.
LOSS_ROUNDING, GRADIENT_ROUNDING = 1e-5, 1e-4


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def alone(stylizer, job):
    run = stylizer.run(job.content, job.styles, job.settings, job.checkpoint)
    losses = [e.loss for e in run if isinstance(e, Progress)]
    return run, losses


def test_a_group_gives_each_job_the_loss_and_gradient_it_has_alone(fp32_stylizer, images):
    """Where the claim is exact up to rounding: the same images in, the same losses and gradient out.

    Not so for whole runs: Adam and the scaled MSE both normalise what they are given, so rounding
    differences in near-zero gradients (or, at the content image itself, in a near-zero content
    difference) grow into step-sized differences of the images. After a few steps a job alone and in
    a group are only as close as two float32 runs can be (measured here: 2e-4 of the loss, as between
    the NCHW and NHWC layouts). So the images here are noise, away from every content image.
    """
    jobs = jobs_of(images)
    group = fp32_stylizer.run_group(jobs)
    noise = torch.Generator().manual_seed(5)
    for scale, (w, h) in enumerate(s.size for s in group.ladder):
        x = torch.rand(3, 3, h, w, generator=noise)
        losses, gradient = group.objective(scale)(x)
        assert losses.shape == (3,) and gradient.shape == x.shape
        for k, job in enumerate(jobs):
            single = fp32_stylizer.run(job.content, job.styles, job.settings).objective(scale)
            loss, own = single(x[k:k + 1])
            assert loss.item() == pytest.approx(losses[k].item(), rel=LOSS_ROUNDING), (scale, k)
            assert relative(gradient[k], own[0]) < GRADIENT_ROUNDING, (scale, k)
        # the jobs' gradients really differ (weights, styles and targets are per job)
        assert relative(gradient[0], gradient[1]) > 0.1 and relative(gradient[1], gradient[2]) > 0.1


def test_a_jobs_run_does_not_depend_on_the_other_jobs_of_its_group(fp32_stylizer, images):
    """Exactly: the convolutions of a group of a given size run the same kernels whatever its images,
    so a job's losses and image are bit for bit the same beside any other jobs, in any place."""
    from support.photos import make_photo

    jobs = jobs_of(images)
    other = Job(make_photo(60, 45, seed=3), [images[1][0]], TINY.replace(seed=3, init="gray", style_weight=3.0))
    group = fp32_stylizer.run_group(jobs)
    events = list(group)
    for k in range(3):
        own = [e for e in events if e.item == k]
        assert sum(isinstance(e, Progress) for e in own) == group.total_iterations == 6 + 4
        assert [e.scale_index for e in own if isinstance(e, ScaleFinished)] == [0, 1]
        assert all(e.checkpoint is group.checkpoint_of(k) for e in own[-1:])
    mixed = fp32_stylizer.run_group([other, jobs[2], jobs[0]])  # other mates, other places
    mixed_events = list(mixed)
    for k, place in ((2, 1), (0, 2)):
        losses = [e.loss for e in events if e.item == k and isinstance(e, Progress)]
        assert [e.loss for e in mixed_events if e.item == place and isinstance(e, Progress)] == losses
        assert torch.equal(mixed.image(place), group.image(k))
    # the three jobs really differ (weights, seeds, styles and colours are per job)
    assert not torch.allclose(group.image(0), group.image(1), atol=0.05)
    assert not torch.allclose(group.image(0), group.image(2), atol=0.05)


def test_group_checkpoints_belong_to_their_jobs_and_resume_in_any_group(fp32_stylizer, images):
    jobs = jobs_of(images)
    group = fp32_stylizer.run_group(jobs)
    events = iter(group)
    for event in events:
        if isinstance(event, ScaleFinished) and event.item == 2:
            break  # every job has finished scale 0
    saved = [Checkpoint.from_bytes(group.checkpoint_of(k).to_bytes()) for k in range(3)]
    next_losses = [next(events).loss for _ in range(3)]  # scale 1, iteration 1, from the checkpointed images
    list(events)
    # resumed in another group of the same size, a job goes on exactly as without the interruption
    resumed = fp32_stylizer.run_group([Job(jobs[k].content, jobs[k].styles, jobs[k].settings, saved[k])
                                       for k in (1, 0, 2)])
    list(resumed)
    assert torch.equal(resumed.image(0), group.image(1)) and torch.equal(resumed.image(1), group.image(0))
    for k, job in enumerate(jobs):
        alone = fp32_stylizer.run(job.content, job.styles, job.settings, saved[k])
        first = next(iter(alone))  # alone: the same image in, the same loss up to rounding
        assert (first.scale_index, first.iteration) == (1, 1)
        assert first.loss == pytest.approx(next_losses[k], rel=LOSS_ROUNDING)
        other = jobs[(k + 1) % 3]
        with pytest.raises(ValueError, match="other images"):
            fp32_stylizer.run(other.content, other.styles, other.settings, saved[k])


def test_jobs_that_cannot_share_a_group_are_refused(fp32_stylizer, images):
    contents, styles = images
    from support.photos import make_photo

    with pytest.raises(ValueError, match="job 2 cannot share a group with job 1"):
        fp32_stylizer.run_group([Job(contents[0], [styles[0]], TINY), Job(make_photo(45, 60), [styles[0]], TINY)])
    with pytest.raises(ValueError, match="cannot share a group"):
        fp32_stylizer.run_group([Job(contents[0], [styles[0]], TINY), Job(contents[1], [styles[0]],
                                                                         TINY.replace(iterations=5))])
    lbfgs = TINY.replace(optimizer="lbfgs")
    with pytest.raises(ValueError, match="need Adam"):
        fp32_stylizer.run_group([Job(contents[0], [styles[0]], lbfgs), Job(contents[1], [styles[0]], lbfgs)])
    with pytest.raises(ValueError, match="a group needs at least one job"):
        fp32_stylizer.run_group([])
    # the planner's key agrees: per-job settings group, loop settings and sizes do not
    sizes = [(34, 26), (48, 36)]
    assert group_key(TINY, sizes) == group_key(TINY.replace(seed=3, style_weight=4.0, init="gray", step_size=0.01,
                                                            avg_decay=0.9, schedule="adaptive"), sizes)
    assert group_key(TINY, sizes) != group_key(TINY.replace(pooling="average"), sizes)
    assert group_key(TINY, sizes) != group_key(TINY, [(34, 25), (48, 36)])
    assert group_key(lbfgs, sizes) is None


def test_style_targets_are_computed_once_per_style_and_scale(random_weights, images):
    contents, styles = images
    stylizer = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    list(stylizer.run(contents[0], [styles[0]], TINY))
    assert (stylizer.target_cache.misses, stylizer.target_cache.hits) == (2, 0)  # two scales
    list(stylizer.run(contents[1], [styles[0]], TINY.replace(seed=4)))
    assert (stylizer.target_cache.misses, stylizer.target_cache.hits) == (2, 2)  # same style: reused
    list(stylizer.run(contents[1], [styles[0]], TINY.replace(style_scale=0.8)))
    assert stylizer.target_cache.misses == 4  # another style size: computed
    # a cached target gives the same result as a fresh one
    fresh = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    a, b = fresh.run(contents[1], [styles[0]], TINY.replace(seed=4)), stylizer.run(contents[1], [styles[0]],
                                                                                    TINY.replace(seed=4))
    list(a), list(b)
    assert torch.equal(a.image(), b.image())


def test_target_cache_stays_within_its_byte_budget():
    from batchstyle.engine.targets import TargetCache

    cache = TargetCache(max_bytes=3 * 400)
    for k in range(5):
        cache.get(("style", k), lambda: [torch.zeros(100)])  # 400 bytes each
    assert len(cache.entries) == 3 and cache.bytes == 1200 and ("style", 4) in cache.entries
    cache.get(("style", 2), lambda: pytest.fail("should be cached"))
    assert cache.hits == 1


@pytest.mark.weights
def test_reduced_precision_and_layouts_keep_the_final_loss(real_weights, demo_images):
    """The quality guard on real weights and images: each speed option's final float32 loss stays
    within 3 % of the float32 run on the same inputs and seed, and float32 in another layout or in a
    group gives visually the same image."""
    from batchstyle.engine.images import load_image
    from batchstyle.engine.speed import cpu_has_native_bf16

    content = load_image(demo_images / "content" / "astronaut_eileen_collins.jpg")
    style = load_image(demo_images / "styles" / "van_gogh_starry_night.jpg")
    settings = StyleSettings(end_scale=64, min_scale=64, initial_iterations=20, content_weight=5)

    def final_losses(speed, settings, group=1):
        run = Stylizer(real_weights, devices=["cpu"], speed=speed).run_group([Job(content, [style], settings)] * group)
        list(run)
        return run.evaluate(), run

    (base,), base_run = final_losses(FP32, settings)
    for speed, group in ((FP32.replace(memory_format="channels_last"), 1), (FP32, 2)):
        losses, run = final_losses(speed, settings, group)
        assert all(abs(loss / base - 1) < 0.03 for loss in losses), (speed, group, losses, base)
        assert all((run.image(k) - base_run.image()).abs().mean().item() < 0.005 for k in range(group))
    bf16, groups = Speed(precision="bf16", memory_format="contiguous"), (1, 2)
    if not cpu_has_native_bf16():
        # oneDNN emulates bf16 on this CPU, ~25x slower than float32 (40 iterations at 96 px took 200 s
        # against 8.5 s), and auto precision never picks it here: guard its numbers on a small run.
        settings, groups = settings.replace(end_scale=32, min_scale=32, initial_iterations=10), (1,)
        (base,), _ = final_losses(FP32, settings)
    for group in groups:
        losses, _ = final_losses(bf16, settings, group)
        assert all(abs(loss / base - 1) < 0.03 for loss in losses), ("bf16", group, losses, base)


def test_compiled_iterations_match_eager(random_weights, images):
    """The compiled forward and its backward give the eager objective's losses and gradient, up to
    the rounding of the float32 sums the compiler fuses and reorders.

    From an image other than the content: at the content itself the content difference is zero in
    eager mode but rounding noise when compiled, and the scaled MSE turns any noise into a gradient
    of L1 norm 1 (times content_weight), so the two runs part ways at once.
    """
    contents, styles = images
    settings = StyleSettings(end_scale=40, min_scale=40, initial_iterations=4, init="uniform")
    eager = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    compiled = Stylizer(random_weights, devices=["cpu"], speed=FP32.replace(compile=True))
    a, b = eager.run(contents[0], [styles[0]], settings), compiled.run(contents[0], [styles[0]], settings)
    x = a.image()[None]  # uniform noise
    (loss_a,), gradient_a = a.objective(0)(x)
    (loss_b,), gradient_b = b.objective(0)(x)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=LOSS_ROUNDING)
    assert relative(gradient_b, gradient_a) < GRADIENT_ROUNDING
    la = [e.loss for e in a if isinstance(e, Progress)]
    lb = [e.loss for e in b if isinstance(e, Progress)]
    assert len(lb) == 4 and lb[0] == pytest.approx(la[0], rel=LOSS_ROUNDING)  # the same first image
    assert lb[-1] < lb[0]


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


def test_cuda_backend_flags_use_the_api_this_torch_has(monkeypatch):
    """cuDNN's TF32 switch is ``cudnn.conv.fp32_precision`` from torch 2.9 and ``cudnn.allow_tf32``
    before (torch 2.9 refuses a mix of the two); a stylizer for CUDA devices sets it once."""
    from types import SimpleNamespace

    from batchstyle.engine.devices import configure_torch

    cuda = [torch.device("cuda", 0)]
    new = SimpleNamespace(conv=SimpleNamespace(fp32_precision="tf32"), allow_tf32=None, benchmark=False)
    monkeypatch.setattr(torch.backends, "cudnn", new)
    configure_torch(cuda, Speed(precision="fp32"))
    assert (new.conv.fp32_precision, new.allow_tf32, new.benchmark) == ("ieee", None, True)
    configure_torch(cuda, Speed(precision="tf32"))
    assert new.conv.fp32_precision == "tf32"
    old = SimpleNamespace(allow_tf32=True, benchmark=False)
    monkeypatch.setattr(torch.backends, "cudnn", old)
    configure_torch(cuda, Speed(precision="fp32"))
    assert (old.allow_tf32, old.benchmark) == (False, True)
    configure_torch([torch.device("cpu")], Speed(precision="tf32"))  # no CUDA: no flags
    assert old.allow_tf32 is False


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
    from batchstyle.engine.measure import peak_tflops

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

    from batchstyle.engine.measure import Config

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in random_weights.tensors.items()}, weights)
    assert Config.parse("bf16,channels_last,group=4,compile") == Config("bf16", "channels_last", True, 4)
    assert Config.parse("bf16,batch=4") == Config("bf16", group=4)  # the older spelling still reads
    with pytest.raises(ValueError, match="unknown configuration part"):
        Config.parse("fp16")
    result = subprocess.run([sys.executable, "-m", "batchstyle", "bench", "--sizes", "48", "--steps", "2",
                             "--warmup", "1", "-c", "fp32", "-c", "fp32,group=2", "--weights", str(weights),
                             "--devices", "cpu", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["config"], r["group"], len(r["final_losses"])) for r in rows] == [("fp32 NCHW g1", 1, 1),
                                                                                ("fp32 NCHW g2", 2, 2)]
    base, grouped = rows
    assert base["loss_vs_baseline"] == 0 and abs(grouped["loss_vs_baseline"]) < 0.01
    assert base["steps"] == 2 and base["width"] == 48 and base["peak_memory_bytes"] > 0
    expected = 4 * conv_macs(48, 48, LAYER_INDEX["relu5_1"]) * 2 / base["seconds"] / 1e12
    assert base["tflops"] == pytest.approx(expected, rel=1e-6)
    assert grouped["item_iterations_per_s"] == pytest.approx(2 * grouped["steps_per_s"])
