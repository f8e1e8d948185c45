"""The settings of one stylization, their defaults, validation and parsing from text.

This module does not import torch, so the batch planner and ``batchstyle status`` can use it
cheaply. The defaults are those of the 2021 release of crowsonkb/style-transfer-pytorch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .layers import layer_index

STYLE_LOSSES = ("gram", "w2")
OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "gray", "uniform", "normal", "style_stats")
POOLINGS = ("max", "average", "l2")

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

_END_SCALE = re.compile(r"^\s*(\d+)\s*(\+?)\s*$")


def parse_end_scale(value: int | str) -> int | str:
    """Normalise an end scale: ``512`` or ``"512"`` -> 512, ``"1024+"`` -> ``"1024+"``.

    The ``N+`` form means "an N x N square is known to fit; keep that pixel count for this aspect
    ratio" and is resolved per content image by :func:`resolve_end_scale`.
    """
    if isinstance(value, bool):
        raise ValueError(f"end_scale must be a whole number of pixels or N+, not {value!r}")
    if isinstance(value, int):
        number, plus = value, ""
    else:
        match = _END_SCALE.match(str(value))
        if not match:
            raise ValueError(f"end_scale must be a whole number of pixels or N+ (like 1024+), not {value!r}")
        number, plus = int(match.group(1)), match.group(2)
    if number < 1:
        raise ValueError(f"end_scale must be at least 1 pixel, not {number}")
    return f"{number}+" if plus else number


def resolve_end_scale(end_scale: int | str, content_size: tuple[int, int]) -> int:
    """The final long side in pixels for a content image of ``(width, height)``.

    ``"N+"`` becomes ``int(sqrt(long / short) * N)``: the pixel count of an N x N square at the
    content's aspect ratio (truncated, as the reference does).
    """
    end_scale = parse_end_scale(end_scale)
    if isinstance(end_scale, int):
        return end_scale
    dim = int(end_scale[:-1])
    long_side, short_side = max(content_size), min(content_size)
    return int(math.sqrt(long_side / short_side) * dim)


def parse_layer_spec(text: str) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """Parse ``"relu1_1:256,relu2_1:64"`` or ``"relu3_1 relu4_1"`` into names and weights.

    Either every layer has a weight or none has. Separators: comma, semicolon or whitespace.
    """
    items = [item for item in re.split(r"[,;\s]+", text.strip()) if item]
    if not items:
        raise ValueError("a layer list must name at least one layer")
    names, weights = [], []
    for item in items:
        name, sep, weight = item.partition(":")
        names.append(name.strip())
        if sep:
            try:
                weights.append(float(weight))
            except ValueError:
                raise ValueError(f"layer weight {weight!r} of {name} is not a number") from None
    if weights and len(weights) != len(names):
        raise ValueError("give a weight to every layer or to none (like relu1_1:1,relu2_1:0.5)")
    return tuple(names), (tuple(weights) if weights else None)


def format_layer_spec(names: tuple[str, ...], weights: tuple[float, ...] | None) -> str:
    if weights is None:
        return ",".join(names)
    return ",".join(f"{n}:{w:g}" for n, w in zip(names, weights))


@dataclass(frozen=True)
class StyleSettings:
    """Everything that decides what one stylization produces (and so goes into its item id)."""

    end_scale: int | str = 512
    min_scale: int = 128
    iterations: int = 500
    initial_iterations: int = 1000
    content_weight: float = 0.015
    tv_weight: float = 2.0
    style_weight: float = 1.0
    style_weights: tuple[float, ...] | None = None
    style_loss: str = "gram"
    optimizer: str = "adam"
    init: str = "content"
    step_size: float = 0.02
    avg_decay: float = 0.99
    pooling: str = "max"
    style_scale: float = 1.0
    style_size: int | None = None
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    content_layer_weights: tuple[float, ...] | None = None
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    seed: int = 0
    original_colors: bool = False

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("end_scale", parse_end_scale(self.end_scale))
        for name in ("min_scale", "iterations", "initial_iterations", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, not {value!r}")
        if self.min_scale < 1:
            raise ValueError(f"min_scale must be at least 1 pixel, not {self.min_scale}")
        if self.iterations < 1 or self.initial_iterations < 1:
            raise ValueError("iterations and initial_iterations must be at least 1")
        for name in ("content_weight", "tv_weight", "style_weight", "step_size", "avg_decay",
                     "style_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
            set_(name, float(value))
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive, not {self.step_size}")
        if not 0.0 <= self.avg_decay < 1.0:
            raise ValueError(f"avg_decay must be in [0, 1), not {self.avg_decay}")
        if self.style_scale <= 0:
            raise ValueError(f"style_scale must be positive, not {self.style_scale}")
        if self.style_size is not None and (isinstance(self.style_size, bool) or
                                            not isinstance(self.style_size, int) or self.style_size < 1):
            raise ValueError(f"style_size must be a positive whole number of pixels, not {self.style_size!r}")
        for name, choices in (("style_loss", STYLE_LOSSES), ("optimizer", OPTIMIZERS),
                              ("init", INITS), ("pooling", POOLINGS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if self.style_weights is not None:
            set_("style_weights", _float_tuple("style_weights", self.style_weights))
            if sum(abs(w) for w in self.style_weights) == 0:
                raise ValueError("style_weights must not all be zero")
        for layers, weights in (("content_layers", "content_layer_weights"),
                                ("style_layers", "style_layer_weights")):
            names = tuple(getattr(self, layers))
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"{layers} must name at least one layer")
            if len(set(names)) != len(names):
                raise ValueError(f"{layers} names a layer twice: {', '.join(names)}")
            for name in names:
                layer_index(name)
            set_(layers, names)
            if getattr(self, weights) is not None:
                values = _float_tuple(weights, getattr(self, weights))
                if len(values) != len(names):
                    raise ValueError(f"{weights} has {len(values)} values for {len(names)} layers")
                if sum(abs(w) for w in values) == 0:
                    raise ValueError(f"{weights} must not all be zero")
                set_(weights, values)
        if not isinstance(self.original_colors, bool):
            raise ValueError(f"original_colors must be true or false, not {self.original_colors!r}")

    def replace(self, **changes: Any) -> "StyleSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**values)

    def blend_weights(self, n_styles: int) -> list[float]:
        """Per-style-image blend weights, normalised by the sum of their absolute values."""
        if self.style_weights is None:
            return [1.0 / n_styles] * n_styles
        if len(self.style_weights) != n_styles:
            raise ValueError(f"{len(self.style_weights)} style weights were given for {n_styles} style images")
        total = sum(abs(w) for w in self.style_weights)
        return [w / total for w in self.style_weights]


def _float_tuple(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, not {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite numbers, not {values!r}")
    return out


# Settings that may differ between items optimised together in one batch: they change only an
# item's own targets, weights or starting point, not the shape of the loop.
PER_ITEM_SETTINGS = frozenset({
    "content_weight", "tv_weight", "style_weight", "style_weights", "init", "style_scale", "style_size",
    "content_layer_weights", "style_layer_weights", "seed", "original_colors",
})


def batch_key(settings: StyleSettings, sizes: list[tuple[int, int]]) -> str | None:
    """Items with equal keys can be optimised together; None for items that must run alone.

    ``sizes`` are the item's content sizes at each scale (:func:`schedule.content_sizes`). Only
    Adam batches: its update is per pixel, so a batch gives each item its own trajectory, while
    L-BFGS couples everything it optimises through its line search and history.
    """
    if settings.optimizer != "adam":
        return None
    shared = {k: v for k, v in settings.to_dict().items() if k not in PER_ITEM_SETTINGS and k != "end_scale"}
    return repr((sorted(shared.items()), [tuple(s) for s in sizes]))


# Other spellings users know from the reference's CLI and neural-style.
SETTING_ALIASES = {
    "style_scale_fac": "style_scale",
    "random_seed": "seed",
    "max_scale": "end_scale",
}

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(StyleSettings))


def canonical_setting_name(name: str) -> str | None:
    """The field name for a user-facing name (dashes allowed, aliases resolved), or None."""
    key = name.strip().lower().replace("-", "_")
    key = SETTING_ALIASES.get(key, key)
    return key if key in setting_names() else None


def parse_setting(name: str, text: str) -> Any:
    """Convert the text of one setting (from a CSV cell or a flag) to its typed value.

    Raises ValueError with a message that says what was expected. Layer lists take the
    ``name:weight`` form and yield a (names, weights) pair for ``content_layers``/``style_layers``.
    """
    text = text.strip()
    if name == "end_scale":
        return parse_end_scale(text)
    if name in ("min_scale", "iterations", "initial_iterations", "seed", "style_size"):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if name in ("content_weight", "tv_weight", "style_weight", "step_size", "avg_decay", "style_scale"):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {text!r}")
        return value
    if name in ("style_weights", "content_layer_weights", "style_layer_weights"):
        parts = [p for p in re.split(r"[;,\s]+", text) if p]
        try:
            return tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(f"{name} must be numbers separated by ';', not {text!r}") from None
    if name == "original_colors":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"original_colors must be true or false, not {text!r}")
    if name in ("content_layers", "style_layers"):
        return parse_layer_spec(text)
    if name in ("style_loss", "optimizer", "init", "pooling"):
        return text.lower()
    raise ValueError(f"unknown setting {name!r}")


def settings_from_text(values: Mapping[str, str], base: StyleSettings | None = None) -> StyleSettings:
    """Apply text values (field names or aliases) on top of ``base``; ValueError names the field."""
    changes: dict[str, Any] = {}
    for raw_name, text in values.items():
        name = canonical_setting_name(raw_name)
        if name is None:
            raise ValueError(f"unknown setting {raw_name!r}")
        value = parse_setting(name, text)
        if name in ("content_layers", "style_layers"):
            names, weights = value
            changes[name] = names
            changes[name[:-1] + "_weights"] = weights
        else:
            changes[name] = value
    return dataclasses.replace(base or StyleSettings(), **changes)


__all__ = [
    "StyleSettings", "PER_ITEM_SETTINGS", "batch_key", "parse_end_scale", "resolve_end_scale", "parse_layer_spec", "format_layer_spec",
    "parse_setting", "settings_from_text", "canonical_setting_name", "setting_names",
    "STYLE_LOSSES", "OPTIMIZERS", "INITS", "POOLINGS", "DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS",
]
