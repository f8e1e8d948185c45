"""The objective at one scale (docs/engine.md, section Objective): for each image n of a group,

    L_n(x) = Σ_content w_c · content(x_n) + Σ_style w_s · style(x_n) + w_tv · TV(x_n)

with that job's own weights and targets. Calling an :class:`Objective` on the images gives each
image's loss and the gradient of their sum, which is each image's own gradient (the losses are
independent per image). That call is all the optimisation loop knows of the maths: an objective that
evaluates tile by tile must give the same losses and gradient from the same images
(``docs/tiling.md``) and can take its place.
"""

from __future__ import annotations

import contextlib
import copy
from contextlib import AbstractContextManager
from typing import Callable, Protocol, Sequence

import torch
from torch import nn

from .layers import LAYER_INDEX
from .losses import GUIDED_LOSS_CLASSES, STYLE_LOSS_CLASSES, ContentLoss, TVLoss, default_style_layer_weights, normalized
from .masks import MIN_MASS
from .settings import StyleSettings
from .temporal import Temporal, TemporalLoss
from .vgg import VGGFeatures


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Reduced-precision activations in float32 for the losses; float32 and float64 as they are."""
    return t if t.dtype == torch.float64 else t.float()


class Weighted(nn.Module):
    """One term: a loss of one layer's activations (or of the image, ``"input"``), times each image's weight."""

    def __init__(self, key: int | str, loss: nn.Module, weight: torch.Tensor):
        super().__init__()
        self.key = key
        self.loss = loss
        self.register_buffer("weight", weight)

    def forward(self, feats: dict) -> torch.Tensor:
        return self.loss(at_least_float32(feats[self.key])) * self.weight

    def sums(self, feats: torch.Tensor, where: tuple[slice, slice]) -> tuple[torch.Tensor, ...]:
        """The loss's sums over the positions of ``feats``, which are ``where`` in the layer (tiles)."""
        return self.loss.sums(at_least_float32(feats), where)

    def subset(self, index: torch.Tensor) -> "Weighted":
        """The term for some of the group's images: every target and weight is indexed by image along
        its first dimension."""
        loss = copy.copy(self.loss)
        loss._buffers = {name: value.index_select(0, index.to(value.device))
                         for name, value in self.loss._buffers.items()}
        return Weighted(self.key, loss, self.weight.index_select(0, index.to(self.weight.device)))

    def of_sums(self, sums: tuple[torch.Tensor, ...], count: int) -> torch.Tensor:
        """The weighted loss from its sums over all ``count`` positions of the layer."""
        return self.loss.score(self.loss.moments(sums, count)) * self.weight


class Objective:
    """Each image's weighted loss, and the gradient, for a group of images at one scale.

    ``forward`` is the feature extractor the iterations use (``model`` itself, or its compiled
    twin), run under ``autocast`` (reduced precision); :meth:`evaluate` uses ``model`` in float32.
    """

    def __init__(self, model: VGGFeatures, terms: Sequence[Weighted], layers: Sequence[str],
                 forward: Callable | None = None,
                 autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext):
        self.model = model
        self.terms = list(terms)
        self.layers = tuple(layers)
        self.forward = model if forward is None else forward
        self.autocast = autocast

    def losses(self, feats: dict) -> torch.Tensor:
        """``[N]``: the sum of the weighted terms, per image, on the first device."""
        return sum(term(feats).to(self.model.devices[0]) for term in self.terms)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's loss ``[N]`` and the gradient with respect to ``images`` ``[N, 3, H, W]``."""
        x = images.detach().requires_grad_()
        with self.autocast():
            feats = self.forward(x, self.layers)
        losses = self.losses(feats)
        (gradient,) = torch.autograd.grad(losses.sum(), x)
        return losses.detach(), gradient

    def subset(self, items: Sequence[int]) -> "Objective":
        """The objective of images ``items`` of the group alone (in that order)."""
        index = torch.tensor(list(items), dtype=torch.long)
        part = copy.copy(self)
        part.terms = [term.subset(index) for term in self.terms]
        return part

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        """Each image's loss ``[N]``, in float32 without compilation (to compare speed options)."""
        return self.losses(self.model(images, self.layers))


