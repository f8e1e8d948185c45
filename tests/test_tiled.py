"""Tiled evaluation of the objective (docs/tiling.md): the tiles' features, losses and gradient
are the whole image's, up to float rounding, near every edge and corner, for every loss, pooling and
depth; a run with tiles makes the image of a run without; auto tiles only the scales that do not fit.

Exactness is checked in float64 on a narrow VGG-19 (the real layer structure, paddings and pooling
with an eighth of the channels, random weights), where rounding is ~1e-15 and any geometric mistake
(a misaligned pool, a short margin, replicate padding inside the image) shows as an O(1) error;
and once in float32 with the real weights and photos.
"""

from __future__ import annotations

import math

import pytest
import torch

from batchstyle.engine import Speed, StyleSettings, Stylizer
from batchstyle.engine.layers import CONV_SHAPES, LAYER_INDEX
from batchstyle.engine.losses import ContentLoss, GramStyleLoss, TVLoss, W2StyleLoss
from batchstyle.engine.memory import MemoryModel, auto_core, tile_core
from batchstyle.engine.objective import Objective, Weighted
from batchstyle.engine.speed import parse_tile
from batchstyle.engine.tiled_objective import TiledObjective, whole_features
from batchstyle.engine.tile_grid import alignment, largest_box, margin_for, reach, spans, tile_grid
from batchstyle.engine.vgg import VGGFeatures

from support.narrow import ALL_STYLE, grid, indices, narrow_vgg, narrow_weights, relative

FP32 = Speed(precision="fp32", memory_format="contiguous")


# --- geometry ------------------------------------------------------------------------------------

