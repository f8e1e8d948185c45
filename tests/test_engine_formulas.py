"""The engine's constants and formulas, each checked against docs/engine.md on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from batchstyle.engine.losses import (GramStyleLoss, TVLoss, W2StyleLoss, default_style_layer_weights, gram,
                                      normalized, scaled_mse, sqrtm)
from batchstyle.engine.schedule import scale_ladder, scale_schedule, size_to_fit, style_size_at
from batchstyle.engine.optim import EMA, AdamMoments, make_adam
from batchstyle.engine.settings import StyleSettings, parse_layer_spec, resolve_end_scale
from batchstyle.engine.vgg import LAYER_INDEX, POOLING_SCALES, VGGFeatures, device_plan, min_input_size


def test_scaled_mse_gradient_has_unit_l1_norm_when_all_differences_are_equal():
    d = torch.tensor([0.5, -0.5, 0.5, -0.5, 0.5, 0.5], requires_grad=True)
    loss = scaled_mse(d)
    loss.backward()
    assert loss.item() == pytest.approx((d**2).sum().item() / (d.abs().sum().item() + 1e-8))
    assert d.grad.abs().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(d.grad, torch.sign(d.detach()) / 6)


def test_scaled_mse_gradient_norm_is_only_approximately_one_otherwise():
    d = torch.tensor([3.0, -0.1, 0.2, 1.0], requires_grad=True)
    scaled_mse(d).backward()
    a, b = d.detach().abs().sum(), (d.detach() ** 2).sum()
    expected = 2 * d.detach() / a - b * torch.sign(d.detach()) / a**2
    assert torch.allclose(d.grad, expected, atol=1e-6)
    assert d.grad.abs().sum().item() != pytest.approx(1.0, abs=1e-3)


def test_gram_is_normalised_by_positions_only():
    feats = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    mat = feats.reshape(2, 12)
    assert torch.allclose(gram(feats)[0], mat @ mat.T / 12)
    # twice the area with the same statistics gives the same Gram matrix
    assert torch.allclose(gram(feats.repeat(1, 1, 2, 1)), gram(feats))


def test_style_layer_weights_are_256_64_16_4_1_over_341():
    weights = normalized(default_style_layer_weights(5))
    assert weights == pytest.approx([256 / 341, 64 / 341, 16 / 341, 4 / 341, 1 / 341])
    assert weights[0] == pytest.approx(0.750733, abs=1e-6)
    assert weights[4] == pytest.approx(0.00293255, abs=1e-8)


def test_style_blend_weights_are_normalised_by_absolute_sum_keeping_sign():
    assert StyleSettings().blend_weights(3) == pytest.approx([1 / 3] * 3)
    assert StyleSettings(style_weights=(3, 1)).blend_weights(2) == pytest.approx([0.75, 0.25])
    assert StyleSettings(style_weights=(2, -2)).blend_weights(2) == pytest.approx([0.5, -0.5])
    with pytest.raises(ValueError, match="2 style weights were given for 3 style images"):
        StyleSettings(style_weights=(1, 2)).blend_weights(3)


def test_pooling_factors(random_weights):
    x = torch.rand(1, 3, 32, 32)
    feats = {}
    for pooling in ("max", "average", "l2"):
        model = VGGFeatures(random_weights.tensors, ["pool1", "relu1_2"], pooling=pooling)
        out = model(x, ["relu1_2", "pool1"])
        feats[pooling] = (out[LAYER_INDEX["relu1_2"]], out[LAYER_INDEX["pool1"]])
    relu, _ = feats["max"]
    assert torch.allclose(feats["max"][1], F.max_pool2d(relu, 2))
    assert torch.allclose(feats["average"][1], F.avg_pool2d(relu, 2) * 2.0, atol=1e-5)
    l2 = (F.avg_pool2d(relu**2, 2) * 4).sqrt()  # sqrt of the sum of the four squares
    assert torch.allclose(feats["l2"][1], l2 * 0.78, atol=1e-4)
    assert POOLING_SCALES == {"max": 1.0, "average": 2.0, "l2": 0.78}


def test_first_conv_pads_by_replication_and_the_rest_by_zeros(random_weights):
    model = VGGFeatures(random_weights.tensors, ["relu1_2"])
    assert model.layers[0].padding_mode == "replicate"
    assert model.layers[2].padding_mode == "zeros"


def test_extractor_is_truncated_after_the_deepest_layer(random_weights):
    model = VGGFeatures(random_weights.tensors, ["relu1_1", "relu4_2"])
    assert len(model.layers) == LAYER_INDEX["relu4_2"] + 1 == 23
    with pytest.raises(ValueError, match="deeper than this extractor"):
        model(torch.rand(1, 3, 32, 32), ["relu5_1"])


def test_layer_names_match_torchvision_indices():
    assert [LAYER_INDEX[n] for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")] == \
        [1, 6, 11, 20, 22, 29]
    assert LAYER_INDEX["conv5_4"] == 34 and LAYER_INDEX["pool5"] == 36
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'relu6_1'"):
        VGGFeatures({}, ["relu6_1"])


def test_minimum_input_size(random_weights):
    assert min_input_size(LAYER_INDEX["relu4_2"]) == 8
    assert min_input_size(LAYER_INDEX["relu5_1"]) == 16
    model = VGGFeatures(random_weights.tensors, ["relu5_1"])
    with pytest.raises(ValueError, match="needs at least 16x16"):
        model(torch.rand(1, 3, 15, 40))
    assert model(torch.rand(1, 3, 16, 16))[LAYER_INDEX["relu5_1"]].shape == (1, 512, 1, 1)


def test_content_and_activation_requested_at_a_conv_is_not_overwritten_by_its_relu(random_weights):
    model = VGGFeatures(random_weights.tensors, ["conv1_1", "relu1_1"])
    out = model(torch.rand(1, 3, 16, 16), ["conv1_1", "relu1_1"])
    assert (out[0] < 0).any()  # the raw conv output keeps its negative values
    assert torch.equal(out[1], out[0].relu())


def test_device_plan_default_and_explicit_split():
    assert device_plan(["cpu"]) == []
    assert device_plan(["cpu", "cpu"]) == [5]  # conv2_1, as the reference
    assert device_plan(["cpu"] * 3, ["conv3_1", "conv4_3"]) == [10, 23]
    with pytest.raises(ValueError, match="need 2 split layer"):
        device_plan(["cpu"] * 3, ["conv3_1"])
    with pytest.raises(ValueError, match="network order"):
        device_plan(["cpu"] * 3, ["conv4_1", "conv3_1"])


@pytest.mark.parametrize("end, expected", [
    (512, [128, 181, 256, 362, 512]),
    (1024, [128, 181, 256, 362, 512, 724, 1024]),
    (2896, [128, 181, 256, 362, 512, 724, 1024, 1448, 2048, 2896]),
    (768, [136, 192, 272, 384, 543, 768]),
    (200, [141, 200]),
    (100, [100]),
])
def test_scale_schedules_of_the_spec(end, expected):
    assert scale_schedule(end, 128) == expected


def test_the_ladder_gives_content_sizes_that_keep_aspect_and_upscale_with_their_iterations():
    ladder = scale_ladder((2896, 2172), StyleSettings(end_scale=512))
    assert [s.size for s in ladder] == [(128, 96), (181, 136), (256, 192), (362, 272), (512, 384)]
    assert [s.long_side for s in ladder] == [128, 181, 256, 362, 512]
    assert [s.iterations for s in ladder] == [1000, 500, 500, 500, 500]
    ladder = scale_ladder((100, 300), StyleSettings(end_scale=256, initial_iterations=7, iterations=3))
    assert [s.size for s in ladder] == [(43, 128), (60, 181), (85, 256)]
    assert [s.iterations for s in ladder] == [7, 3, 3]
    assert sum(s.units for s in ladder) == 43 * 128 * 7 + 60 * 181 * 3 + 85 * 256 * 3


def test_style_sizes_per_scale_are_never_upscaled():
    s = StyleSettings()
    assert style_size_at((1000, 500), 256, s) == (256, 128)
    assert style_size_at((200, 100), 512, s) == (200, 100)  # smaller than the scale: native size
    assert style_size_at((1000, 500), 256, s.replace(style_scale=0.5)) == (128, 64)
    assert style_size_at((1000, 500), 256, s.replace(style_size=300)) == (300, 150)
    assert style_size_at((1000, 500), 4096, s.replace(style_size=300)) == (300, 150)


def test_end_scale_plus_form_keeps_the_square_pixel_count():
    assert resolve_end_scale("1024+", (4000, 3000)) == 1182
    assert resolve_end_scale("1024+", (1000, 1000)) == 1024
    assert resolve_end_scale(700, (4000, 3000)) == 700
    assert size_to_fit((4000, 3000), 1182, scale_up=True) == (1182, 886)


def test_ema_is_bias_corrected():
    first = torch.full((2, 2), 3.0)
    ema = EMA(first, 0.99)
    assert torch.allclose(ema.get(), first)  # the first sample alone, not 1% of it
    ema.update(torch.full((2, 2), 5.0))
    expected = (0.99 * 0.01 * 3 + 0.01 * 5) / (1 - 0.99**2)
    assert torch.allclose(ema.get(), torch.full((2, 2), expected))
    for _ in range(3000):
        ema.update(torch.full((2, 2), 7.0))
    assert torch.allclose(ema.get(), torch.full((2, 2), 7.0), atol=1e-4)


def test_adam_moments_are_resized_bicubic_and_bilinear_and_keep_the_step_count():
    x = torch.rand(1, 3, 8, 12, requires_grad=True)
    opt = make_adam(x, 0.02, None)
    for _ in range(7):
        opt.zero_grad()
        (x.sin() * torch.randn_like(x)).sum().backward()
        opt.step()
    moments = AdamMoments.of(opt, x)
    assert moments.step == 7
    grown = moments.resized(11, 17)
    assert torch.allclose(grown.exp_avg, F.interpolate(moments.exp_avg, (11, 17), mode="bicubic"))
    assert torch.allclose(grown.exp_avg_sq, F.interpolate(moments.exp_avg_sq, (11, 17), mode="bilinear"))
    assert (grown.exp_avg_sq >= 0).all() and grown.step == 7
    y = torch.rand(1, 3, 11, 17, requires_grad=True)
    warm = make_adam(y, 0.02, moments)
    assert float(warm.state[y]["step"]) == 7
    assert warm.param_groups[0]["betas"] == (0.9, 0.999) and warm.param_groups[0]["lr"] == 0.02


def test_bilinear_resize_of_second_moment_is_clamped_at_zero():
    moments = AdamMoments(torch.zeros(1, 1, 4, 4), torch.tensor([[[[0, 0, 0, 0], [0, 5, 0, 0],
                                                                    [0, 0, 0, 0], [0, 0, 0, 0]]]]).float(), 3)
    grown = moments.resized(7, 7)
    assert grown.exp_avg_sq.min() >= 0


def test_tv_loss_is_the_mean_of_right_and_down_squared_differences():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # right diffs (replicate pad): 1, 0, 2, 0 ; down diffs: 2, 3, 0, 0
    expected = ((1 + 0 + 4 + 0) + (4 + 9 + 0 + 0)) / 4
    assert TVLoss()(x).item() == pytest.approx(expected)


def test_newton_schulz_square_root_and_its_backward():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    spd = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    root = sqrtm(spd, 30)
    assert torch.allclose(root @ root, spd, atol=1e-6)
    # the iterative Lyapunov backward agrees with autograd through an eigendecomposition
    x = spd.clone().requires_grad_()
    g = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    g = g + g.T  # a symmetric upstream gradient, as every loss of symmetric matrices gives
    (sqrtm(x, 30) * g).sum().backward()
    y = spd.clone().requires_grad_()
    vals, vecs = torch.linalg.eigh(y)
    ((vecs @ torch.diag(vals.sqrt()) @ vecs.T) * g).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-5)


def test_w2_loss_is_zero_for_the_target_distribution_and_positive_otherwise():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 8, 10, 10, generator=gen)
    loss = W2StyleLoss(W2StyleLoss.statistics(feats))
    assert abs(loss(feats).item()) < 1e-3
    assert loss(feats * 2 + 1).item() > 0.5


def test_w2_blends_raw_moments_not_covariances():
    a = torch.zeros(1, 2, 4, 4)
    b = torch.ones(1, 2, 4, 4)
    mean, second = W2StyleLoss.blend([W2StyleLoss.statistics(a), W2StyleLoss.statistics(b)], [0.5, 0.5])
    loss = W2StyleLoss((mean, second))
    # mixture of two point masses at 0 and 1: mean 0.5, variance 0.25 (a covariance blend would give 0)
    assert torch.allclose(loss.cov.diagonal(dim1=-2, dim2=-1), torch.full((1, 2), 0.25 + 1e-4))


def test_every_style_loss_setting_has_its_loss_class():
    from batchstyle.engine.losses import STYLE_LOSS_CLASSES
    from batchstyle.engine.settings import STYLE_LOSSES

    assert tuple(STYLE_LOSS_CLASSES) == STYLE_LOSSES


def test_gram_style_blend_is_weighted_sum_of_grams():
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    target = GramStyleLoss.blend([gram(a), gram(b)], [0.25, 0.75])
    assert torch.allclose(target, 0.25 * gram(a) + 0.75 * gram(b))


def test_layer_spec_parsing():
    assert parse_layer_spec("relu1_1:256, relu2_1:64") == (("relu1_1", "relu2_1"), (256.0, 64.0))
    assert parse_layer_spec("relu3_1 relu4_1") == (("relu3_1", "relu4_1"), None)
    with pytest.raises(ValueError, match="every layer or to none"):
        parse_layer_spec("relu1_1:1,relu2_1")


def test_settings_validation_messages():
    with pytest.raises(ValueError, match="init must be one of content, gray, uniform, normal, style_stats"):
        StyleSettings(init="noise")
    with pytest.raises(ValueError, match="end_scale must be a whole number of pixels or N\\+"):
        StyleSettings(end_scale="big")
    with pytest.raises(ValueError, match="style_layer_weights has 2 values for 5 layers"):
        StyleSettings(style_layer_weights=(1, 2))
    assert StyleSettings(end_scale="1024+").end_scale == "1024+"
    assert StyleSettings(end_scale="768").end_scale == 768
    assert math.isclose(StyleSettings(content_weight=1).content_weight, 1.0)
