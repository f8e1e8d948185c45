"""The settings of one stylization: one table of fields drives their validation, their parsing from
text, the command-line options and the manifest columns.

This module does not import torch, so the batch planner, ``batchstyle status`` and ``--help`` stay
cheap. The defaults are those of the 2021 release of crowsonkb/style-transfer-pytorch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Mapping

from .layers import layer_index

STYLE_LOSSES = ("gram", "w2")
OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "gray", "uniform", "normal", "style_stats")
POOLINGS = ("max", "average", "l2")
SCHEDULES = ("fixed", "adaptive")

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

_END_SCALE = re.compile(r"^\s*(\d+)\s*(\+?)\s*$")
_LIST_SEPARATORS = r"[;,\s]+"
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class SettingsError(ValueError):
    """One or more invalid settings; each problem is one line that names its setting."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# --- values: each kind of setting, from text and checked ---------------------------------------------

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
    items = [item for item in re.split(_LIST_SEPARATORS, text.strip()) if item]
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


def _whole(name: str, value: Any, minimum: int | None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number, not {value.strip()!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _number(name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, not {value.strip()!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    """Numbers separated by ';', ',' or spaces (or a sequence), finite and not all zero."""
    given = value
    if isinstance(value, str):
        value = [p for p in re.split(_LIST_SEPARATORS, value.strip()) if p]
    elif isinstance(value, (int, float)):
        value = (value,)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers separated by ';' or ',', not {given!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite numbers, not {value!r}")
    if sum(abs(v) for v in out) == 0:
        raise ValueError(f"{name} must not all be zero")
    return out


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return text


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _layers(name: str, value: Any) -> tuple[str, ...]:
    names = tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{name} must name at least one layer")
    if len(set(names)) != len(names):
        raise ValueError(f"{name} names a layer twice: {', '.join(names)}")
    for layer in names:
        layer_index(layer)
    return names


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


# --- the table --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SettingField:
    """One setting: how its text is read, how its value is checked, and how users meet it.

    ``flags`` are its command-line options (none: a manifest column and library argument only);
    ``per_item`` settings may differ between jobs optimised together in one group, because they
    change only a job's own targets, weights or starting point, not the shape of the loop.
    """

    name: str
    check: Callable[[str, Any], Any]  # (name, text or value) -> the checked value; ValueError says why
    help: str
    flags: tuple[str, ...] = ()
    per_item: bool = False
    choices: tuple[str, ...] = ()
    default_help: str | None = None  # how --help shows the default, where the value alone says too little
    optional: bool = False  # None is a valid value

    def value(self, value: Any) -> Any:
        """The checked value of text (a CSV cell, a flag) or of a typed value."""
        if value is None and self.optional:
            return None
        return self.check(self.name, value)


def _int_field(minimum: int | None) -> Callable[[str, Any], int]:
    return lambda name, value: _whole(name, value, minimum)


def _float_field(rule: Callable[[float], str | None] | None = None) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        number = _number(name, value)
        problem = rule(number) if rule else None
        if problem:
            raise ValueError(f"{name} {problem}, not {number:g}")
        return number
    return check


def _choice_field(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    return lambda name, value: _choice(name, value, choices)


def _layers_field(name: str, value: Any) -> tuple[str, ...]:
    return _layers(name, parse_layer_spec(value)[0] if isinstance(value, str) else value)


SETTING_FIELDS: tuple[SettingField, ...] = (
    SettingField("end_scale", lambda n, v: parse_end_scale(v),
                 "Final long side in pixels. N+ keeps the pixel count of an N×N square at the image's aspect ratio.",
                 ("-s", "--end-scale")),
    SettingField("min_scale", _int_field(1), "Smallest scale (long side) of the multi-scale ladder.",
                 ("-ms", "--min-scale")),
    SettingField("initial_iterations", _int_field(1), "Iterations at the first scale.",
                 ("-ii", "--initial-iterations")),
    SettingField("iterations", _int_field(1), "Iterations at every later scale.", ("-i", "--iterations")),
    SettingField("content_weight", _float_field(),
                 "Content loss weight. With the original Caffe VGG-19 weights, values near 5-20 keep more of the photo.",
                 ("-cw", "--content-weight"), per_item=True),
    SettingField("tv_weight", _float_field(), "Smoothness (total variation) weight.", ("-tw", "--tv-weight"),
                 per_item=True),
    SettingField("style_weight", _float_field(), "Global style loss weight.", ("--style-weight",), per_item=True),
    SettingField("style_weights", _numbers,
                 "Blend weights of the style images, one per style, separated by ';' or ',' (normalised by the "
                 "sum of absolute values).", ("-sw", "--style-weights"), per_item=True, default_help="equal",
                 optional=True),
    SettingField("style_loss", _choice_field(STYLE_LOSSES),
                 "gram: normalised Gram matrices (2021). w2: Wasserstein-2 between Gaussian fits (2023).",
                 ("--style-loss",), choices=STYLE_LOSSES),
    SettingField("optimizer", _choice_field(OPTIMIZERS), "Optimiser.", ("--optimizer",), choices=OPTIMIZERS),
    SettingField("init", _choice_field(INITS), "Initial image.", ("--init",), per_item=True, choices=INITS),
    SettingField("step_size", _float_field(_positive), "Adam learning rate.", ("-ss", "--step-size"),
                 per_item=True),
    SettingField("avg_decay", _float_field(lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
                 "Decay of the iterate average that becomes the output.", ("-ad", "--avg-decay"), per_item=True),
    SettingField("pooling", _choice_field(POOLINGS), "Pooling in VGG-19 (average/l2 are rescaled).",
                 ("--pooling",), choices=POOLINGS),
    SettingField("style_scale", _float_field(_positive),
                 "Style image size relative to the current scale (styles are never upscaled).",
                 ("--style-scale-fac", "--style-scale"), per_item=True),
    SettingField("style_size", _int_field(1),
                 "Fixed style image long side at every scale (overrides --style-scale-fac).", ("--style-size",),
                 per_item=True, default_help="the scale × --style-scale-fac", optional=True),
    SettingField("content_layers", _layers_field,
                 "Content layers, optionally with weights: relu4_2 or relu4_2:1,relu5_2:0.5.", ("--content-layers",)),
    SettingField("content_layer_weights", _numbers, "Weights of the content layers.", per_item=True, optional=True),
    SettingField("style_layers", _layers_field,
                 "Style layers with optional weights (default weights: each layer 4x the next deeper one).",
                 ("--style-layers",)),
    SettingField("style_layer_weights", _numbers, "Weights of the style layers.", per_item=True, optional=True),
    SettingField("schedule", _choice_field(SCHEDULES),
                 "fixed: every scale runs its iterations. adaptive: a scale ends when its averaged image has "
                 "stopped changing, after a short cooling of the step size; the iterations are the most it runs.",
                 ("--schedule",), per_item=True, choices=SCHEDULES),
    SettingField("seed", _int_field(None), "Random seed (initial noise).", ("-r", "--random-seed"), per_item=True),
    SettingField("original_colors", _flag, "Transfer luminance only: the output keeps the content's colours.",
                 ("--original-colors/--no-original-colors",), per_item=True),
)

FIELDS_BY_NAME: dict[str, SettingField] = {f.name: f for f in SETTING_FIELDS}
LAYER_WEIGHTS = {"content_layers": "content_layer_weights", "style_layers": "style_layer_weights"}

# Other spellings users know from the reference's CLI and neural-style.
SETTING_ALIASES = {"style_scale_fac": "style_scale", "random_seed": "seed", "max_scale": "end_scale"}


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
    schedule: str = "fixed"

    def __post_init__(self) -> None:
        problems = []
        for f in SETTING_FIELDS:
            try:
                object.__setattr__(self, f.name, f.value(getattr(self, f.name)))
            except ValueError as exc:
                problems.append(str(exc))
        for layers, weights in LAYER_WEIGHTS.items():
            values = getattr(self, weights)
            if values is not None and len(values) != len(getattr(self, layers)):
                problems.append(f"{weights} has {len(values)} values for {len(getattr(self, layers))} layers")
        if problems:
            raise SettingsError(problems)

    def replace(self, **changes: Any) -> "StyleSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists). ``schedule`` is left out at ``fixed``, the loop
        every image had before the setting existed, so that their ids and checkpoints stay valid."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        if out["schedule"] == "fixed":
            del out["schedule"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleSettings":
        unknown = sorted(set(data) - set(FIELDS_BY_NAME))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    def blend_weights(self, n_styles: int) -> list[float]:
        """Per-style-image blend weights, normalised by the sum of their absolute values."""
        if self.style_weights is None:
            return [1.0 / n_styles] * n_styles
        if len(self.style_weights) != n_styles:
            raise ValueError(f"{len(self.style_weights)} style weights were given for {n_styles} style images")
        total = sum(abs(w) for w in self.style_weights)
        return [w / total for w in self.style_weights]

    def default_text(self, name: str) -> str:
        """A setting's value as ``--help`` shows it."""
        field, value = FIELDS_BY_NAME[name], getattr(self, name)
        if name in LAYER_WEIGHTS:
            return format_layer_spec(value, getattr(self, LAYER_WEIGHTS[name]))
        if value is None and field.default_help:
            return field.default_help
        return str(value).lower() if isinstance(value, bool) else str(value)


# --- from text ----------------------------------------------------------------------------------------

def canonical_setting_name(name: str) -> str | None:
    """The field name for a user-facing name (dashes allowed, aliases resolved), or None."""
    key = name.strip().lower().replace("-", "_")
    key = SETTING_ALIASES.get(key, key)
    return key if key in FIELDS_BY_NAME else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate to a misspelt name, or ``""``."""
    key = name.strip().lower().replace("-", "_")
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def setting_changes(name: str, value: Any) -> dict[str, Any]:
    """The field values that one setting's text (or typed value) sets.

    A layer list with weights (``relu1_1:1,relu2_1:0.5``) sets both the layers and their weights.
    """
    if name in LAYER_WEIGHTS and isinstance(value, str):
        names, weights = parse_layer_spec(value)
        return {name: FIELDS_BY_NAME[name].value(names), LAYER_WEIGHTS[name]: weights}
    return {name: FIELDS_BY_NAME[name].value(value)}


def settings_from_text(values: Mapping[str, Any], base: StyleSettings | None = None) -> StyleSettings:
    """Apply values (text from a CSV cell or a flag, by field name or alias) on top of ``base``.

    Raises :class:`SettingsError` listing every problem, each naming its setting.
    """
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for raw_name, value in values.items():
        name = canonical_setting_name(raw_name)
        if name is None:
            problems.append(f"unknown setting {raw_name!r}{did_you_mean(raw_name, FIELDS_BY_NAME)}")
            continue
        try:
            changes.update(setting_changes(name, value))
        except ValueError as exc:
            problems.append(str(exc))
    try:
        settings = dataclasses.replace(base or StyleSettings(), **changes)
    except SettingsError as exc:
        problems += [p for p in exc.problems if p not in problems]
        settings = None
    if problems:
        raise SettingsError(problems)
    return settings


def group_key(settings: StyleSettings, sizes: list[tuple[int, int]], regions: int = 0) -> str | None:
    """Jobs with equal keys can be optimised together in one group; None for jobs that run alone.

    ``sizes`` are the content sizes at each scale (:func:`schedule.scale_ladder`); ``regions``: the
    number of masks (0 without), since jobs with masks optimise a region per style. Only Adam
    groups: its update is per pixel, so each job keeps its own trajectory, while L-BFGS couples
    everything it optimises through its history.
    """
    if settings.optimizer != "adam":
        return None
    per_item = {f.name for f in SETTING_FIELDS if f.per_item}
    shared = {k: v for k, v in settings.to_dict().items() if k not in per_item and k != "end_scale"}
    key = (sorted(shared.items()), [tuple(s) for s in sizes])
    return repr(key if not regions else (*key, regions))



__all__ = [
    "StyleSettings", "SettingsError", "SettingField", "SETTING_FIELDS", "FIELDS_BY_NAME", "group_key",
    "parse_end_scale", "resolve_end_scale", "parse_layer_spec", "format_layer_spec", "setting_changes",
    "settings_from_text", "canonical_setting_name", "did_you_mean", "STYLE_LOSSES", "OPTIMIZERS", "INITS", "POOLINGS",
    "SCHEDULES",
    "DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS",
]
