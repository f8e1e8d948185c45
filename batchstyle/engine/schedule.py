"""Scale ladders and image sizes per scale (engine-spec §3). No torch: the batch planner uses it."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import StyleSettings, resolve_end_scale


def scale_schedule(end_scale: int, min_scale: int = 128) -> list[int]:
    """Long sides from ``end_scale`` down by factors of √2 (relative to end_scale), >= min_scale, ascending."""
    min_scale = min(min_scale, end_scale)
    scales, i = set(), 0
    scale = end_scale
    while scale >= min_scale:
        scales.add(scale)
        i += 1
        scale = round(end_scale / 2 ** (i / 2))
    return sorted(scales)


def size_to_fit(size: tuple[int, int], max_dim: int, scale_up: bool = False) -> tuple[int, int]:
    """``(w, h)`` with the long side ``max_dim`` (never enlarged unless ``scale_up``)."""
    w, h = size
    if not scale_up and max(w, h) <= max_dim:
        return w, h
    if h > w:
        return round(max_dim * w / h), max_dim
    return max_dim, round(max_dim * h / w)


def style_size_at(style_size: tuple[int, int], scale: int, settings: StyleSettings) -> tuple[int, int]:
    """A style image's size at a scale: ``style_size`` or round(scale · style_scale), never upscaled."""
    target = settings.style_size if settings.style_size is not None else round(scale * settings.style_scale)
    return size_to_fit(style_size, target)


@dataclass(frozen=True)
class Scale:
    """One rung of the ladder: its long side, the content image's size there and its iterations."""

    long_side: int
    width: int
    height: int
    iterations: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def units(self) -> int:
        """Pixel-iterations of this scale."""
        return self.width * self.height * self.iterations


def scale_ladder(content_size: tuple[int, int], settings: StyleSettings) -> list[Scale]:
    """The scales of a run for a content image of ``(w, h)``: ``initial_iterations`` at the first,
    ``iterations`` at each later one."""
    end = resolve_end_scale(settings.end_scale, content_size)
    return [Scale(side, *size_to_fit(content_size, side, scale_up=True),
                  settings.initial_iterations if k == 0 else settings.iterations)
            for k, side in enumerate(scale_schedule(end, settings.min_scale))]


def work_units(content_size: tuple[int, int], settings: StyleSettings) -> int:
    """Pixel-iterations of a run: a device-independent measure of its cost (for ETAs)."""
    return sum(scale.units for scale in scale_ladder(content_size, settings))


__all__ = ["Scale", "scale_ladder", "scale_schedule", "size_to_fit", "style_size_at", "work_units"]
