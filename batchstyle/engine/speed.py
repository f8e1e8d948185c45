"""How the engine runs, as opposed to what it makes: precision, memory format, compilation.

:class:`Speed` is chosen per worker (or per ``batchstyle stylize`` call) and is not part of an
item's identity, like the device it runs on. ``auto`` values are resolved per device by
:meth:`Speed.resolve`, from what was measured (see the README's performance section).

This module does not import torch at import time, so that ``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
MIN_TILE = 64  # px: smaller cores would be mostly margin (80 px on every side up to relu5_1)


def parse_tile(value: Any) -> str | int:
    """``auto``, ``off`` or a tile core size in pixels (``512``, ``"512"``, ``"512px"``)."""
    text = value.strip().lower().removesuffix("px") if isinstance(value, str) else value
    if text in ("auto", "off"):
        return text
    try:
        size = int(text)
    except (TypeError, ValueError):
        size = 0
    if isinstance(value, bool) or size < MIN_TILE:
        raise ValueError(f"tile must be auto, off or a tile size in pixels of at least {MIN_TILE}, not {value!r}")
    return size


@dataclass(frozen=True)
class Speed:
    """Execution options of the engine.

    ``precision``: ``fp32`` (IEEE float32 everywhere, as the reference on a CPU), ``tf32``
    (convolutions on TF32 tensor cores; a CPU runs them as fp32), ``bf16`` (convolutions in
    bfloat16 under autocast; Gram matrices, losses, targets and the optimizer stay float32), or
    ``auto``. ``memory_format``: NCHW, channels_last, or ``auto``. ``compile``: ``torch.compile``
    the network for each scale's fixed size (CUDA graphs on CUDA). ``loss_every``: read the loss
    back from the device every N iterations (and at the end of each scale), so a GPU is not
    stalled each step; 0 means automatic (1 on CPU, 10 on GPU). ``tile``: evaluate the objective
    tile by tile (the same result, in the memory of one tile; ``docs/tiling.md``): ``auto``
    tiles a scale only when the whole image would not fit the device's memory, ``off`` never
    tiles, a number tiles every scale larger than it with cores of that many pixels.
    """

    precision: str = "auto"
    memory_format: str = "auto"
    compile: bool = False
    loss_every: int = 0
    tile: str | int = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, "
                             f"not {self.memory_format!r}")
        if not isinstance(self.loss_every, int) or self.loss_every < 0:
            raise ValueError(f"loss_every must be a whole number >= 0, not {self.loss_every!r}")
        object.__setattr__(self, "tile", parse_tile(self.tile))

    def replace(self, **changes: Any) -> "Speed":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Speed":
        return cls(**(data or {}))

    def resolve(self, devices: Sequence[Any]) -> "Speed":
        """Concrete values for these torch devices (the first device decides)."""
        kind = getattr(devices[0], "type", str(devices[0]).split(":")[0])
        precision = self.precision
        if precision == "auto":
            precision = auto_precision(kind, devices[0])
        memory_format = self.memory_format
        if memory_format == "auto":
            # cuDNN's tensor-core kernels want NHWC; on CPU (oneDNN) it measured no faster.
            memory_format = "channels_last" if kind == "cuda" else "contiguous"
        loss_every = self.loss_every or (1 if kind == "cpu" else 10)
        return Speed(precision, memory_format, self.compile, loss_every, self.tile)

    def label(self) -> str:
        """Short name, e.g. ``bf16 NHWC compile`` or ``fp32 NCHW tile=512``."""
        layout = {"channels_last": "NHWC", "contiguous": "NCHW"}.get(self.memory_format, "auto-format")
        tiles = [] if self.tile == "auto" else [f"tile={self.tile}"]
        return " ".join([self.precision, layout] + (["compile"] if self.compile else []) + tiles)


def auto_precision(kind: str, device: Any = None) -> str:
    """bf16 where the hardware has native bfloat16 matrix units, else fp32.

    On CPU that is AVX512-BF16 or AMX: measured 1.5-1.7x faster per iteration on such a CPU
    (AMD EPYC, 2 cores) with the final loss within 0.1 % of fp32. On CUDA, compute capability 8.0 and later
    (Ampere, Ada, Hopper) have bf16 tensor cores.
    """
    import torch

    if kind == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware: AVX512-BF16 or AMX on x86, the BF16
    extension on ARM. (oneDNN also runs bf16 on plain AVX-512 by emulation, slower than fp32.)"""
    import platform

    import torch

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


__all__ = ["Speed", "PRECISIONS", "MEMORY_FORMATS", "MIN_TILE", "parse_tile", "auto_precision", "cpu_has_native_bf16"]