def test_receptive_fields_strides_and_margins_are_those_of_the_reference():
    fields = {name: (reach(LAYER_INDEX[name])[0] + reach(LAYER_INDEX[name])[1] + 1, reach(LAYER_INDEX[name])[2])
              for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")}
    assert fields == {"relu1_1": (3, 1), "relu2_1": (10, 2), "relu3_1": (24, 4), "relu4_1": (68, 8),
                      "relu4_2": (84, 8), "relu5_1": (156, 16)}
    assert reach(LAYER_INDEX["relu5_1"])[:2] == (70, 85)  # feature i covers 16i - 70 .. 16i + 85
    assert margin_for(indices(("relu4_2", *ALL_STYLE))) == 80 and alignment(indices(ALL_STYLE)) == 16
    assert margin_for(indices(("relu4_2",))) == 40 and margin_for(indices(("relu3_1",))) == 12


@pytest.mark.parametrize("height, width, core", [(211, 197, 32), (100, 100, 48), (1000, 601, 512), (17, 300, 64)])
def test_cores_partition_the_image_and_every_layer(height, width, core):
    layers = ("relu4_2", *ALL_STYLE)
    tiles = grid(height, width, core, layers)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for t in tiles:
        covered[t.rows[0]:t.rows[1], t.cols[0]:t.cols[1]] += 1
        assert all(v % 16 == 0 for v in (*t.rows, *t.cols) if v not in (height, width))
        assert t.rows[1] - t.rows[0] <= core and t.cols[1] - t.cols[0] <= core and t.box_pixels > 0
        assert t.box_rows == (max(0, t.rows[0] - 80), min(height, t.rows[1] + 80))
    assert covered.eq(1).all()
    for stride in (1, 2, 4, 8, 16):
        owned = torch.zeros(height // stride, width // stride, dtype=torch.int32)
        for t in tiles:
            owned[t.where(stride)] += 1
        assert owned.eq(1).all()
    assert spans(1000, 512, 16) == [(0, 496), (496, 1000)]  # about equal pieces, cut on the 16 px grid


# --- exactness -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["max", "average", "l2"])
def test_tile_features_are_the_whole_image_features_at_every_edge_and_corner(pooling):
    """Tiles whose boxes end inside the image on every side, on some sides, and at the corners,
    of an odd-sized image: every layer's assembled cores equal the whole image's activations (in
    float32, where a misplaced pixel would be an O(1) error; measured: equal bit for bit)."""
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
    model = VGGFeatures(narrow_weights(torch.float32), layers, pooling=pooling)
    x = torch.rand(1, 3, 288, 277, generator=torch.Generator().manual_seed(1))
    tiles = grid(288, 277, 96, layers)
    inner = [t for t in tiles if 0 < t.box_rows[0] and t.box_rows[1] < 288 and 0 < t.box_cols[0]
             and t.box_cols[1] < 277]
    assert inner, "some tile must be padded by its margin alone"
    tiled, whole = whole_features(model, x, layers, tiles, indices(layers)), model(x, layers)
    for i in indices(layers):
        assert tiled[i].shape == whole[i].shape
        assert relative(tiled[i], whole[i]) < 1e-6, (pooling, i)


def objectives(model, layers, content_layers, style_loss, tiles, dtype):
    """The whole and the tiled objective of two images with their own weights and content targets."""
    gen = torch.Generator().manual_seed(2)
    height, width = tiles[0].height, tiles[0].width
    content = model(torch.rand(2, 3, height, width, generator=gen, dtype=dtype), layers)
    style = model(torch.rand(1, 3, height + 13, width - 7, generator=gen, dtype=dtype), layers)
    loss_cls = {"gram": GramStyleLoss, "w2": W2StyleLoss}[style_loss]
    terms = [Weighted(LAYER_INDEX[n], ContentLoss(content[LAYER_INDEX[n]]), torch.tensor([5.0, 0.5]))
             for n in content_layers]
    terms += [Weighted(i, loss_cls(loss_cls.statistics(style[i])), torch.tensor([1.0, 3.0]) / (k + 1))
              for k, i in enumerate(indices(layers)) if layers[k] not in content_layers]
    terms.append(Weighted("input", TVLoss(), torch.tensor([2.0, 0.1])))
    return Objective(model, terms, layers), TiledObjective(model, terms, layers, tiles)


@pytest.mark.parametrize("style_loss, pooling, content_layers, size, core", [
    ("gram", "max", ("relu4_2",), (113, 97), 64),  # cores of 64 and 49 px down, 48 and 49 across
    ("w2", "average", ("relu2_1", "relu5_1"), (97, 130), 80),  # 48 and 49 down, 64 and 66 across
    ("gram", "l2", ("relu3_1",), (87, 99), 48),  # relu4_1 deepest: 32 px margins on an 8 px grid; 40 and 47 down, 32, 32 and 35 across
])
def test_the_tiled_gradient_is_the_whole_image_gradient(style_loss, pooling, content_layers, size, core):
    """float64: losses and gradient within 1e-6 (measured ~1e-14) for two images with their own
    weights and targets, odd sizes and unequal cores; evaluate() gives the same losses."""
    style_layers = ALL_STYLE if "relu3_1" not in content_layers else ("relu1_1", "relu2_1", "relu4_1")
    layers = tuple(dict.fromkeys(content_layers + style_layers))
    model = VGGFeatures(narrow_weights(), layers, pooling=pooling).double()
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    whole, tiled = objectives(model, layers, content_layers, style_loss, grid(*size, core, layers), torch.float64)
    (losses, gradient), (tiled_losses, tiled_gradient) = whole(x), tiled(x)
    assert len(tiled.tiles) >= 4
    assert relative(tiled_losses, losses) < 1e-6 and relative(tiled_gradient, gradient) < 1e-6
    assert relative(tiled.evaluate(x), losses) < 1e-6
    assert tiled_gradient.is_contiguous()  # L-BFGS flattens it


def test_a_zero_content_difference_has_the_gradient_of_autograds_abs():
    """At the content image itself d = 0 everywhere: sign(0) = 0 as autograd's abs, tiled as whole."""
    layers = ("relu4_2", *ALL_STYLE)
    model = VGGFeatures(narrow_weights(), layers).double()
    whole, tiled = objectives(model, layers, ("relu4_2",), "gram", grid(100, 90, 64, layers), torch.float64)
    content = whole.terms[0].loss.target
    x = torch.rand(2, 3, 100, 90, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert model(x, layers)[LAYER_INDEX["relu4_2"]].equal(content)  # the same draw: x is the content
    assert relative(tiled(x)[1], whole(x)[1]) < 1e-6


def test_float32_tiles_with_the_real_weights_and_photos(real_weights, demo_images):
    from batchstyle.engine.images import load_image
    from batchstyle.engine.pixels import tensor_at

    layers = ("relu4_2", *ALL_STYLE)
    model = VGGFeatures(real_weights.tensors, layers)
    photo = tensor_at(load_image(demo_images / "content" / "chelsea_cat.jpg"), 110, 73)
    painting = tensor_at(load_image(demo_images / "styles" / "van_gogh_starry_night.jpg"), 96, 60)
    content, style = model(photo, layers), model(painting, layers)
    terms = [Weighted(22, ContentLoss(content[22]), torch.tensor([5.0]))]
    terms += [Weighted(i, GramStyleLoss(gram), torch.tensor([w])) for i, gram, w in
              zip(indices(ALL_STYLE), [GramStyleLoss.statistics(style[i]) for i in indices(ALL_STYLE)],
                  (0.75, 0.19, 0.047, 0.012, 0.003))]
    terms.append(Weighted("input", TVLoss(), torch.tensor([2.0])))
    x = (photo + 0.1 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    losses, gradient = Objective(model, terms, layers)(x)
    tiles = grid(73, 110, 64, layers)
    tiled_losses, tiled_gradient = TiledObjective(model, terms, layers, tiles)(x)
    assert len(tiles) == 4
    assert relative(tiled_losses, losses) < 1e-5 and relative(tiled_gradient, gradient) < 1e-4


def test_tiled_targets_are_the_whole_images_targets(photo):
    from batchstyle.engine.targets import TargetCache, Targets

    stylizer = Stylizer(narrow_vgg(torch.float32), ["cpu"], speed=FP32)
    settings = StyleSettings(style_loss="w2")
    model = stylizer.features(("relu4_2", *ALL_STYLE))
    targets = Targets(model, TargetCache(), stylizer.autocast, torch.contiguous_format, "fp32")
    style, tiles = photo(140, 110, seed=5), grid(110, 140, 64, ("relu4_2", *ALL_STYLE))
    whole = targets.style(style, "s", (140, 110), settings)
    tiled = targets.style(style, "s", (140, 110), settings, tiles)
    for (mean, second), (tiled_mean, tiled_second) in zip(whole, tiled):
        assert relative(tiled_mean, mean) < 1e-5 and relative(tiled_second, second) < 1e-5
    assert targets.cache.misses == 2  # tiled statistics are kept apart from whole ones
    images = torch.rand(2, 3, 110, 140, generator=torch.Generator().manual_seed(6))
    whole, tiled = targets.content(images, ("relu4_2",)), targets.content(images, ("relu4_2",), tiles)
    assert relative(tiled[22], whole[22]) < 1e-5


def test_under_bf16_the_tiles_gram_sums_stay_float32_as_the_whole_images_do(photo):
    """Only the network runs in bfloat16: the style statistics and the objective's sums over the tiles
    are float32 matmuls of its activations, as for the whole image, so tiles cost no precision."""
    from batchstyle.engine.targets import TargetCache, Targets

    stylizer = Stylizer(narrow_vgg(torch.float32), ["cpu"], speed=Speed(precision="bf16", memory_format="contiguous"))
    layers = ("relu4_2", *ALL_STYLE)
    model = stylizer.features(layers)
    targets = Targets(model, TargetCache(), stylizer.autocast, torch.contiguous_format, "bf16")
    style, tiles = photo(140, 110, seed=5), grid(110, 140, 64, layers)
    for whole, tiled in zip(targets.style(style, "s", (140, 110), StyleSettings()),
                            targets.style(style, "s", (140, 110), StyleSettings(), tiles)):
        assert whole.dtype == tiled.dtype == torch.float32
        assert relative(tiled, whole) < 2e-3  # bf16 activations of the tiles against the whole image's
    terms = [Weighted(i, GramStyleLoss(torch.zeros(CONV_SHAPES[i - 1][0] // 8, CONV_SHAPES[i - 1][0] // 8)),
                      torch.tensor([1.0])) for i in indices(ALL_STYLE)]
    objective = TiledObjective(model, terms, layers, tiles, autocast=stylizer.autocast)
    sums = objective._pass_one(torch.rand(1, 3, 110, 140, generator=torch.Generator().manual_seed(7)),
                               model, stylizer.autocast)
    assert all(s.dtype == torch.float32 for term_sums in sums for s in term_sums)


# --- runs and the tile option ----------------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / (a - b).pow(2).mean().item())


@pytest.mark.parametrize("optimizer, memory_format", [("adam", "contiguous"), ("lbfgs", "channels_last")])
def test_a_multiscale_run_with_tiles_makes_the_image_of_a_run_without(photo, optimizer, memory_format):
    """Three scales, the last two tiled, in float32: the same losses and the same image up to
    rounding (Adam turns rounding-sized gradient differences into steps of up to its step size:
    PSNR above 40 dB). L-BFGS on NHWC images flattens the gradient, which must be contiguous."""
    speed = FP32.replace(memory_format=memory_format)
    stylizer = Stylizer(narrow_vgg(torch.float32), ["cpu"], speed=speed)
    settings = StyleSettings(end_scale=96, min_scale=48, initial_iterations=2, iterations=2, optimizer=optimizer,
                             content_weight=5)
    content, style = photo(96, 72, seed=7), photo(90, 90, seed=8)
    whole = stylizer.run(content, [style], settings, tile="off")
    tiled = stylizer.run(content, [style], settings, tile=64)
    losses = [[e.loss for e in run if hasattr(e, "loss")] for run in (whole, tiled)]
    assert [s.size for s in whole.ladder] == [(48, 36), (68, 51), (96, 72)]
    assert tiled.current_tiles is not None and len(tiled.current_tiles) == 4 and whole.current_tiles is None
    assert losses[1][0] == losses[0][0]  # the first scale fits one tile: it runs whole
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert psnr(tiled.image(), whole.image()) > 40


def test_auto_tiles_only_the_scales_that_do_not_fit(random_weights, monkeypatch):
    """With a budget that the top scale does not fit whole, auto tiles it (as large as fits) and
    keeps the lower scales whole; off never tiles; a size tiles what is larger than it."""
    import batchstyle.engine.memory as memory
    from support.photos import make_photo

    stylizer = Stylizer(random_weights, ["cpu"], speed=FP32)
    run = stylizer.run(make_photo(64, 48), [make_photo(64, 64, 1)], StyleSettings(end_scale=2048, min_scale=512))
    model = memory.model_for("fp32")
    budget = model.whole_bytes(1448 * 1086) * 1.01  # the scale below the top fits, the top does not
    monkeypatch.setattr(memory, "memory_budget", lambda device: budget)
    plans = {scale.long_side: run.tiles(scale.size) for scale in run.ladder}
    assert [side for side, tiles in plans.items() if tiles] == [2048]
    assert model.tiled_bytes(2048 * 1536, max(t.box_pixels for t in plans[2048])) <= budget
    assert tile_core("off", 9000, 9000, 1, "fp32", ["cpu"], 80, 16) is None
    assert tile_core(500, 1000, 400, 1, "fp32", ["cpu"], 80, 16) == 496
    assert tile_core(512, 512, 400, 1, "fp32", ["cpu"], 80, 16) is None  # one tile: the whole image


def test_auto_core_against_a_budget():
    model = MemoryModel(base=1e9, whole=3000, state=200, tile=3000)
    assert auto_core(1000, 1000, 1, model, 5e9, 80, 16) is None

    def box(core: int, side: int = 4096) -> int:
        return largest_box(tile_grid(side, side, core, 80, 16))

    core = auto_core(4096, 4096, 1, model, 8e9, 80, 16)
    assert core % 16 == 0 and model.tiled_bytes(4096**2, box(core)) <= 8e9
    # as large as fits: every coarser grid (larger cores) does not
    assert all(model.tiled_bytes(4096**2, box(c)) > 8e9 for c in range(core + 16, 4097, 16) if box(c) != box(core))
    assert auto_core(4096, 4096, 2, model, 8e9, 80, 16) < core  # a group of two has half the room each
    assert auto_core(40000, 40000, 1, model, 8e9, 80, 16) == 128  # nothing fits: the smallest tiles


def test_the_tile_option_reads_auto_off_or_pixels():
    assert [parse_tile(v) for v in ("auto", " OFF ", "512", "512px", 768)] == ["auto", "off", 512, 512, 768]
    for bad in ("32", "big", True, -5):
        with pytest.raises(ValueError, match="tile must be auto, off or a tile size in pixels"):
            parse_tile(bad)
    assert Speed(tile="1024").tile == 1024 and "tile=1024" in Speed(tile=1024).label()
    assert Speed.from_dict(Speed(tile=640).to_dict()).tile == 640


def test_the_cpu_budget_keeps_within_the_address_space_limit(monkeypatch):
    import resource

    import batchstyle.engine.memory as memory

    free = memory.memory_budget(torch.device("cpu"))
    assert 0 < free
    monkeypatch.setattr(resource, "getrlimit", lambda which: (2 << 30, resource.RLIM_INFINITY))
    assert 0 <= memory.memory_budget(torch.device("cpu")) < min(free, 2 << 30)


# --- the batch runner -------------------------------------------------------------------------------

@pytest.mark.parametrize("tile, used, how", [(64, 48, "with tiles of 48 px"), ("off", 96, "whole, at 96 px")])
def test_the_engine_backend_says_which_tile_ran_out_of_memory(random_weights, photo, monkeypatch, tile, used, how):
    """The scheduler retries with tiles half of ``tile_used``: the backend reports the tile core, or
    the scale's long side when it ran whole (cores of at most 64 px across 96 px: two of 48)."""
    import io
    from pathlib import Path

    from batchstyle.batch.engine_backend import EngineBackend
    from batchstyle.batch.items import Item
    from batchstyle.batch.messages import ItemFailure, ItemInputs
    from batchstyle.engine import objective, tiled_objective

    def out_of_memory(self, images):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1000000000000 bytes")

    monkeypatch.setattr(objective.Objective, "__call__", out_of_memory)
    monkeypatch.setattr(tiled_objective.TiledObjective, "__call__", out_of_memory)
    weights = {k: v.numpy() for k, v in random_weights.tensors.items()}
    backend = EngineBackend(weights, "random", 0, None, FP32.to_dict())

    def png(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    settings = StyleSettings(end_scale=96, min_scale=96, initial_iterations=2)
    item = Item(2, Path("a.png"), (Path("s.png"),), settings, "a__s.png", id="a")
    ((item_id, failure),) = backend.run([ItemInputs(item, png(photo(96, 72)), [png(photo(64, 64, 1))], tile=tile)])
    assert isinstance(failure, ItemFailure) and failure.kind == "oom" and failure.tile_used == used
    assert failure.message == f"out of memory on cpu {how}"
