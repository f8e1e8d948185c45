"""One scale of a run (docs/engine.md, section One run): each job's image, its running average, its
optimiser and its :class:`~.pace.Pace`, stepped together through one objective.

A job whose scale has ended (an ``adaptive`` schedule) leaves the group: the objective is cut down to
the jobs still going, so it stops costing compute while the others go on. Each job's image is a
view into the group's tensor and each has its own Adam, so a job's steps are the ones it would take
alone, whichever jobs share its group, and whenever they end.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .objective import Objective
from .optim import EMA, AdamMoments, make_adam, make_lbfgs
from .pace import Pace
from .settings import StyleSettings


class Stage:
    """The images of one scale, ``[N, 3, H, W]``, optimised under ``objective`` (of all N jobs)."""

    def __init__(self, images: torch.Tensor, objective: Objective, settings: Sequence[StyleSettings],
                 moments: Sequence[AdamMoments] | None, cap: int, last: bool = True):
        self.objective = objective  # of the jobs still going
        self.whole = objective  # of every job of the group
        self.x = images
        self.parts = [images[j:j + 1] for j in range(len(images))]
        self.averages = [EMA(part, s.avg_decay) for part, s in zip(self.parts, settings)]
        self.paces = [Pace(s.schedule, cap, s.step_size, last) for s in settings]
        self.going = list(range(len(images)))
        self.adam = settings[0].optimizer == "adam"
        if self.adam:
            warm = [None] * len(self.parts) if moments is None else moments
            self.optimizers = [make_adam(part, s.step_size, w) for part, s, w in zip(self.parts, settings, warm)]
        else:
            self.lbfgs = make_lbfgs(images)

    def step(self) -> torch.Tensor:
        """One optimiser step of every job still going; returns their losses before it (in ``going`` order)."""
        if not self.adam:
            return self._lbfgs_step()
        going = self.going
        x = self.x if len(going) == len(self.parts) else torch.cat([self.parts[j] for j in going])
        with torch.enable_grad():
            losses, gradient = self.objective(x)
        with torch.no_grad():
            for m, j in enumerate(going):
                part = self.parts[j]
                part.grad = gradient[m:m + 1]
                self.optimizers[j].step()
                part.clamp_(0, 1)
                self.averages[j].update(part)
        return losses

    def _lbfgs_step(self) -> torch.Tensor:
        def closure() -> torch.Tensor:
            losses, gradient = self.objective(self.x)
            self.x.grad = gradient.contiguous()  # L-BFGS flattens it with view(-1): not NHWC
            return losses

        losses = self.lbfgs.step(closure)
        self.averages[0].update(self.x)
        return losses

    def pace(self, iteration: int) -> list[int]:
        """After ``iteration``: set each going job's next step size; the jobs whose scale ended now leave."""
        ended = []
        for j in self.going:
            lr = self.paces[j].after(iteration, self.averages[j].get)
            if lr is None:
                ended.append(j)
            elif self.adam:
                self.optimizers[j].param_groups[0]["lr"] = lr
        if ended:
            self.going = [j for j in self.going if j not in ended]
            if self.going:
                self.objective = self.whole.subset(self.going)
        return ended

    def image(self) -> torch.Tensor:
        """Every job's averaged image, ``[N, 3, H, W]``."""
        return torch.cat([average.get() for average in self.averages])

    def finish(self) -> tuple[torch.Tensor, list[AdamMoments] | None]:
        """The averaged images, which the next scale starts from, and each job's Adam moments (each at
        its own step count: jobs whose scale ended early took fewer steps)."""
        with torch.no_grad():
            self.x.copy_(self.image())
        if not self.adam:
            return self.x.detach(), None
        return self.x.detach(), [AdamMoments.of(opt, part) for opt, part in zip(self.optimizers, self.parts)]


__all__ = ["Stage"]
