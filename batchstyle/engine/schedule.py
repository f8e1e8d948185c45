"""Scale ladders and image sizes per scale (docs/engine.md, section Scales). No torch: the batch planner uses it."""

from __future__ import annotations

from dataclasses import dataclass

from .layers import LAYER_NAMES, layer_index, min_input_size
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


def deepest_layer(settings: StyleSettings) -> int:
    """Module index of the deepest layer the run's losses read."""
    return max(layer_index(name) for name in settings.content_layers + settings.style_layers)


def _fits(size: tuple[int, int], settings: StyleSettings) -> bool:
    return min(size) >= min_input_size(deepest_layer(settings))


def scale_ladder(content_size: tuple[int, int], settings: StyleSettings) -> list[Scale]:
    """The scales of a run for a content image of ``(w, h)``: ``initial_iterations`` at the first,
    ``iterations`` at each later one.

    Scales at which the image's short side is too small for the deepest layer are left out, so a
    panorama starts higher up the ladder (see :func:`ladder_note`). When even the end scale is too
    small, the ladder is the end scale alone, which the engine refuses (see :func:`too_thin`).
    """
    end = resolve_end_scale(settings.end_scale, content_size)
    sides = scale_schedule(end, settings.min_scale)
    fitting = [s for s in sides if _fits(size_to_fit(content_size, s, scale_up=True), settings)] or sides[-1:]
    return [Scale(side, *size_to_fit(content_size, side, scale_up=True),
                  settings.initial_iterations if k == 0 else settings.iterations)
            for k, side in enumerate(fitting)]


def too_thin(content_size: tuple[int, int], settings: StyleSettings) -> str | None:
    """Why no scale of the run can work for this image (it is too thin even at its end scale), or None."""
    final = scale_ladder(content_size, settings)[-1]
    if _fits(final.size, settings):
        return None
    deepest = deepest_layer(settings)
    need = min_input_size(deepest)
    return (f"is {final.width}x{final.height} at its end scale, too thin for layer {LAYER_NAMES[deepest]}, "
            f"which needs at least {need} px on the short side; raise end_scale, or crop the image")


def ladder_note(content_size: tuple[int, int], settings: StyleSettings) -> str | None:
    """A word for images whose ladder starts above min_scale because they are too thin below it."""
    ladder = scale_ladder(content_size, settings)
    skipped = len(scale_schedule(ladder[-1].long_side, settings.min_scale)) - len(ladder)
    if skipped <= 0 or too_thin(content_size, settings):
        return None
    first = ladder[0]
    return (f"starts at scale {first.long_side} ({first.width}x{first.height}): at the {skipped} smaller "
            f"scale(s) its short side is too small for layer {LAYER_NAMES[deepest_layer(settings)]}")


def work_units(content_size: tuple[int, int], settings: StyleSettings) -> int:
    """Pixel-iterations of a run: a device-independent measure of its cost (for ETAs)."""
    return sum(scale.units for scale in scale_ladder(content_size, settings))


__all__ = ["Scale", "scale_ladder", "scale_schedule", "size_to_fit", "style_size_at", "work_units", "too_thin",
           "ladder_note", "deepest_layer"]
