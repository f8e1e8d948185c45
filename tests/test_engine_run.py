"""Whole runs of the engine: events, stopping, checkpoints, determinism, devices, and real-image quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from batchstyle.engine import Checkpoint, DeviceError, Progress, ScaleFinished, StopStylize, StyleSettings, Stylizer
from batchstyle.engine.losses import gram, normalized, default_style_layer_weights
from batchstyle.engine.colors import rgb_to_yuv
from batchstyle.engine.pixels import to_tensor
from batchstyle.engine.stylizer import stylize
from batchstyle.engine.vgg import LAYER_INDEX

TINY = StyleSettings(end_scale=48, min_scale=32, initial_iterations=4, iterations=3)  # scales 34, 48


def run_all(stylizer, pair, settings=TINY, checkpoint=None):
    run = stylizer.run(pair[0], [pair[1]], settings, checkpoint)
    events = list(run)
    return run, events


def test_events_cover_every_iteration_and_scale(tiny_stylizer, pair):
    run, events = run_all(tiny_stylizer, pair)
    progress = [e for e in events if isinstance(e, Progress)]
    finished = [e for e in events if isinstance(e, ScaleFinished)]
    assert [scale.long_side for scale in run.ladder] == [34, 48]
    assert len(progress) == run.total_iterations == 4 + 3
    assert [(p.scale_index, p.iteration, p.iterations) for p in progress[:5]] == \
        [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4), (1, 1, 3)]
    assert (progress[0].width, progress[0].height) == (34, 26)
    assert (progress[-1].width, progress[-1].height, progress[-1].scale_count) == (48, 36, 2)
    assert all(np.isfinite(p.loss) and p.gpu_peak_bytes == 0 for p in progress)
    assert all(e.item == 0 for e in events)  # a group of one
    assert all(b.elapsed >= a.elapsed for a, b in zip(progress, progress[1:]))
    assert [f.scale_index for f in finished] == [0, 1]
    assert run.image().shape == (3, 36, 48)
    assert run.pil().size == (48, 36)


def test_same_inputs_and_seed_give_the_same_bytes(tiny_stylizer, pair):
    settings = TINY.replace(init="uniform", seed=7)
    a = stylize(pair[0], pair[1], settings, stylizer=tiny_stylizer)
    b = stylize(pair[0], pair[1], settings, stylizer=tiny_stylizer)
    c = stylize(pair[0], pair[1], settings.replace(seed=8), stylizer=tiny_stylizer)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_split_over_two_cpus_equals_one_cpu(random_weights, tiny_stylizer, pair):
    split = Stylizer(random_weights, devices=["cpu", "cpu"])
    one = run_all(tiny_stylizer, pair)[0].image()
    two = run_all(split, pair)[0].image()
    assert torch.equal(one, two)
    three = Stylizer(random_weights, devices=["cpu"] * 3, split=["conv2_1", "conv4_1"])
    assert torch.equal(run_all(three, pair)[0].image(), one)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tiny_stylizer, pair, optimizer):
    settings = TINY.replace(optimizer=optimizer, end_scale=64)  # scales 32, 45, 64
    whole, _ = run_all(tiny_stylizer, pair, settings)
    run = tiny_stylizer.run(pair[0], [pair[1]], settings)
    saved = None
    for event in run:
        if isinstance(event, ScaleFinished) and event.scale_index == 1:
            saved = event.checkpoint.to_bytes()
            break  # "interrupted" after the second scale
    checkpoint = Checkpoint.from_bytes(saved)
    assert checkpoint.scale_index == 1 and (checkpoint.adam is not None) == (optimizer == "adam")
    resumed, events = run_all(tiny_stylizer, pair, settings, checkpoint)
    assert [e.scale_index for e in events if isinstance(e, ScaleFinished)] == [2]
    assert torch.equal(resumed.image(), whole.image())


def test_checkpoint_of_other_inputs_is_refused(tiny_stylizer, pair):
    run = tiny_stylizer.run(pair[0], [pair[1]], TINY)
    checkpoint = next(e for e in run if isinstance(e, ScaleFinished)).checkpoint
    identity = tiny_stylizer.weights.identity
    assert checkpoint.fits(TINY, identity, pair[0], [pair[1]])
    assert not checkpoint.fits(TINY.replace(tv_weight=3.0), identity, pair[0], [pair[1]])
    assert not checkpoint.fits(TINY, identity, pair[1], [pair[0]])
    assert not checkpoint.fits(TINY, identity + "-other", pair[0], [pair[1]])
    with pytest.raises(ValueError, match="checkpoint belongs to other images, settings or weights"):
        tiny_stylizer.run(pair[0], [pair[1]], TINY.replace(tv_weight=3.0), checkpoint)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        Checkpoint.from_bytes(b"garbage")


def test_stopping_early_keeps_the_current_image(tiny_stylizer, pair):
    run = tiny_stylizer.run(pair[0], [pair[1]], TINY)
    for event in run:
        if isinstance(event, Progress) and event.scale_index == 1 and event.iteration == 2:
            break
    assert run.image().shape == (3, 36, 48)

    seen = []

    def stop_after_three(event):
        seen.append(event)
        if len(seen) == 3:
            raise StopStylize

    out = stylize(pair[0], pair[1], TINY, stylizer=tiny_stylizer, callback=stop_after_three)
    assert len(seen) == 3 and out.size == (34, 26)


@pytest.mark.parametrize("init", ["content", "gray", "uniform", "normal", "style_stats"])
def test_inits(tiny_stylizer, pair, init):
    run = tiny_stylizer.run(pair[0], [pair[1]], TINY.replace(init=init))
    start = run.image()
    assert start.shape == (3, 26, 34) and start.min() >= 0 and start.max() <= 1
    if init == "gray":
        assert (start - 0.5).abs().max() <= 1 / 255 + 1e-6
    if init == "uniform":  # U[0, 1): mean 1/2, standard deviation 1/sqrt(12) = 0.289
        assert abs(start.mean().item() - 0.5) < 0.03 and abs(start.std().item() - 0.289) < 0.02
    if init == "normal":  # N(1/2, 1/4) truncated to [0, 1]: standard deviation 0.22
        assert abs(start.mean().item() - 0.5) < 0.03 and abs(start.std().item() - 0.22) < 0.02
    if init == "style_stats":
        style_mean = to_tensor(pair[1])[0].mean((1, 2))
        assert torch.allclose(start.mean((1, 2)), style_mean, atol=0.08)
    if init == "content":
        assert torch.equal(start, to_tensor(pair[0].resize((34, 26), Image.LANCZOS))[0])
    list(run)


def test_too_small_images_fail_before_any_work(tiny_stylizer, pair):
    with pytest.raises(ValueError, match="content image is 48x11 at scale 48.*needs at least 16x16.*raise end_scale"):
        tiny_stylizer.run(pair[0].resize((200, 45)), [pair[1]], TINY)
    with pytest.raises(ValueError, match="style image 1 is 12x12"):
        tiny_stylizer.run(pair[0], [pair[1].resize((12, 12))], TINY)


def test_cuda_device_without_cuda_is_an_informative_error(random_weights):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="cuda:0 was asked for, but PyTorch .* sees no CUDA GPU.*use the cpu device"):
        Stylizer(random_weights, devices=["cuda:0"])
    with pytest.raises(DeviceError, match="not a device name"):
        Stylizer(random_weights, devices=["gpu0"])


def test_weights_can_be_handed_over_in_memory(random_weights, pair):
    arrays = random_weights.to_numpy()
    stylizer = Stylizer(arrays and type(random_weights).from_numpy(arrays, identity=random_weights.identity))
    assert stylizer.weights.identity == random_weights.identity
    raw = Stylizer({k: v.clone() for k, v in random_weights.tensors.items()})
    assert raw.weights.identity == random_weights.identity


# --- with the real weights and images -------------------------------------------------------------

@pytest.fixture(scope="module")
def real_stylizer(real_weights):
    return Stylizer(real_weights, devices=["cpu"])


@pytest.fixture(scope="module")
def real_pair(demo_images):
    content = Image.open(demo_images / "content" / "astronaut_eileen_collins.jpg").convert("RGB")
    style = Image.open(demo_images / "styles" / "van_gogh_starry_night.jpg").convert("RGB")
    return content, style


def style_distance(stylizer, image: torch.Tensor, style: Image.Image) -> float:
    """The 2021 style loss (weighted Gram scaled MSE) of ``image`` against ``style`` at the image's scale."""
    from batchstyle.engine.losses import scaled_mse

    names = StyleSettings().style_layers
    model = stylizer.features(names)
    h, w = image.shape[-2:]
    s = style.copy()
    s.thumbnail((max(w, h), max(w, h)), Image.LANCZOS)
    with torch.no_grad():
        fx, fs = model(image[None], names), model(to_tensor(s), names)
        weights = normalized(default_style_layer_weights(len(names)))
        return sum(wt * scaled_mse(gram(fx[LAYER_INDEX[n]]) - gram(fs[LAYER_INDEX[n]])).item()
                   for n, wt in zip(names, weights))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


