"""The multi-scale style transfer loop (engine-spec §3–§5), its progress events and checkpoints.

A :class:`Stylizer` holds the VGG-19 weights on its devices and is reused for many images. Its
:meth:`Stylizer.run` returns a :class:`StyleRun`: iterate it to optimise, one :class:`Progress`
event per iteration and one :class:`ScaleFinished` (carrying a :class:`Checkpoint`) per scale.
Stop iterating whenever you like; :meth:`StyleRun.image` always gives the current averaged image.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch.nn import functional as F

from .events import Progress, ScaleFinished
from .images import atomic_write, to_uint8
from .losses import STYLE_LOSSES, ContentLoss, TVLoss, default_style_layer_weights, normalized
from .optim import EMA, AdamMoments, make_adam, make_lbfgs
from .schedule import content_sizes, scale_schedule, size_to_fit, style_size_at
from .settings import StyleSettings, resolve_end_scale
from .vgg import LAYER_INDEX, LAYER_NAMES, VGGFeatures, device_plan, layer_index, min_input_size
from .weights import VGGWeights, load_weights_file, resolve_weights


class DeviceError(ValueError):
    """A requested device does not exist on this machine."""


class StopStylize(Exception):
    """Raise from a :func:`stylize` callback to end the run early and keep the current image."""


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float ``[1, 3, H, W]`` tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)[None]


def resized(image: Image.Image, w: int, h: int) -> Image.Image:
    return image if image.size == (w, h) else image.resize((w, h), Image.LANCZOS)


# --- events and checkpoints -------------------------------------------------------------------------

CHECKPOINT_FORMAT = "batchstyle-checkpoint-1"


@dataclass
class Checkpoint:
    """The state at the end of a scale: enough to continue with the next scale, bit for bit on CPU."""

    scale_index: int
    scale_count: int
    image: torch.Tensor  # [1, 3, H, W] averaged image, CPU
    adam: AdamMoments | None
    rng_state: torch.Tensor
    fingerprint: str

    def to_bytes(self) -> bytes:
        tensors = {"image": self.image.contiguous(), "rng_state": self.rng_state.contiguous()}
        meta = {"format": CHECKPOINT_FORMAT, "scale_index": str(self.scale_index),
                "scale_count": str(self.scale_count), "fingerprint": self.fingerprint}
        if self.adam is not None:
            tensors["exp_avg"] = self.adam.exp_avg.contiguous()
            tensors["exp_avg_sq"] = self.adam.exp_avg_sq.contiguous()
            meta["adam_step"] = repr(self.adam.step)
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "checkpoint") -> "Checkpoint":
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
            tensors = st_load(data)
        except Exception as exc:
            raise ValueError(f"{name}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{name}: not a batchstyle checkpoint (format {meta.get('format')!r})")
        adam = None
        if "exp_avg" in tensors:
            adam = AdamMoments(tensors["exp_avg"], tensors["exp_avg_sq"], float(meta["adam_step"]))
        return cls(int(meta["scale_index"]), int(meta["scale_count"]), tensors["image"], adam,
                   tensors["rng_state"], meta["fingerprint"])

    def save(self, path: str | os.PathLike) -> None:
        atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Checkpoint":
        return cls.from_bytes(Path(path).read_bytes(), name=str(path))


# --- devices ----------------------------------------------------------------------------------------

def default_devices() -> list[str]:
    return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]


def check_devices(devices: Sequence[str | torch.device]) -> list[torch.device]:
    """Parse device names and make sure each exists, with an error that says what is available."""
    out = []
    for name in devices:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"{name!r} is not a device name; use cpu, cuda, cuda:0, cuda:1, mps ...") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceError(f"{name} was asked for, but PyTorch {torch.__version__} sees no CUDA GPU "
                                  f"(no GPU, no driver, or a CPU-only build); use --devices cpu")
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise DeviceError(f"{name} was asked for, but only {torch.cuda.device_count()} CUDA "
                                  f"device(s) are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
            dev = torch.device("cuda", index)
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError(f"{name} was asked for, but MPS is not available here; use --devices cpu")
        out.append(dev)
    if not out:
        raise DeviceError("at least one device is needed")
    return out


def peak_gpu_bytes(devices: Sequence[torch.device]) -> int:
    return max((torch.cuda.max_memory_allocated(d) for d in devices if d.type == "cuda"), default=0)


# --- the engine -------------------------------------------------------------------------------------

class Stylizer:
    """VGG-19 on one or more devices, ready to stylize any number of images.

    ``weights``: a :class:`VGGWeights`, a state dict, a file path, or None to resolve them
    (``BATCHSTYLE_WEIGHTS``, cache, torchvision download). ``devices``: one device, or several to
    split the network over them (``split`` names the first layer on each extra device).
    """

    def __init__(self, weights: VGGWeights | Mapping | str | os.PathLike | None = None,
                 devices: Sequence[str | torch.device] | None = None, split: Sequence[str] | None = None):
        if weights is None:
            weights = resolve_weights()
        elif isinstance(weights, (str, os.PathLike)):
            weights = load_weights_file(weights)
        elif not isinstance(weights, VGGWeights):
            weights = VGGWeights.from_state_dict(weights, source="memory")
        self.weights = weights
        self.devices = check_devices(devices if devices else default_devices())
        self.split = tuple(split) if split else None
        starts = device_plan(self.devices, self.split)
        self._placed = {}
        for key, tensor in weights.tensors.items():
            index = int(key.split(".")[1])
            self._placed[key] = tensor.to(self.devices[sum(1 for s in starts if s <= index)])
        self._models: dict[tuple, VGGFeatures] = {}

    def features(self, layers: Sequence[str], pooling: str = "max") -> VGGFeatures:
        """A feature extractor reaching the deepest of ``layers`` (cached, sharing the weights)."""
        deepest = max(layer_index(n) for n in layers)
        key = (deepest, pooling)
        if key not in self._models:
            self._models[key] = VGGFeatures(self._placed, [LAYER_NAMES[deepest]], pooling=pooling,
                                            devices=self.devices, split=self.split)
        return self._models[key]

    def run(self, content: Image.Image, styles: Sequence[Image.Image], settings: StyleSettings | None = None,
            checkpoint: Checkpoint | None = None) -> "StyleRun":
        return StyleRun(self, content, styles, settings or StyleSettings(), checkpoint)


class StyleRun:
    """One stylization. Iterate it to optimise; read :meth:`image` at any point."""

    def __init__(self, stylizer: Stylizer, content: Image.Image, styles: Sequence[Image.Image],
                 settings: StyleSettings, checkpoint: Checkpoint | None = None):
        if not styles:
            raise ValueError("at least one style image is needed")
        self.stylizer = stylizer
        self.settings = settings
        self.content = content.convert("RGB")
        self.styles = [s.convert("RGB") for s in styles]
        self.blend = settings.blend_weights(len(self.styles))
        self.end_scale = resolve_end_scale(settings.end_scale, self.content.size)
        self.scales = scale_schedule(self.end_scale, settings.min_scale)
        self.sizes = [size_to_fit(self.content.size, s, scale_up=True) for s in self.scales]
        self.devices = stylizer.devices
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        self.model = stylizer.features(self.layers, settings.pooling)
        self._check_sizes()
        self.fingerprint = self._fingerprint()
        if checkpoint is not None and checkpoint.fingerprint != self.fingerprint:
            raise ValueError("the checkpoint belongs to other images, settings or weights; start afresh")
        self.start_checkpoint = checkpoint
        self.checkpoint: Checkpoint | None = checkpoint
        self._generator = torch.Generator().manual_seed(settings.seed)
        self._ema: EMA | None = None
        self._image: torch.Tensor | None = None if checkpoint is None else checkpoint.image
        self._colors: dict[tuple[int, int], torch.Tensor] = {}
        self._events: Iterator | None = None

    # -- public ------------------------------------------------------------------------------------

    @property
    def total_iterations(self) -> int:
        s = self.settings
        return s.initial_iterations + s.iterations * (len(self.scales) - 1)

    def __iter__(self) -> Iterator[Progress | ScaleFinished]:
        if self._events is None:
            self._events = self._optimise()
        return self._events

    def image(self) -> torch.Tensor:
        """The current averaged image, ``[3, H, W]`` in [0, 1] on the CPU (with original colours if set)."""
        if self._ema is not None:
            current = self._ema.get()
        elif self._image is not None:
            current = self._image
        else:  # not started: the initial image, drawn from a fresh generator
            current = self._init_image(torch.Generator().manual_seed(self.settings.seed))
        out = current.detach().clamp(0, 1).to("cpu", torch.float32)
        if self.settings.original_colors:
            out = self._with_content_colors(out)
        return out[0]

    def pil(self) -> Image.Image:
        return Image.fromarray(to_uint8(self.image()), "RGB")

    # -- setup -------------------------------------------------------------------------------------

    def _check_sizes(self) -> None:
        s = self.settings
        full = max(layer_index(n) for n in s.content_layers + s.style_layers)
        deepest_style = max(layer_index(n) for n in s.style_layers)
        for scale, (w, h) in zip(self.scales, self.sizes):
            need = min_input_size(full)
            if min(w, h) < need:
                raise ValueError(f"the content image is {w}x{h} at scale {scale}, but layer {LAYER_NAMES[full]} "
                                 f"needs at least {need}x{need}; raise min_scale or crop the image")
            need = min_input_size(deepest_style)
            for k, style in enumerate(self.styles, 1):
                sw, sh = style_size_at(style.size, scale, s)
                if min(sw, sh) < need:
                    raise ValueError(f"style image {k} is {sw}x{sh} at scale {scale}, but layer "
                                     f"{LAYER_NAMES[deepest_style]} needs at least {need}x{need}; use a larger "
                                     f"style image, style_scale or style_size")

    def _fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps(self.settings.to_dict(), sort_keys=True).encode())
        digest.update(self.stylizer.weights.identity.encode())
        for image in [self.content, *self.styles]:
            digest.update(f"{image.size}".encode())
            digest.update(image.tobytes())
        return digest.hexdigest()

    def _init_image(self, gen: torch.Generator) -> torch.Tensor:
        s, (w, h) = self.settings, self.sizes[0]
        if s.init == "content":
            image = to_tensor(resized(self.content, w, h))
        elif s.init == "gray":
            image = torch.rand([1, 3, h, w], generator=gen) / 255 + 0.5
        elif s.init == "uniform":
            image = torch.rand([1, 3, h, w], generator=gen)
        elif s.init == "normal":
            image = torch.nn.init.trunc_normal_(torch.empty(1, 3, h, w), 0.5, 0.25, 0, 1, generator=gen)
        else:  # style_stats: per-channel truncated normal with the blended style mean and variance
            stats = [to_tensor(im)[0].flatten(1).double() for im in self.styles]
            mean = sum(wk * t.mean(1) for wk, t in zip(self.blend, stats))
            var = sum(wk * t.var(1) for wk, t in zip(self.blend, stats)).clamp(min=0)
            image = torch.empty(1, 3, h, w)
            for c in range(3):
                torch.nn.init.trunc_normal_(image[:, c], float(mean[c]), float(var[c].sqrt()), 0, 1, generator=gen)
        return image.to(self.devices[0])

    def _criterion(self, content: torch.Tensor, scale: int) -> Callable[[dict], torch.Tensor]:
        """The weighted objective at one scale: Σ content + Σ style + TV, summed on the first device."""
        s, model = self.settings, self.model
        with torch.no_grad():
            content_feats = model(content, layers=s.content_layers)
            per_style = []
            for image in self.styles:
                sw, sh = style_size_at(image.size, scale, s)
                style = to_tensor(resized(image, sw, sh)).to(self.devices[0])
                per_style.append(model(style, layers=s.style_layers))
        loss_cls = STYLE_LOSSES[s.style_loss]
        content_weights = normalized(s.content_layer_weights or [1.0] * len(s.content_layers))
        layer_weights = normalized(s.style_layer_weights or default_style_layer_weights(len(s.style_layers)))
        terms = []
        for name, weight in zip(s.content_layers, content_weights):
            i = LAYER_INDEX[name]
            terms.append((i, ContentLoss(content_feats[i]), s.content_weight * weight))
        for name, weight in zip(s.style_layers, layer_weights):
            i = LAYER_INDEX[name]
            target = loss_cls.blend([loss_cls.statistics(f[i]) for f in per_style], self.blend)
            terms.append((i, loss_cls(target), s.style_weight * weight))
        terms.append(("input", TVLoss(), s.tv_weight))
        first = self.devices[0]

        def objective(feats: dict) -> torch.Tensor:
            total = 0
            for key, loss, weight in terms:
                total = total + (loss(feats[key]) * weight).to(first)
            return total

        return objective

    def _with_content_colors(self, image: torch.Tensor) -> torch.Tensor:
        """Luminance of the result with the content's chroma (YUV), as neural-style's -original_colors."""
        h, w = image.shape[-2:]
        if (w, h) not in self._colors:
            self._colors[(w, h)] = rgb_to_yuv(to_tensor(resized(self.content, w, h)))
        yuv = self._colors[(w, h)].clone()
        yuv[:, 0] = rgb_to_yuv(image)[:, 0]
        return yuv_to_rgb(yuv).clamp(0, 1)

    # -- the loop ----------------------------------------------------------------------------------

    def _optimise(self) -> Iterator[Progress | ScaleFinished]:
        s, model, first = self.settings, self.model, self.devices[0]
        n = len(self.scales)
        cuda = [d for d in self.devices if d.type == "cuda"]
        for d in cuda:
            torch.cuda.reset_peak_memory_stats(d)
        if self.start_checkpoint is None:
            start, image, moments = 0, self._init_image(self._generator), None
        else:
            ckpt = self.start_checkpoint
            start, image, moments = ckpt.scale_index + 1, ckpt.image.to(first), ckpt.adam
            self._generator.set_state(ckpt.rng_state)
        t0 = time.time()
        for k in range(start, n):
            scale, (w, h) = self.scales[k], self.sizes[k]
            if cuda:
                torch.cuda.empty_cache()
            content = to_tensor(resized(self.content, w, h)).to(first)
            x = F.interpolate(image.detach(), (h, w), mode="bicubic", align_corners=False).clamp(0, 1)
            self._ema = EMA(x, s.avg_decay)
            x.requires_grad_()
            objective = self._criterion(content, scale)
            adam = s.optimizer == "adam"
            opt = make_adam(x, s.step_size, moments) if adam else make_lbfgs(x)
            if cuda:
                torch.cuda.empty_cache()
            iterations = s.initial_iterations if k == 0 else s.iterations
            for i in range(1, iterations + 1):
                if adam:
                    loss = objective(model(x, self.layers))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0, 1)
                else:
                    def closure():
                        opt.zero_grad()
                        value = objective(model(x, self.layers))
                        value.backward()
                        return value
                    loss = opt.step(closure)
                self._ema.update(x)
                now = time.time()
                yield Progress(k, n, w, h, i, iterations, loss.item(), now - t0, peak_gpu_bytes(cuda), now)
            with torch.no_grad():
                x.copy_(self._ema.get())
            image = x.detach()
            moments = AdamMoments.of(opt, x) if adam else None
            self._image, self._ema = image, None
            self.checkpoint = Checkpoint(
                k, n, image.to("cpu", copy=True),
                None if moments is None else AdamMoments(moments.exp_avg.cpu(), moments.exp_avg_sq.cpu(),
                                                         moments.step),
                self._generator.get_state(), self.fingerprint)
            yield ScaleFinished(k, n, w, h, self.checkpoint)


# --- colour conversion for original_colors --------------------------------------------------------

_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.14713, -0.28886, 0.436],
                            [0.615, -0.51499, -0.10001]])
_YUV_TO_RGB = torch.linalg.inv(_RGB_TO_YUV)


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YUV.to(image), image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YUV_TO_RGB.to(image), image)


# --- one call ---------------------------------------------------------------------------------------

def stylize(content: Image.Image, styles: Image.Image | Sequence[Image.Image],
            settings: StyleSettings | None = None, *,
            weights: VGGWeights | Mapping | str | os.PathLike | None = None,
            devices: Sequence[str] | None = None, stylizer: Stylizer | None = None,
            callback: Callable[[Progress | ScaleFinished], object] | None = None,
            checkpoint: Checkpoint | None = None, **overrides) -> Image.Image:
    """Stylize ``content`` with one or more style images and return the result as a PIL image.

    Settings come from ``settings`` with keyword ``overrides`` on top (``end_scale=256``, ...).
    ``callback`` receives every event; raising :class:`StopStylize` in it ends the run early and the
    current image is returned.
    """
    settings = (settings or StyleSettings()).replace(**overrides)
    if isinstance(styles, Image.Image):
        styles = [styles]
    stylizer = stylizer or Stylizer(weights, devices)
    run = stylizer.run(content, styles, settings, checkpoint)
    try:
        for event in run:
            if callback is not None:
                callback(event)
    except StopStylize:
        pass
    return run.pil()


__all__ = ["Stylizer", "StyleRun", "Progress", "ScaleFinished", "Checkpoint", "StopStylize", "DeviceError",
           "stylize", "scale_schedule", "size_to_fit", "style_size_at", "content_sizes", "check_devices",
           "default_devices", "to_tensor", "rgb_to_yuv", "yuv_to_rgb"]
