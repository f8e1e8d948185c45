"""The settings of a clip (docs/engine.md, section Clips): how strongly each frame after the first holds to
the earlier stylized frames, how long it runs, and which earlier frames it looks back to; and the style
settings of such a frame. No torch: the batch planner and the CLI use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .settings import StyleSettings, resolve_end_scale

CLIP_COLUMNS = ("temporal_weight", "frame_iterations", "long_term")
# A later frame's Adam steps at this share of the row's step size: it starts from a stylized image, and a
# fresh Adam moves every pixel by about its step size at first (benchmarks/temporal.py: at the full step
# the clips stay about 7 levels from frame to frame whatever the temporal weight; at a quarter, about 3).
FRAME_STEP_SHARE = 0.25
_SEPARATORS = r"[;,\s]+"


def _weight(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"temporal_weight must be a number of at least 0, not {value.strip()!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"temporal_weight must be a finite number of at least 0, not {value!r}")
    return float(value)


def _iterations(value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"frame_iterations must be a whole number of at least 1, not {value.strip()!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"frame_iterations must be a whole number of at least 1, not {value!r}")
    return value


def _look_backs(value: Any) -> tuple[int, ...]:
    given = value
    if isinstance(value, str):
        value = [part for part in re.split(_SEPARATORS, value.strip()) if part]
    elif isinstance(value, int):
        value = (value,)
    problem = (f"long_term must be whole numbers of at least 1 in ascending order, separated by ';' or ',' "
               f"(e.g. 1;2;4), not {given!r}")
    try:
        out = tuple(int(v) if not isinstance(v, (bool, float)) else None for v in value)
    except (TypeError, ValueError):
        raise ValueError(problem) from None
    if not out or any(v is None or v < 1 for v in out) or any(a >= b for a, b in zip(out, out[1:])):
        raise ValueError(problem)
    return out


@dataclass(frozen=True)
class ClipSettings:
    """How the frames of a clip after the first are made (``ClipSettings()``: the default clip).

    ``temporal_weight``: the weight of the temporal loss (0: every frame only starts from the one
    before it, warped). ``frame_iterations``: the iterations of each frame after the first, which runs
    the end scale alone. ``long_term``: the earlier frames the temporal loss looks back to, as distances
    (1: the frame before), ascending. The defaults were chosen with ``benchmarks/temporal.py``."""

    temporal_weight: float = 100.0
    frame_iterations: int = 30
    long_term: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "temporal_weight", _weight(self.temporal_weight))
        object.__setattr__(self, "frame_iterations", _iterations(self.frame_iterations))
        object.__setattr__(self, "long_term", _look_backs(self.long_term))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for ids."""
        return {"temporal_weight": self.temporal_weight, "frame_iterations": self.frame_iterations,
                "long_term": list(self.long_term)}


def parse_clip_settings(cells: Mapping[str, str], defaults: ClipSettings) -> ClipSettings:
    """``defaults`` with the manifest cells or CLI values of :data:`CLIP_COLUMNS` on top (missing or
    empty cells keep the default; other keys are not looked at). ValueError names the column and what
    it allows."""
    changes = {}
    for name, check in zip(CLIP_COLUMNS, (_weight, _iterations, _look_backs)):
        value = cells.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        changes[name] = check(value)
    return ClipSettings(**{**defaults.to_dict(), **changes})


def frame_settings(settings: StyleSettings, clip: ClipSettings, content_size: tuple[int, int]) -> StyleSettings:
    """The settings of a frame after the first: the row's ``settings`` with a ladder of their end scale
    alone (resolved for ``content_size``, the frame's (w, h)), ``clip.frame_iterations`` iterations and
    Adam's step size times :data:`FRAME_STEP_SHARE`. The first frame uses ``settings`` as they are."""
    end = resolve_end_scale(settings.end_scale, content_size)
    return settings.replace(end_scale=end, min_scale=end, initial_iterations=clip.frame_iterations,
                            iterations=clip.frame_iterations, step_size=settings.step_size * FRAME_STEP_SHARE)


__all__ = ["ClipSettings", "CLIP_COLUMNS", "FRAME_STEP_SHARE", "parse_clip_settings", "frame_settings"]
