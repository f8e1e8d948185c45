"""The temporal loss of a clip's frame (docs/engine.md, section Clips): its formula, in float64; that a job
without effective temporal targets makes the plain image bit for bit; that tiles and groups keep it
exact; that a frame's job starts from its start image and that its checkpoint is its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchstyle.engine import Checkpoint, Job, Speed, StyleSettings, Stylizer
from batchstyle.engine.losses import ContentLoss, GramStyleLoss, TVLoss
from batchstyle.engine.objective import Objective, Weighted
from batchstyle.engine.pixels import tensor_at
from batchstyle.engine.temporal import Temporal, TemporalLoss
from batchstyle.engine.tiled_objective import TiledObjective
from batchstyle.engine.vgg import VGGFeatures

from support.narrow import ALL_STYLE, grid, indices, narrow_weights, relative

TINY = StyleSettings(end_scale=48, min_scale=32, initial_iterations=6, iterations=4)  # scales 34, 48
FP32 = Speed(precision="fp32", memory_format="contiguous")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny images, a shared machine


def _temporal(w, h, seed, soft=False) -> Temporal:
    rng = np.random.default_rng(seed)
    confidence = rng.random((h, w)) if soft else (rng.random((h, w)) > 0.3)
    return Temporal(rng.random((h, w, 3)), confidence)


def test_the_temporal_loss_is_its_formula():
    """Per image: Σ_j Σ_p c_j(p) |x(p) − t_j(p)|² / (3 H W), computed directly in float64; a job without
    earlier frames scores zero."""
    w, h = 13, 9
    temporals = [[_temporal(w, h, 1), _temporal(w, h, 2, soft=True)], [], [_temporal(w, h, 3)]]
    x = torch.rand(3, 3, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = TemporalLoss.of(temporals, (w, h))(x)
    for n, job in enumerate(temporals):
        image = x[n].permute(1, 2, 0).numpy()
        expected = sum((t.confidence.astype(np.float64)[..., None] * (image - t.target) ** 2).sum() for t in job)
        assert got[n].item() == pytest.approx(expected / (3 * h * w), rel=1e-12, abs=1e-15), n
    assert got.dtype == torch.float64 and got[1] == 0


def test_temporal_targets_are_resized_to_each_scale():
    t = _temporal(40, 30, 4, soft=True)
    assert t.at((40, 30)) is t
    small = t.at((20, 15))
    assert small.target.shape == (15, 20, 3) and small.confidence.shape == (15, 20)
    assert abs(small.target.mean() - t.target.mean()) < 0.01 and 0 <= small.confidence.min() <= 1
    with pytest.raises(ValueError, match="temporal target"):
        Temporal(np.zeros((30, 40, 3)), np.zeros((30, 41)))


def _run(stylizer, job):
    run = stylizer.run_group([job])
    list(run)
    return run


def test_a_temporal_term_without_weight_or_confidence_makes_the_plain_image_bit_for_bit(random_weights, pair):
    content, style = pair
    stylizer = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    plain = _run(stylizer, Job(content, [style], TINY)).image()
    w, h = content.size
    zero_confidence = Temporal(np.random.default_rng(0).random((h, w, 3)), np.zeros((h, w)))
    for temporal, weight in (([zero_confidence], 100.0), ([_temporal(w, h, 5)], 0.0)):
        image = _run(stylizer, Job(content, [style], TINY, temporal=temporal, temporal_weight=weight)).image()
        assert torch.equal(image, plain)


def test_the_temporal_term_pulls_the_image_towards_its_target_where_it_is_confident(random_weights, pair):
    content, style = pair
    stylizer = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    w, h = 48, 36  # the end scale's size: the output's
    target = np.asarray(style.resize((w, h)), np.float32) / 255
    confidence = np.zeros((h, w), np.float32)
    confidence[:, : w // 2] = 1  # the left half only
    settings = TINY.replace(step_size=0.05)  # Adam moves each pixel by about its step size per iteration
    plain = _run(stylizer, Job(content, [style], settings)).image().permute(1, 2, 0).numpy()
    held = _run(stylizer, Job(content, [style], settings, temporal=[Temporal(target, confidence)],
                              temporal_weight=5000.0)).image().permute(1, 2, 0).numpy()
    left, right = slice(0, w // 2 - 4), slice(w // 2 + 4, w)
    assert np.abs(held - target)[:, left].mean() < 0.5 * np.abs(plain - target)[:, left].mean()
    assert np.abs(held - target)[:, right].mean() > 0.9 * np.abs(plain - target)[:, right].mean()  # not pulled


def test_a_job_starts_from_its_start_image(tiny_stylizer, pair):
    content, style = pair
    start = pair[1].resize(content.size)
    run = tiny_stylizer.run_group([Job(content, [style], TINY.replace(init="uniform"), start=start)])
    assert torch.equal(run.image(), tensor_at(start, *run.ladder[0].size)[0])


def test_tiles_give_the_whole_images_loss_and_gradient_with_a_temporal_term():
    """float64 on the narrow network: two images, one with two earlier frames, one with none."""
    layers = ("relu4_2", *ALL_STYLE)
    model = VGGFeatures(narrow_weights(), layers).double()
    gen = torch.Generator().manual_seed(2)
    h, w = 100, 90
    content = model(torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64), layers)
    style = model(torch.rand(1, 3, 80, 70, generator=gen, dtype=torch.float64), layers)
    terms = [Weighted(22, ContentLoss(content[22]), torch.tensor([5.0, 0.5]))]
    terms += [Weighted(i, GramStyleLoss(GramStyleLoss.statistics(style[i]).repeat(2, 1, 1)), torch.tensor([1.0, 3.0]))
              for i in indices(ALL_STYLE)]
    terms.append(Weighted("input", TVLoss(), torch.tensor([2.0, 0.1])))
    temporal = TemporalLoss.of([[_temporal(w, h, 6), _temporal(w, h, 7, soft=True)], []], (w, h))
    terms.append(Weighted("input", temporal.double(), torch.tensor([300.0, 40.0])))
    whole, tiled = Objective(model, terms, layers), TiledObjective(model, terms, layers, grid(h, w, 48, layers))
    x = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    (losses, gradient), (tiled_losses, tiled_gradient) = whole(x), tiled(x)
    assert len(tiled.tiles) >= 4
    assert relative(tiled_losses, losses) < 1e-9 and relative(tiled_gradient, gradient) < 1e-9
    without = Objective(model, terms[:-1], layers)(x)
    assert (losses - without[0])[0] > 0 and (losses - without[0])[1] == 0  # the second has no earlier frame
    alone = whole.subset([1])(x[1:])
    assert torch.allclose(alone[0], losses[1:]) and torch.allclose(alone[1], gradient[1:])


def test_a_group_gives_a_frame_and_a_plain_image_what_each_gets_alone(random_weights, pair):
    """Up to float rounding: a group sums each image's losses in another order than a job alone, and
    Adam grows that (measured: 3e-4 at most for two plain jobs, 4e-5 for the frame)."""
    content, style = pair
    stylizer = Stylizer(random_weights, devices=["cpu"], speed=FP32)
    w, h = content.size
    jobs = [Job(content, [style], TINY, start=style.resize(content.size), temporal=[_temporal(w, h, 8)],
                temporal_weight=500.0),
            Job(content, [style], TINY.replace(seed=4))]
    group = stylizer.run_group(jobs)
    list(group)
    for k, job in enumerate(jobs):
        assert (group.image(k) - _run(stylizer, job).image()).abs().max() < 1e-3, k
    without = _run(stylizer, Job(content, [style], TINY, start=jobs[0].start)).image()
    assert (group.image(0) - without).abs().mean() > 0.01  # the temporal term acts in the group


def test_a_frames_checkpoint_resumes_only_that_frames_job(tiny_stylizer, pair):
    content, style = pair
    w, h = content.size
    frame = dict(start=style.resize(content.size), temporal=[_temporal(w, h, 9)], temporal_weight=50.0)
    run = tiny_stylizer.run_group([Job(content, [style], TINY, **frame)])
    next(e for e in run if getattr(e, "checkpoint", None) is not None)
    checkpoint = Checkpoint.from_bytes(run.checkpoint_of(0).to_bytes())
    identity = tiny_stylizer.weights.identity
    assert checkpoint.fits(TINY, identity, content, [style], **frame)
    others = [dict(frame, temporal=[_temporal(w, h, 10)]), dict(frame, temporal_weight=60.0),
              dict(frame, start=content), {}]
    for other in others:
        assert not checkpoint.fits(TINY, identity, content, [style], **other)
        with pytest.raises(ValueError, match="checkpoint belongs"):
            tiny_stylizer.run_group([Job(content, [style], TINY, checkpoint, **other)])
    resumed = tiny_stylizer.run_group([Job(content, [style], TINY, checkpoint, **frame)])
    list(resumed), list(run)
    assert torch.equal(resumed.image(), run.image())


def test_a_plain_jobs_fingerprint_is_unchanged(tiny_stylizer, pair):
    """Checkpoints made before clips existed still resume: a job without frame fields adds nothing."""
    from batchstyle.engine.checkpoint import fingerprint

    content, style = pair
    run = tiny_stylizer.run(content, [style], TINY)
    assert run._jobs[0].fingerprint == fingerprint(TINY, tiny_stylizer.weights.identity, [content, style])
