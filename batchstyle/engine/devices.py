"""The devices a stylizer runs on: names checked against this machine, process-wide backend flags,
GPU memory bookkeeping."""

from __future__ import annotations

from typing import Sequence

import torch

from .speed import Speed


class DeviceError(ValueError):
    """A requested device does not exist on this machine."""


def default_devices() -> list[str]:
    return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]


def check_devices(devices: Sequence[str | torch.device]) -> list[torch.device]:
    """Parse device names and make sure each exists, with an error that says what is available."""
    out = [_checked(name) for name in devices]
    if not out:
        raise DeviceError("at least one device is needed")
    return out


def _checked(name: str | torch.device) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{name!r} is not a device name; use cpu, cuda, cuda:0, cuda:1, mps ...") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{name} was asked for, but PyTorch {torch.__version__} sees no CUDA GPU "
                              f"(no GPU, no driver, or a CPU-only build); use the cpu device")
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise DeviceError(f"{name} was asked for, but only {count} CUDA device(s) are visible "
                              f"(cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", index)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{name} was asked for, but MPS is not available here; use the cpu device")
    return dev


def configure_torch(devices: Sequence[torch.device], speed: Speed) -> None:
    """Set the process-wide backend flags that ``speed`` asks for on these devices (once, for a new stylizer).

    On CUDA, fp32 means IEEE float32 convolutions and tf32 lets cuDNN use TF32 tensor cores (Gram
    matrices, being matmuls, keep PyTorch's float32 default either way); cuDNN autotunes once per
    shape, since every scale has a fixed size. Compiling keeps one graph per scale size and group
    size, and a worker sees many over its life.
    """
    if any(d.type == "cuda" for d in devices):
        use_tf32_convolutions(speed.precision == "tf32")
        torch.backends.cudnn.benchmark = True
    if speed.compile:
        from torch import _dynamo

        _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 256)


def use_tf32_convolutions(enabled: bool) -> None:
    """Let cuDNN run float32 convolutions on TF32 tensor cores, or not (process-wide)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision"):  # torch >= 2.9
        conv.fp32_precision = "tf32" if enabled else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = enabled


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device, or the CPU's allocator, had no memory left for a tensor."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def reset_peak_memory(devices: Sequence[torch.device]) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.reset_peak_memory_stats(d)


def peak_gpu_bytes(devices: Sequence[torch.device]) -> int:
    return max((torch.cuda.max_memory_allocated(d) for d in devices if d.type == "cuda"), default=0)


def release_cached_memory(devices: Sequence[torch.device]) -> None:
    """Hand the CUDA allocator's cached blocks back, so that the next scale's larger tensors fit."""
    if any(d.type == "cuda" for d in devices):
        torch.cuda.empty_cache()


__all__ = ["DeviceError", "default_devices", "check_devices", "configure_torch", "use_tf32_convolutions",
           "is_out_of_memory", "reset_peak_memory", "peak_gpu_bytes", "release_cached_memory"]