REAL = StyleSettings(end_scale=96, min_scale=64, initial_iterations=60, iterations=30, content_weight=5)


@pytest.mark.weights
def test_real_run_lowers_the_style_loss_a_lot_and_keeps_the_content(real_stylizer, real_pair):
    content, style = real_pair
    run = real_stylizer.run(content, [style], REAL)
    losses = [e.loss for e in run if isinstance(e, Progress)]
    out = run.image()
    start = to_tensor(content.resize(out.shape[1:][::-1], Image.LANCZOS))[0]
    before, after = style_distance(real_stylizer, start, style), style_distance(real_stylizer, out, style)
    assert after < 0.3 * before, (before, after)
    assert losses[-1] < 0.5 * losses[0]
    luma = lambda t: rgb_to_yuv(t[None])[0, 0]  # noqa: E731
    assert correlation(luma(out), luma(start)) > 0.6


@pytest.mark.weights
def test_original_colors_keep_the_contents_colours(real_stylizer, real_pair):
    content, style = real_pair
    settings = REAL.replace(initial_iterations=30, iterations=10)
    plain = real_stylizer.run(content, [style], settings)
    kept = real_stylizer.run(content, [style], settings.replace(original_colors=True))
    list(plain), list(kept)
    out_plain, out_kept = plain.image(), kept.image()
    target = rgb_to_yuv(to_tensor(content.resize(out_kept.shape[1:][::-1], Image.LANCZOS)))[0, 1:]
    chroma = lambda t: rgb_to_yuv(t[None])[0, 1:]  # noqa: E731
    assert (chroma(out_kept) - target).abs().mean() < 0.01
    assert (chroma(out_plain) - target).abs().mean() > 0.03
    # The luminance is the stylized one, not the content's. It differs from the plain run's only where
    # the content's chroma under it leaves the RGB cube and is clipped, a few pixels, by up to ~0.05: so
    # the assertion is on the share of pixels that moved and the mean, never on the largest pixel.
    luma = lambda t: rgb_to_yuv(t[None])[0, 0]  # noqa: E731
    moved = (luma(out_kept) - luma(out_plain)).abs()
    assert moved.mean() < 0.002 and (moved > 0.01).float().mean() < 0.01
    content_luma = rgb_to_yuv(to_tensor(content.resize(out_kept.shape[1:][::-1], Image.LANCZOS)))[0, 0]
    assert (luma(out_kept) - content_luma).abs().mean() > 0.05


@pytest.mark.weights
@pytest.mark.parametrize("changes", [dict(style_loss="w2", content_weight=0.015), dict(optimizer="lbfgs")])
def test_w2_and_lbfgs_run_and_lower_the_loss(real_stylizer, real_pair, changes):
    content, style = real_pair
    settings = REAL.replace(initial_iterations=8, iterations=3, **changes)
    run = real_stylizer.run(content, [style], settings)
    losses = [e.loss for e in run if isinstance(e, Progress)]
    assert all(np.isfinite(losses)) and len(losses) == 11
    first_scale = losses[:8]
    assert first_scale[-1] < first_scale[0]
    assert run.image().shape == (3, 96, 96)  # the astronaut photo is square
