"""Masks in the engine: a style per region through guided Gram matrices (and guided W2 moments).

The guided statistics are checked against a direct computation; one all-white mask gives exactly
the unmasked image; the tiled objective with masks is the whole image's (float64); a group gives
each masked job what it gets alone; checkpoints belong to their masks; bad masks are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from batchstyle.engine import Checkpoint, Job, Progress, ScaleFinished, StyleSettings, Stylizer
from batchstyle.engine.layers import LAYER_INDEX
from batchstyle.engine.losses import ContentLoss, GuidedGramStyleLoss, GuidedW2StyleLoss, TVLoss
from batchstyle.engine.masks import MaskError, guides_at, masks_from_segmentation, parse_colors, region_notes
from batchstyle.engine.objective import Objective, Weighted
from batchstyle.engine.tiled_objective import TiledObjective
from batchstyle.engine.tile_grid import reach
from batchstyle.engine.vgg import VGGFeatures

from support.narrow import ALL_STYLE, grid, narrow_weights, relative

TINY = StyleSettings(end_scale=48, min_scale=32, initial_iterations=6, iterations=4)
FP32_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def split_masks(width: int, height: int, soft: int = 0) -> list[Image.Image]:
    """Left and right halves (a linear ramp of ``soft`` px across the middle)."""
    x = np.arange(width, dtype=np.float64)
    left = np.clip((width / 2 - x) / max(soft, 1) + 0.5, 0, 1) if soft else (x < width // 2).astype(np.float64)
    row = np.round(left * 255).astype(np.uint8)
    left_mask = np.repeat(row[None], height, 0)
    return [Image.fromarray(left_mask, "L"), Image.fromarray(255 - left_mask, "L")]


def test_the_guided_gram_matrix_is_the_guide_weighted_second_moment_over_the_regions_mass():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    guides = torch.rand(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    targets = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    loss = GuidedGramStyleLoss(targets, guides, weights, min_mass=0.0)
    stats = loss.moments(loss.sums(feats), 0)
    expected = torch.zeros(2, 3, 5, 5, dtype=torch.float64)
    for n in range(2):
        for r in range(3):
            for y in range(6):
                for x in range(7):
                    f = feats[n, :, y, x] * guides[n, r, y, x]
                    expected[n, r] += torch.outer(f, f)
            expected[n, r] /= guides[n, r].square().sum()
    assert torch.allclose(stats, expected, rtol=1e-12)
    diff = expected - targets
    direct = (weights * diff.square().sum((-2, -1)) / (diff.abs().sum((-2, -1)) + 1e-8)).sum(-1)
    assert torch.allclose(loss(feats), direct, rtol=1e-12)


def test_the_guided_w2_loss_fits_a_gaussian_to_each_region_with_the_guides_weights():
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(1, 4, 5, 5, generator=gen, dtype=torch.float64)
    guides = torch.rand(1, 2, 5, 5, generator=gen, dtype=torch.float64)
    mean = torch.rand(1, 2, 4, generator=gen, dtype=torch.float64)
    target = (mean, torch.eye(4, dtype=torch.float64) + mean[..., :, None] * mean[..., None, :])
    loss = GuidedW2StyleLoss(target, guides, torch.tensor([[0.5, 0.5]], dtype=torch.float64), min_mass=0.0)
    mean, second = loss.moments(loss.sums(feats), 0)
    w = guides[0, 1].square().flatten()
    f = feats[0].flatten(1)
    assert torch.allclose(mean[0, 1], (f * w).sum(1) / w.sum(), rtol=1e-12)
    assert torch.allclose(second[0, 1], (f * w) @ f.T / w.sum(), rtol=1e-12)
    assert loss(feats).shape == (1,) and torch.isfinite(loss(feats)).all()


def test_a_region_smaller_than_one_position_of_a_layer_is_left_out_there():
    feats = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    guides = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    guides[0, 0] = 1.0
    guides[0, 1, 0, 0] = 0.5  # mass 0.25: under one position
    loss = GuidedGramStyleLoss(torch.rand(1, 2, 3, 3, dtype=torch.float64), guides, torch.tensor([[0.5, 0.5]]).double())
    assert loss.regions.tolist() == [[0.5, 0.0]] and torch.isfinite(loss(feats)).all()
    empty = guides.clone()
    empty[0, 1] = 0.0
    assert torch.isfinite(GuidedGramStyleLoss(loss.target, empty, loss.regions.clone())(feats)).all()
    notes = region_notes([Image.new("L", (64, 48), 255), _dot(64, 48)], [(64, 48)], [("relu1_1", 1), ("relu5_1", 16)])
    assert len(notes) == 1 and "mask 2" in notes[0] and "relu5_1 at 64x48" in notes[0]


def _dot(width: int, height: int) -> Image.Image:
    image = Image.new("L", (width, height), 0)
    image.putpixel((3, 3), 255)
    return image


@pytest.mark.parametrize("style_loss", ["gram", "w2"])
def test_one_all_white_mask_gives_exactly_the_image_without_masks(tiny_stylizer, pair, style_loss):
    settings = TINY.replace(style_loss=style_loss)
    plain = tiny_stylizer.run(pair[0], [pair[1]], settings)
    list(plain)
    masked = tiny_stylizer.run(pair[0], [pair[1]], settings, masks=[Image.new("L", pair[0].size, 255)])
    list(masked)
    assert torch.equal(masked.image(), plain.image())


def guided_objectives(style_loss: str, size: tuple[int, int], core: int):
    """The whole and the tiled objective of two images, each with its own soft masks over two regions
    (one too small for the deepest layer) and its own targets, in float64 on the narrow network."""
    layers = ("relu4_2", *ALL_STYLE)
    model = VGGFeatures(narrow_weights(), layers).double()
    gen = torch.Generator().manual_seed(2)
    height, width = size
    content = model(torch.rand(2, 3, height, width, generator=gen, dtype=torch.float64), layers)
    styles = [model(torch.rand(1, 3, 70 + 9 * k, 64, generator=gen, dtype=torch.float64), layers) for k in range(2)]
    masks = [split_masks(width, height, soft=11), [_dot(width, height), Image.new("L", (width, height), 200)]]
    cls = {"gram": GuidedGramStyleLoss, "w2": GuidedW2StyleLoss}[style_loss]
    terms = [Weighted(22, ContentLoss(content[22]), torch.tensor([5.0, 0.5]))]
    for k, name in enumerate(ALL_STYLE):
        i = LAYER_INDEX[name]
        guides = torch.cat([torch.from_numpy(guides_at(m, (width, height), [reach(i)[2]])[0])[None] for m in masks])
        stats = [cls.statistics(s[i]) for s in styles]
        target = (torch.stack([s[0] for s in stats], 1), torch.stack([s[1] for s in stats], 1)) if style_loss == "w2" \
            else torch.stack(stats, 1)
        target = tuple(t.expand(2, *t.shape[1:]) for t in target) if style_loss == "w2" else target.expand(2, -1, -1, -1)
        terms.append(Weighted(i, cls(target, guides.double(), torch.tensor([[0.6, 0.4], [0.5, 0.5]]).double()),
                              torch.tensor([1.0, 3.0]) / (k + 1)))
    terms.append(Weighted("input", TVLoss(), torch.tensor([2.0, 0.1])))
    return Objective(model, terms, layers), TiledObjective(model, terms, layers, grid(height, width, core, layers))


@pytest.mark.parametrize("style_loss, size, core", [("gram", (113, 97), 64), ("w2", (97, 130), 80)])
def test_with_masks_the_tiled_gradient_is_the_whole_image_gradient(style_loss, size, core):
    whole, tiled = guided_objectives(style_loss, size, core)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (losses, gradient), (tiled_losses, tiled_gradient) = whole(x), tiled(x)
    assert len(tiled.tiles) >= 4
    assert relative(tiled_losses, losses) < 1e-6 and relative(tiled_gradient, gradient) < 1e-6
    assert relative(tiled.evaluate(x), losses) < 1e-6


def test_a_masked_run_with_tiles_makes_the_image_it_makes_whole(random_weights, pair):
    from batchstyle.engine import Speed

    stylizer = Stylizer(random_weights, devices=["cpu"], speed=Speed(precision="fp32", memory_format="contiguous"))
    settings, masks = TINY.replace(end_scale=128, min_scale=128), split_masks(*pair[0].size, soft=6)
    whole = stylizer.run(pair[0], [pair[1], pair[0]], settings, masks=masks)
    list(whole)
    tiled = stylizer.run(pair[0], [pair[1], pair[0]], settings, masks=masks, tile=64)
    assert list(tiled) and tiled.current_tiles
    assert torch.allclose(tiled.image(), whole.image(), atol=2e-3)


def test_the_masks_steer_where_each_style_goes(tiny_stylizer, pair):
    """Swapping the masks changes the image; masks of other jobs in a group do not change a job's."""
    styles = [pair[1], pair[0].rotate(90, expand=True)]
    masks = split_masks(*pair[0].size)
    one = tiny_stylizer.run(pair[0], styles, TINY, masks=masks)
    swapped = tiny_stylizer.run(pair[0], styles, TINY, masks=masks[::-1])
    list(one), list(swapped)
    assert not torch.allclose(one.image(), swapped.image(), atol=0.02)


