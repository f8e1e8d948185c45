"""Iterate averaging and the optimisers, with Adam's warm start across scales."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import optim
from torch.nn import functional as F


class EMA:
    """A bias-corrected exponential moving average of iterates, as Adam corrects its moments."""

    def __init__(self, first: torch.Tensor, decay: float):
        self.decay = torch.tensor(decay, device=first.device)
        self.accum = torch.tensor(1.0, device=first.device)
        self.value = torch.zeros_like(first)
        self.update(first)

    @torch.no_grad()
    def update(self, sample: torch.Tensor) -> None:
        self.accum *= self.decay
        self.value *= self.decay
        self.value += (1 - self.decay) * sample

    @torch.no_grad()
    def get(self) -> torch.Tensor:
        return self.value / (1 - self.accum)


@dataclass
class AdamMoments:
    """Adam's per-pixel moments and step count: what carries over from one scale to the next."""

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: float

    @classmethod
    def of(cls, opt: optim.Adam, param: torch.Tensor) -> "AdamMoments":
        state = opt.state[param]
        return cls(state["exp_avg"].detach().clone(), state["exp_avg_sq"].detach().clone(),
                   float(state["step"]))

    def on_cpu(self) -> "AdamMoments":
        return AdamMoments(self.exp_avg.cpu().contiguous(), self.exp_avg_sq.cpu().contiguous(), self.step)

    def resized(self, height: int, width: int) -> "AdamMoments":
        """Spatially resized for the next scale: m bicubic, v bilinear clamped at 0, step kept."""
        return AdamMoments(
            F.interpolate(self.exp_avg, (height, width), mode="bicubic", align_corners=False),
            F.interpolate(self.exp_avg_sq, (height, width), mode="bilinear", align_corners=False).relu_(),
            self.step)

    def load_into(self, opt: optim.Adam, param: torch.Tensor) -> None:
        opt.state[param] = {"step": torch.tensor(self.step, dtype=torch.float32),
                            "exp_avg": self.exp_avg.to(param.device),
                            "exp_avg_sq": self.exp_avg_sq.to(param.device)}


def make_adam(image: torch.Tensor, step_size: float, warm: AdamMoments | None) -> optim.Adam:
    """Adam with PyTorch's default betas (0.9, 0.999), warm-started from resized moments if given."""
    opt = optim.Adam([image], lr=step_size, betas=(0.9, 0.999), eps=1e-8)
    if warm is not None:
        warm.resized(*image.shape[-2:]).load_into(opt, image)
    return opt


def make_lbfgs(image: torch.Tensor) -> optim.LBFGS:
    """L-BFGS as in the 2023 reference: lr 1, one inner iteration per step, history 10, no line search."""
    return optim.LBFGS([image], lr=1, max_iter=1, history_size=10, line_search_fn=None)


__all__ = ["EMA", "AdamMoments", "make_adam", "make_lbfgs"]