class GroupJob(Protocol):
    """What the objective needs of a job: its settings and its style blend weights; for a frame of a
    clip, its earlier frames (``temporal``) and their weight (``temporal_weight``)."""

    settings: StyleSettings
    blend: Sequence[float]
    temporal: Sequence[Temporal]
    temporal_weight: float


def content_layer_weights(settings: StyleSettings) -> list[float]:
    return normalized(settings.content_layer_weights or [1.0] * len(settings.content_layers))


def style_layer_weights(settings: StyleSettings) -> list[float]:
    return normalized(settings.style_layer_weights or default_style_layer_weights(len(settings.style_layers)))


def group_terms(jobs: Sequence[GroupJob], content: dict, styles: Sequence[Sequence[list]],
                model: VGGFeatures, guides: Sequence[Sequence[torch.Tensor]] | None = None,
                size: tuple[int, int] | None = None) -> list[Weighted]:
    """The terms of a group's objective: content layers, style layers, total variation, then, where some
    job has earlier frames of a clip, the temporal loss at ``size`` (the scale's (w, h)).

    ``content``: the content images' activations by module index (``[N, ...]``); ``styles[n][k]``:
    the statistics of job n's style image k, one entry per style layer. Jobs of a group share their
    layers and style loss; weights, targets and style blends are each job's own. ``guides[n][j]``:
    with masks, job n's region guides ``[1, R, h, w]`` at style layer j (style k applies in region
    k); without, the styles blend.
    """
    settings = [job.settings for job in jobs]
    first = settings[0]

    def per_job(value: Callable[[StyleSettings], float], device: torch.device) -> torch.Tensor:
        return torch.tensor([value(s) for s in settings], dtype=torch.float32, device=device)

    terms = []
    for j, name in enumerate(first.content_layers):
        i = LAYER_INDEX[name]
        weight = per_job(lambda s: s.content_weight * content_layer_weights(s)[j], content[i].device)
        terms.append(Weighted(i, ContentLoss(content[i].float()), weight))
    for j, name in enumerate(first.style_layers):
        weight = per_job(lambda s: s.style_weight * style_layer_weights(s)[j], model.device_of(name))
        terms.append(Weighted(LAYER_INDEX[name], style_loss(jobs, styles, j, guides, first.style_loss), weight))
    terms.append(Weighted("input", TVLoss(), per_job(lambda s: s.tv_weight, model.devices[0])))
    temporals = [getattr(job, "temporal", ()) for job in jobs]
    if any(temporals):
        if size is None:
            raise ValueError("a temporal term needs the scale's size")
        weight = torch.tensor([getattr(job, "temporal_weight", 0.0) if t else 0.0 for job, t in zip(jobs, temporals)],
                              dtype=torch.float32, device=model.devices[0])
        terms.append(Weighted("input", TemporalLoss.of(temporals, size, model.devices[0]), weight))
    return terms


def style_loss(jobs: Sequence[GroupJob], styles: Sequence[Sequence[list]], j: int,
               guides: Sequence[Sequence[torch.Tensor]] | None, name: str) -> nn.Module:
    """Style layer j's loss for the group: against each job's blend of its styles, or, with guides,
    against each region's own style, weighted by the blend weights."""
    if guides is None:
        loss_cls = STYLE_LOSS_CLASSES[name]
        return loss_cls(_cat([loss_cls.blend([stats[j] for stats in job_styles], job.blend)
                              for job, job_styles in zip(jobs, styles)]))
    guide = torch.cat([job_guides[j] for job_guides in guides])
    weights = torch.tensor([list(job.blend) for job in jobs], dtype=torch.float32, device=guide.device)
    targets = _cat([_stack([stats[j] for stats in job_styles]) for job_styles in styles])
    return GUIDED_LOSS_CLASSES[name](targets, guide, weights, MIN_MASS)


def _stack(stats: list) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One job's statistics of its style images (``[1, ...]`` each) stacked as regions: ``[1, R, ...]``."""
    if isinstance(stats[0], tuple):
        return tuple(torch.stack(parts, 1) for parts in zip(*stats))
    return torch.stack(stats, 1)


def _cat(targets: list) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Per-job targets (tensors, or tuples of tensors) stacked along the group dimension."""
    if isinstance(targets[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*targets))
    return torch.cat(targets)


__all__ = ["Objective", "Weighted", "group_terms", "content_layer_weights", "style_layer_weights"]
