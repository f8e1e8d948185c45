"""Scale ladders and image sizes per scale (engine-spec §3). No torch: the batch planner uses it."""

from __future__ import annotations

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


def content_sizes(content_size: tuple[int, int], settings: StyleSettings) -> list[tuple[int, int]]:
    """The content image's ``(w, h)`` at each scale of the run."""
    end = resolve_end_scale(settings.end_scale, content_size)
    return [size_to_fit(content_size, s, scale_up=True) for s in scale_schedule(end, settings.min_scale)]


def work_units(content_size: tuple[int, int], settings: StyleSettings) -> int:
    """Pixel-iterations of a run: a device-independent measure of its cost (for ETAs)."""
    sizes = content_sizes(content_size, settings)
    its = [settings.initial_iterations] + [settings.iterations] * (len(sizes) - 1)
    return sum(w * h * n for (w, h), n in zip(sizes, its))


__all__ = ["scale_schedule", "size_to_fit", "style_size_at", "content_sizes", "work_units"]