def test_a_group_gives_each_masked_job_its_own_image(random_weights, pair):
    from batchstyle.engine import Speed

    stylizer = Stylizer(random_weights, devices=["cpu"], speed=Speed(precision="fp32", memory_format="contiguous"))
    styles = [pair[1], pair[0].rotate(90, expand=True)]
    jobs = [Job(pair[0], styles, TINY, masks=split_masks(*pair[0].size)),
            Job(pair[0], styles, TINY.replace(seed=3), masks=split_masks(*pair[0].size, soft=20)[::-1])]
    group = stylizer.run_group(jobs)
    events = list(group)
    assert sum(isinstance(e, ScaleFinished) for e in events) == 4
    for k, job in enumerate(jobs):
        alone = stylizer.run(job.content, job.styles, job.settings, masks=job.masks)
        list(alone)
        assert torch.allclose(group.image(k), alone.image(), **FP32_TOLERANCE), k
    with pytest.raises(ValueError, match="as many masks"):
        stylizer.run_group([jobs[0], Job(pair[0], styles, TINY)])


def test_a_checkpoint_belongs_to_its_masks_and_resumes_to_the_same_image(tiny_stylizer, pair):
    styles, masks = [pair[1], pair[0]], split_masks(*pair[0].size)
    settings = TINY.replace(end_scale=64)
    whole = tiny_stylizer.run(pair[0], styles, settings, masks=masks)
    list(whole)
    run = tiny_stylizer.run(pair[0], styles, settings, masks=masks)
    saved = next(e.checkpoint for e in run if isinstance(e, ScaleFinished))
    checkpoint = Checkpoint.from_bytes(saved.to_bytes())
    identity = tiny_stylizer.weights.identity
    assert checkpoint.fits(settings, identity, pair[0], styles, masks)
    assert not checkpoint.fits(settings, identity, pair[0], styles)
    assert not checkpoint.fits(settings, identity, pair[0], styles, masks[::-1])
    with pytest.raises(ValueError, match="checkpoint belongs to other"):
        tiny_stylizer.run(pair[0], styles, settings, checkpoint)
    resumed = tiny_stylizer.run(pair[0], styles, settings, checkpoint, masks=masks)
    assert [e.scale_index for e in resumed if isinstance(e, Progress)][0] == 1
    assert torch.equal(resumed.image(), whole.image())


