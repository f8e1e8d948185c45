"""Loss terms: content, style (normalised Gram or Wasserstein-2 Gaussian), total variation.

Each loss is a small module whose ``forward`` reads like its formula (docs/engine.md, section Losses). Activations
are ``[N, C, H, W]`` and every loss returns ``[N]``: one value per image, so that images optimised
together in a group keep independent objectives (their sum's gradient is each image's own).
Targets are ``[N, ...]`` (one per image) or ``[1, ...]`` (shared).

The network losses see the activations only through sums over positions (``docs/tiling.md``).
Each says so in three steps, which tiles use: ``sums`` (additive over any partition of the
positions), ``moments`` (the statistics from the summed sums and the number of positions) and
``score`` (the loss of those statistics). ``forward`` on whole activations keeps its own arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def per_image_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over everything but the first dimension, ``[N, ...]`` -> ``[N]``.

    One image is summed as a whole, exactly as the reference does (same order, same bits). A
    tensor without an image dimension (0-d or 1-d) is summed to a scalar.
    """
    if t.dim() < 2:
        return t.sum()
    return t.sum()[None] if t.shape[0] == 1 else t.flatten(1).sum(1)


def error_sums(diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σd² and Σ|d| per image: all that the scaled MSE needs of ``diff``."""
    return per_image_sum(diff.pow(2)), per_image_sum(diff.abs())


def scaled_mse_of(squares: torch.Tensor, magnitudes: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The scaled MSE from its sums: Σd² / (Σ|d| + eps)."""
    return squares / magnitudes.add(eps)


def scaled_mse(diff: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Σd² / (Σ|d| + eps) per image: an MSE whose gradient has an L1 norm of about 1."""
    return scaled_mse_of(*error_sums(diff), eps)


def second_moment_sum(feats: torch.Tensor) -> torch.Tensor:
    """Σ_p f_p f_pᵀ over positions, per image: ``[N, C, h, w]`` -> ``[N, C, C]``."""
    mat = feats.flatten(-2)
    return mat @ mat.transpose(-2, -1)


def gram(feats: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the number of positions only: F Fᵀ / (h·w), per image."""
    return second_moment_sum(feats) / (feats.shape[-2] * feats.shape[-1])


def normalized(weights: Sequence[float]) -> list[float]:
    """Weights divided by the sum of their absolute values (signs are kept)."""
    total = sum(abs(w) for w in weights)
    return [w / total for w in weights]


def default_style_layer_weights(n_layers: int) -> list[float]:
    """The reference's 256:64:16:4:1, generalised: each layer weighs 4x the next deeper one."""
    return [4.0 ** (n_layers - 1 - i) for i in range(n_layers)]


EVERYWHERE = (slice(None), slice(None))  # the rows and columns of a whole layer


class ContentLoss(nn.Module):
    """Scaled MSE between the image's and the content's activations.

    ``where``: the rows and columns of the layer that ``feats`` hold (a tile's core), so that they
    meet the content's activations at the same positions.
    """

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target)

    def sums(self, feats: torch.Tensor, where: tuple[slice, slice] = EVERYWHERE) -> tuple[torch.Tensor, ...]:
        return error_sums(feats - self.target[..., where[0], where[1]])

    @staticmethod
    def moments(sums: tuple[torch.Tensor, ...], count: int) -> tuple[torch.Tensor, ...]:
        return sums

    def score(self, stats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return scaled_mse_of(*stats)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return scaled_mse(feats - self.target)


class GramStyleLoss(nn.Module):
    """Scaled MSE between Gram matrices; the target is the blend Σ w_k G(s_k)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target)

    @staticmethod
    def statistics(feats: torch.Tensor) -> torch.Tensor:
        return gram(feats)

    @staticmethod
    def sums(feats: torch.Tensor, where: tuple[slice, slice] = EVERYWHERE) -> tuple[torch.Tensor, ...]:
        return (second_moment_sum(feats),)

    @staticmethod
    def moments(sums: tuple[torch.Tensor, ...], count: int) -> torch.Tensor:
        return sums[0] / count

    @staticmethod
    def blend(stats: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
        return sum(s * w for s, w in zip(stats, weights))

    def score(self, stats: torch.Tensor) -> torch.Tensor:
        return scaled_mse(stats - self.target)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.score(self.statistics(feats))


# --- Wasserstein-2 between Gaussian fits (the 2023 loss) ------------------------------------------

W2_EPS = 1e-4
SQRTM_ITERS = 12


def _newton_schulz_sqrt(a: torch.Tensor, iters: int) -> torch.Tensor:
    """Coupled Newton–Schulz iteration for the principal square root of SPD matrices [..., C, C]."""
    norm = a.flatten(-2).norm(dim=-1)[..., None, None]
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype).expand_as(a)
    y, z = a / norm, eye
    for _ in range(iters):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt()


class _SqrtmNS(torch.autograd.Function):
    """Matrix square root with an iterative (Newton–Schulz) solution of the Lyapunov equation as backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, iters: int) -> torch.Tensor:
        s = _newton_schulz_sqrt(a, iters)
        ctx.save_for_backward(s)
        ctx.iters = iters
        return s

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (s,) = ctx.saved_tensors
        norm = s.flatten(-2).norm(dim=-1)[..., None, None]
        eye = torch.eye(s.shape[-1], device=s.device, dtype=s.dtype).expand_as(s)
        b, q = s / norm, grad / norm
        for k in range(ctx.iters):
            m = 3 * eye - b @ b
            bt = b.transpose(-2, -1)
            q = 0.5 * (q @ m - bt @ (bt @ q - q @ b))
            if k < ctx.iters - 1:
                b = 0.5 * b @ m
        return q / 2, None


def sqrtm(a: torch.Tensor, iters: int = SQRTM_ITERS) -> torch.Tensor:
    return _SqrtmNS.apply(a, iters)


class W2StyleLoss(nn.Module):
    """Squared 2-Wasserstein distance between Gaussian fits of the activations, averaged over channels.

    Several styles blend on raw moments (mean and second moment), i.e. the Gaussian fit of the
    mixture of the style distributions.
    """

    def __init__(self, target: tuple[torch.Tensor, torch.Tensor]):
        super().__init__()
        mean, second = target
        self.register_buffer("mean", mean)
        cov = second - mean[..., :, None] * mean[..., None, :]
        cov = cov + W2_EPS * torch.eye(cov.shape[-1], device=cov.device, dtype=cov.dtype)
        self.register_buffer("cov", cov)
        self.register_buffer("cov_sqrt", sqrtm(cov))

    @staticmethod
    def statistics(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return feats.flatten(-2).mean(-1), gram(feats)

    @staticmethod
    def sums(feats: torch.Tensor, where: tuple[slice, slice] = EVERYWHERE) -> tuple[torch.Tensor, ...]:
        return feats.flatten(-2).sum(-1), second_moment_sum(feats)

    @staticmethod
    def moments(sums: tuple[torch.Tensor, ...], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        total, second = sums
        return total / count, second / count

    @staticmethod
    def blend(stats, weights):
        return (sum(m * w for (m, _), w in zip(stats, weights)),
                sum(s * w for (_, s), w in zip(stats, weights)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.score(self.statistics(feats))

    def score(self, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, second = stats
        channels = mean.shape[-1]
        cov = second - mean[..., :, None] * mean[..., None, :]
        cov = cov + W2_EPS * torch.eye(channels, device=cov.device, dtype=cov.dtype)
        mean_term = (mean - self.mean).pow(2).sum(-1) / channels
        cross = sqrtm(self.cov_sqrt @ cov @ self.cov_sqrt)
        cov_term = torch.diagonal(self.cov + cov - 2 * cross, dim1=-2, dim2=-1).sum(-1) / channels
        return mean_term + cov_term


STYLE_LOSS_CLASSES = {"gram": GramStyleLoss, "w2": W2StyleLoss}  # by settings.STYLE_LOSSES name


# --- guided statistics: one style per region (masks) ----------------------------------------------

class Guided:
    """What makes a style loss guided (Gatys et al. 2017, spatial control): per region r, the statistics
    of the features times the region's guide ``g_r`` at this layer, normalised by the region's mass
    ``Σ_p g_r(p)²``, and the loss summed over the regions with each region's weight.

    ``guides``: ``[N, R, h, w]``, the region masks averaged over this layer's cells (``masks.pooled``);
    ``weights``: ``[N, R]``, each region's share of the style loss (the style blend weights). A region
    of mass below ``min_mass`` (less than one position of the layer) is left out: weight 0. The targets
    are ``[N, R, ...]``: region r's style image's statistics. With one all-white guide every step is the
    unguided loss's arithmetic, bit for bit. The sums are still additive over positions (tiles).
    """

    def guide(self, guides: torch.Tensor, weights: torch.Tensor, min_mass: float) -> None:
        mass = guides.square().flatten(-2).sum(-1)
        self.register_buffer("guides", guides)
        self.register_buffer("mass", torch.where(mass > 0, mass, torch.ones_like(mass)))
        self.register_buffer("regions", torch.where(mass >= min_mass, weights, torch.zeros_like(weights)))

    def guided(self, feats: torch.Tensor, where: tuple[slice, slice]) -> torch.Tensor:
        """``[N, R, C, h, w]``: the features times each region's guide at the positions ``where``."""
        return feats[:, None] * self.guides[..., where[0], where[1]][:, :, None]

    def of_regions(self, losses: torch.Tensor) -> torch.Tensor:
        """``[N, R]`` per-region losses -> ``[N]``, weighted by the regions' weights."""
        return (losses * self.regions).sum(-1)


class GuidedGramStyleLoss(Guided, GramStyleLoss):
    """Scaled MSE between each region's guided Gram matrix and its style's, summed over the regions."""

    def __init__(self, target: torch.Tensor, guides: torch.Tensor, weights: torch.Tensor, min_mass: float = 1.0):
        super().__init__(target)
        self.guide(guides, weights, min_mass)

    def sums(self, feats: torch.Tensor, where: tuple[slice, slice] = EVERYWHERE) -> tuple[torch.Tensor, ...]:
        return (second_moment_sum(self.guided(feats, where)),)

    def moments(self, sums: tuple[torch.Tensor, ...], count: int) -> torch.Tensor:
        return sums[0] / self.mass[..., None, None]

    def score(self, stats: torch.Tensor) -> torch.Tensor:
        n, regions = stats.shape[:2]
        return self.of_regions(scaled_mse((stats - self.target).flatten(0, 1)).view(n, regions))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.score(self.moments(self.sums(feats), 0))


class GuidedW2StyleLoss(Guided, W2StyleLoss):
    """The Wasserstein-2 loss between each region's weighted Gaussian fit and its style's (mean and
    second moment weighted by the squared guide), summed over the regions."""

    def __init__(self, target: tuple[torch.Tensor, torch.Tensor], guides: torch.Tensor, weights: torch.Tensor,
                 min_mass: float = 1.0):
        super().__init__(target)
        self.guide(guides, weights, min_mass)

    def sums(self, feats: torch.Tensor, where: tuple[slice, slice] = EVERYWHERE) -> tuple[torch.Tensor, ...]:
        guided = self.guided(feats, where)
        weight = self.guides[..., where[0], where[1]][:, :, None]
        return (guided * weight).flatten(-2).sum(-1), second_moment_sum(guided)

    def moments(self, sums: tuple[torch.Tensor, ...], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        total, second = sums
        return total / self.mass[..., None], second / self.mass[..., None, None]

    def score(self, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.of_regions(super().score(stats))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.score(self.moments(self.sums(feats), 0))


GUIDED_LOSS_CLASSES = {"gram": GuidedGramStyleLoss, "w2": GuidedW2StyleLoss}


class TVLoss(nn.Module):
    """L2 total variation (Mahendran & Vedaldi): squared right and down neighbour differences, averaged."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image, (0, 1, 0, 1), "replicate")
        dx = padded[..., :-1, 1:] - padded[..., :-1, :-1]
        dy = padded[..., 1:, :-1] - padded[..., :-1, :-1]
        sq = dx**2 + dy**2
        return per_image_sum(sq) / sq[0].numel() if sq.shape[0] > 1 else sq.mean()[None]


__all__ = ["per_image_sum", "scaled_mse", "scaled_mse_of", "error_sums", "second_moment_sum", "gram", "normalized", "default_style_layer_weights", "ContentLoss",
           "GramStyleLoss", "W2StyleLoss", "TVLoss", "sqrtm", "STYLE_LOSS_CLASSES", "Guided", "GuidedGramStyleLoss",
           "GuidedW2StyleLoss", "GUIDED_LOSS_CLASSES"]
