"""Find, load, validate and cache the VGG-19 conv weights.

Order: an explicit file (argument, then ``BATCHSTYLE_WEIGHTS``), then the local cache, then
torchvision's IMAGENET1K_V1 download (only the conv layers are kept and cached as safetensors).
There is no fallback to random weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save

from .files import ENV_CACHE, atomic_write, cache_dir
from .layers import CONV_INDICES, CONV_SHAPES

ENV_WEIGHTS = "BATCHSTYLE_WEIGHTS"
CACHE_NAME = "vgg19_features.safetensors"
KEYS = tuple(f"features.{i}.{kind}" for i in CONV_INDICES for kind in ("weight", "bias"))


class WeightsError(RuntimeError):
    """The VGG-19 weights could not be found or are not usable; the message says what to do."""


@dataclass(frozen=True)
class VGGWeights:
    """The 32 conv tensors of VGG-19 in torchvision's key layout, float32 on the CPU."""

    tensors: Mapping[str, torch.Tensor]
    source: str
    identity: str

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object], source: str) -> "VGGWeights":
        tensors = _conv_tensors(state, source)
        return cls(tensors=tensors, source=source, identity=_identity(tensors))

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Plain arrays (zero-copy through Ray's object store)."""
        return {k: v.numpy() for k, v in self.tensors.items()}

    @classmethod
    def from_numpy(cls, arrays: Mapping[str, np.ndarray], source: str = "memory",
                   identity: str | None = None) -> "VGGWeights":
        tensors = {k: torch.tensor(np.asarray(v)) for k, v in arrays.items()}
        checked = _conv_tensors(tensors, source)
        return cls(tensors=checked, source=source, identity=identity or _identity(checked))

    def save(self, path: Path) -> None:
        data = save({k: v.contiguous() for k, v in self.tensors.items()},
                    metadata={"format": "pt", "layout": "torchvision vgg19().features conv layers",
                              "identity": self.identity})
        atomic_write(path, data)


def _conv_tensors(state: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    """Keep the conv tensors of a features-only or full VGG-19 state dict, checked and float32."""
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected a state dict of tensors, found {type(state).__name__}; "
                           f"save the model's state_dict(), not the model")
    out: dict[str, torch.Tensor] = {}
    prefixed = any(str(k).startswith("features.") for k in state)
    for raw_key, value in state.items():
        key = str(raw_key).removeprefix("module.")
        if not prefixed:
            key = "features." + key
        if key in KEYS:
            if not isinstance(value, torch.Tensor):
                raise WeightsError(f"{source}: {raw_key} is not a tensor")
            out[key] = value.detach().to("cpu", torch.float32).contiguous()
    missing = [k for k in KEYS if k not in out]
    if missing:
        raise WeightsError(f"{source}: not VGG-19 weights in torchvision's layout; missing {len(missing)} of "
                           f"{len(KEYS)} conv tensors (first: {missing[0]}). Expected keys like "
                           f"features.0.weight (or 0.weight) for the 16 conv layers")
    for i in CONV_INDICES:
        out_ch, in_ch = CONV_SHAPES[i]
        for kind, shape in (("weight", (out_ch, in_ch, 3, 3)), ("bias", (out_ch,))):
            got = tuple(out[f"features.{i}.{kind}"].shape)
            if got != shape:
                raise WeightsError(f"{source}: features.{i}.{kind} has shape {got}, expected {shape}; "
                                   f"is this VGG-19 (not VGG-16)?")
        if not torch.isfinite(out[f"features.{i}.weight"]).all():
            raise WeightsError(f"{source}: features.{i}.weight contains NaN or infinity")
    return out


def _identity(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in KEYS:
        t = tensors[key]
        digest.update(key.encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return "vgg19-" + digest.hexdigest()[:16]


ACCEPTED = ("Accepted: a .safetensors, .pt or .pth file holding VGG-19's 16 conv layers in torchvision's key "
            "layout (features.0.weight ... features.34.bias, or a full vgg19() state dict), such as "
            "vgg19_features.safetensors.")


def _first_line(exc: BaseException) -> str:
    """A library's error in one short line (torch.load's run to a page of advice about pickles)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load_weights_file(path: str | os.PathLike) -> VGGWeights:
    """Load a features-only or full VGG-19 state dict from .safetensors or .pt/.pth."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which, and what is accepted
        # torch.load's own text is a page of advice about pickles; its type says enough
        why = _first_line(exc) if path.suffix == ".safetensors" else type(exc).__name__
        kind = "safetensors" if path.suffix == ".safetensors" else "a PyTorch file"
        raise WeightsError(f"{path} is not a VGG-19 weights file: it cannot be read as {kind} ({why}). "
                           f"{ACCEPTED}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return VGGWeights.from_state_dict(state, source=str(path))


def _download_torchvision() -> Mapping[str, torch.Tensor]:
    """torchvision's weights, downloaded quietly: callers say what happens, in their own words."""
    from torchvision.models import VGG19_Weights

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # torch.hub's "Downloading: URL"
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)


def resolve_weights(path: str | os.PathLike | None = None, *, download: bool = True,
                    downloader: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> VGGWeights:
    """Find the weights: ``path``, ``$BATCHSTYLE_WEIGHTS``, the cache, then torchvision's download."""
    explicit = path if path is not None else os.environ.get(ENV_WEIGHTS) or None
    if explicit is not None:
        return load_weights_file(explicit)
    cached = cache_dir() / CACHE_NAME
    if cached.is_file():
        return load_weights_file(cached)
    problem = "downloading is turned off"
    if download:
        try:
            state = (downloader or _download_torchvision)()
        except Exception as exc:  # offline, proxy, disk full...
            problem = f"the download of torchvision's IMAGENET1K_V1 weights failed ({type(exc).__name__}: {exc})"
        else:
            weights = VGGWeights.from_state_dict(state, source="torchvision IMAGENET1K_V1")
            weights.save(cached)
            return VGGWeights(weights.tensors, source=str(cached), identity=weights.identity)
    raise WeightsError(
        f"no VGG-19 weights: none were given, none are cached at {cached}, and {problem}.\n"
        f"Either give a VGG-19 weights file in torchvision's key layout (.safetensors, .pt or .pth), or set "
        f"{ENV_WEIGHTS}=PATH, or run once with internet access so torchvision's weights are downloaded and "
        f"cached at {cached}.")


__all__ = ["VGGWeights", "WeightsError", "resolve_weights", "load_weights_file", "cache_dir",
           "ENV_WEIGHTS", "ENV_CACHE"]