def test_masks_that_do_not_fit_are_refused_with_what_to_do(tiny_stylizer, pair):
    content, styles = pair[0], [pair[1], pair[0]]
    with pytest.raises(MaskError, match=r"1 mask\(s\) for 2 style image\(s\)"):
        tiny_stylizer.run(content, styles, TINY, masks=[Image.new("L", content.size, 255)])
    with pytest.raises(MaskError, match=r"mask 2 is 60x60, not the shape of the content image \(60x45\)"):
        tiny_stylizer.run(content, styles, TINY, masks=[Image.new("L", (120, 90)), Image.new("L", (60, 60), 255)])
    with pytest.raises(MaskError, match="mask 1 is black everywhere"):
        tiny_stylizer.run(content, styles, TINY, masks=[Image.new("L", content.size, 0), Image.new("L", content.size, 9)])


def test_a_segmentation_gives_one_mask_per_listed_colour_and_refuses_unlisted_ones():
    seg = Image.new("RGB", (20, 10), "#ff0000")
    seg.paste((10, 250, 5), (12, 0, 20, 10))  # JPEG-like noise on green is forgiven
    left, right = masks_from_segmentation(seg, parse_colors("red; #00ff00"))
    assert np.asarray(left)[:, :12].min() == 255 and np.asarray(left)[:, 12:].max() == 0
    assert np.asarray(right).sum() == 255 * 8 * 10
    seg.putpixel((5, 5), (128, 0, 128))
    with pytest.raises(MaskError, match=r"1 pixel\(s\) of colours not listed .* #800080 at x=5, y=5"):
        masks_from_segmentation(seg, parse_colors("red;lime"), "seg.png")
    with pytest.raises(MaskError, match="'nocolour' is not a colour"):
        parse_colors("red;nocolour")
    with pytest.raises(MaskError, match="lists a colour twice"):
        parse_colors("red;#f00")
