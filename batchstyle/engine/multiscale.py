"""The multi-scale style transfer loop (engine-spec §3–§5), its progress events and checkpoints.

A :class:`Stylizer` holds the VGG-19 weights on its devices and is reused for many images. Its
:meth:`Stylizer.run` returns a :class:`StyleRun`: iterate it to optimise, one :class:`Progress`
event per iteration and one :class:`ScaleFinished` (carrying a :class:`Checkpoint`) per scale.
Stop iterating whenever you like; :meth:`StyleRun.image` always gives the current averaged image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
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
from .schedule import scale_ladder, scale_schedule, size_to_fit, style_size_at
from .settings import StyleSettings, batch_key
from .speed import Speed
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

class TargetCache:
    """Style statistics per (style image, size, layers, pooling, loss), kept on the device.

    Every item that uses a style image at a scale needs the same target statistics; a worker
    computes them once and reuses them for every later item, until ``max_bytes`` is exceeded
    (least recently used entries go first).
    """

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, list] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(stats: list) -> int:
        return sum(t.numel() * t.element_size() for s in stats for t in (s if isinstance(s, tuple) else (s,)))

    def get(self, key: tuple, compute: Callable[[], list]) -> list:
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        stats = compute()
        self.entries[key] = stats
        self.bytes += self._size(stats)
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, old = self.entries.popitem(last=False)
            self.bytes -= self._size(old)
        return stats


class Stylizer:
    """VGG-19 on one or more devices, ready to stylize any number of images.

    ``weights``: a :class:`VGGWeights`, a state dict, a file path, or None to resolve them
    (``BATCHSTYLE_WEIGHTS``, cache, torchvision download). ``devices``: one device, or several to
    split the network over them (``split`` names the first layer on each extra device).
    ``speed``: precision, memory format and compilation (:class:`Speed`; ``auto`` by default).
    """

    def __init__(self, weights: VGGWeights | Mapping | str | os.PathLike | None = None,
                 devices: Sequence[str | torch.device] | None = None, split: Sequence[str] | None = None,
                 speed: Speed | None = None):
        if weights is None:
            weights = resolve_weights()
        elif isinstance(weights, (str, os.PathLike)):
            weights = load_weights_file(weights)
        elif not isinstance(weights, VGGWeights):
            weights = VGGWeights.from_state_dict(weights, source="memory")
        self.weights = weights
        self.devices = check_devices(devices if devices else default_devices())
        self.split = tuple(split) if split else None
        self.speed = (speed or Speed()).resolve(self.devices)
        starts = device_plan(self.devices, self.split)
        self._placed = {}
        for key, tensor in weights.tensors.items():
            index = int(key.split(".")[1])
            self._placed[key] = tensor.to(self.devices[sum(1 for s in starts if s <= index)])
        self._models: dict[tuple, VGGFeatures] = {}
        self._compiled: dict[tuple, Callable] = {}
        self.targets = TargetCache()

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.speed.memory_format == "channels_last" else torch.contiguous_format

    def features(self, layers: Sequence[str], pooling: str = "max") -> VGGFeatures:
        """A feature extractor reaching the deepest of ``layers`` (cached, sharing the weights)."""
        deepest = max(layer_index(n) for n in layers)
        key = (deepest, pooling)
        if key not in self._models:
            model = VGGFeatures(self._placed, [LAYER_NAMES[deepest]], pooling=pooling,
                                devices=self.devices, split=self.split)
            self._models[key] = model.to(memory_format=self.memory_format)
        return self._models[key]

    def iteration_forward(self, model: VGGFeatures) -> Callable:
        """The forward pass used for optimisation steps: the model, compiled if ``speed.compile``."""
        if not self.speed.compile:
            return model
        key = (model.deepest, model.pooling)
        if key not in self._compiled:
            import torch._dynamo

            # one graph per scale size and batch size; a worker sees many over its life
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
            twin = VGGFeatures(self._placed, [LAYER_NAMES[model.deepest]], pooling=model.pooling,
                               devices=self.devices, split=self.split, compilable=True)
            self._compiled[key] = torch.compile(twin.to(memory_format=self.memory_format), dynamic=False)
        return self._compiled[key]

    def run(self, content: Image.Image, styles: Sequence[Image.Image], settings: StyleSettings | None = None,
            checkpoint: Checkpoint | None = None) -> "StyleRun":
        return StyleRun(self, [Job(content, styles, settings or StyleSettings(), checkpoint)])

    def run_batch(self, jobs: Sequence["Job"]) -> "BatchRun":
        """Several items of the same size and loop settings, optimised together (see :class:`BatchRun`)."""
        return BatchRun(self, jobs)


@dataclass
class Job:
    """One item of a :class:`BatchRun`."""

    content: Image.Image
    styles: Sequence[Image.Image]
    settings: StyleSettings = field(default_factory=StyleSettings)
    checkpoint: Checkpoint | None = None


def image_digest(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class _Item:
    """The per-item state of a run: its images, settings, random stream, checkpoint."""

    def __init__(self, job: Job, weights_identity: str):
        if not job.styles:
            raise ValueError("at least one style image is needed")
        self.settings = job.settings
        self.content = job.content.convert("RGB")
        self.styles = [s.convert("RGB") for s in job.styles]
        self.style_digests = [image_digest(s) for s in self.styles]
        self.blend = job.settings.blend_weights(len(self.styles))
        digest = hashlib.sha256(json.dumps(self.settings.to_dict(), sort_keys=True).encode())
        digest.update(weights_identity.encode())
        for image in [self.content, *self.styles]:
            digest.update(f"{image.size}".encode())
            digest.update(image.tobytes())
        self.fingerprint = digest.hexdigest()
        if job.checkpoint is not None and job.checkpoint.fingerprint != self.fingerprint:
            raise ValueError("the checkpoint belongs to other images, settings or weights; start afresh")
        self.start_checkpoint = job.checkpoint
        self.checkpoint = job.checkpoint
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        if job.checkpoint is not None:
            self.generator.set_state(job.checkpoint.rng_state)
        self.colors: dict[tuple[int, int], torch.Tensor] = {}


class BatchRun:
    """One or more stylizations optimised together. Iterate it for ``(item_index, event)`` pairs.

    All items share the content size at every scale and the loop settings (see
    :func:`settings.batch_key`); their weights, styles, seeds and inits may differ. Each item has
    its own loss, Adam moments, average and random stream, so its result is the one it would get
    alone (up to float rounding of the batched convolutions). Progress and checkpoints are per item.
    """

    def __init__(self, stylizer: Stylizer, jobs: Sequence[Job]):
        if not jobs:
            raise ValueError("a batch needs at least one item")
        self.stylizer = stylizer
        self.speed = stylizer.speed
        self.items = [_Item(job, stylizer.weights.identity) for job in jobs]
        first = self.items[0]
        self.settings = first.settings
        self.ladder = scale_ladder(first.content.size, self.settings)
        self.scales = [scale.long_side for scale in self.ladder]
        self.sizes = [scale.size for scale in self.ladder]
        if len(self.items) > 1:
            key = batch_key(self.settings, self.sizes)
            for k, item in enumerate(self.items[1:], 2):
                other = batch_key(item.settings, [sc.size for sc in scale_ladder(item.content.size, item.settings)])
                if key is None or other != key:
                    raise ValueError(f"item {k} cannot share a batch with item 1: batched items need Adam, the "
                                     "same content size at every scale and the same loop settings")
            starts = {None if it.checkpoint is None else it.checkpoint.scale_index for it in self.items}
            if len(starts) > 1:
                raise ValueError("batched items must all resume from the same scale or all start afresh")
        self.devices = stylizer.devices
        self.layers = tuple(dict.fromkeys(self.settings.content_layers + self.settings.style_layers))
        self.model = stylizer.features(self.layers, self.settings.pooling)
        self.forward = stylizer.iteration_forward(self.model)
        for item in self.items:
            self._check_sizes(item)
        self._ema: EMA | None = None
        self._image: torch.Tensor | None = None
        if first.start_checkpoint is not None:
            self._image = torch.cat([it.start_checkpoint.image for it in self.items])
        self._objective: Callable | None = None
        self._events: Iterator | None = None

    # -- public ------------------------------------------------------------------------------------

    @property
    def total_iterations(self) -> int:
        return sum(scale.iterations for scale in self.ladder)

    def __iter__(self) -> Iterator[tuple[int, Progress | ScaleFinished]]:
        if self._events is None:
            self._events = self._optimise()
        return self._events

    def checkpoint_of(self, index: int) -> Checkpoint | None:
        """Item ``index``'s checkpoint at the end of the last finished scale (or the one it resumed from)."""
        return self.items[index].checkpoint

    def _current(self) -> torch.Tensor:
        if self._ema is not None:
            return self._ema.get()
        if self._image is not None:
            return self._image
        # not started: the initial images, drawn from fresh generators
        return torch.cat([self._init_image(it, torch.Generator().manual_seed(it.settings.seed))
                          for it in self.items])

    def image(self, index: int = 0) -> torch.Tensor:
        """Item ``index``'s current averaged image, ``[3, H, W]`` in [0, 1] on the CPU."""
        current = self._current()[index:index + 1]
        out = current.detach().clamp(0, 1).to("cpu", torch.float32).contiguous()
        item = self.items[index]
        if item.settings.original_colors:
            out = self._with_content_colors(item, out)
        return out[0]

    def pil(self, index: int = 0) -> Image.Image:
        return Image.fromarray(to_uint8(self.image(index)), "RGB")

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Each item's loss for its current averaged image at the current scale, in float32."""
        if self._objective is None:
            raise RuntimeError("evaluate() needs a run that has optimised at least one iteration")
        x = self._current().detach().to(self.devices[0]).contiguous(memory_format=self.stylizer.memory_format)
        return self._objective(self.model(x, self.layers)).tolist()

    # -- setup -------------------------------------------------------------------------------------

    def _check_sizes(self, item: _Item) -> None:
        s = item.settings
        full = max(layer_index(n) for n in s.content_layers + s.style_layers)
        deepest_style = max(layer_index(n) for n in s.style_layers)
        for scale, (w, h) in zip(self.scales, self.sizes):
            need = min_input_size(full)
            if min(w, h) < need:
                raise ValueError(f"the content image is {w}x{h} at scale {scale}, but layer {LAYER_NAMES[full]} "
                                 f"needs at least {need}x{need}; raise min_scale or crop the image")
            need = min_input_size(deepest_style)
            for k, style in enumerate(item.styles, 1):
                sw, sh = style_size_at(style.size, scale, s)
                if min(sw, sh) < need:
                    raise ValueError(f"style image {k} is {sw}x{sh} at scale {scale}, but layer "
                                     f"{LAYER_NAMES[deepest_style]} needs at least {need}x{need}; use a larger "
                                     f"style image, style_scale or style_size")

    def _init_image(self, item: _Item, gen: torch.Generator) -> torch.Tensor:
        s, (w, h) = item.settings, self.sizes[0]
        if s.init == "content":
            image = to_tensor(resized(item.content, w, h))
        elif s.init == "gray":
            image = torch.rand([1, 3, h, w], generator=gen) / 255 + 0.5
        elif s.init == "uniform":
            image = torch.rand([1, 3, h, w], generator=gen)
        elif s.init == "normal":
            image = torch.nn.init.trunc_normal_(torch.empty(1, 3, h, w), 0.5, 0.25, 0, 1, generator=gen)
        else:  # style_stats: per-channel truncated normal with the blended style mean and variance
            stats = [to_tensor(im)[0].flatten(1).double() for im in item.styles]
            mean = sum(wk * t.mean(1) for wk, t in zip(item.blend, stats))
            var = sum(wk * t.var(1) for wk, t in zip(item.blend, stats)).clamp(min=0)
            image = torch.empty(1, 3, h, w)
            for c in range(3):
                torch.nn.init.trunc_normal_(image[:, c], float(mean[c]), float(var[c].sqrt()), 0, 1, generator=gen)
        return image.to(self.devices[0])

    def _style_statistics(self, item: _Item, k: int, scale: int) -> list:
        """Style image ``k``'s target statistics at ``scale``, per style layer (from the worker's cache)."""
        s, image = self.settings, item.styles[k]
        sw, sh = style_size_at(image.size, scale, item.settings)
        loss_cls = STYLE_LOSSES[s.style_loss]
        key = (item.style_digests[k], sw, sh, s.style_layers, s.pooling, s.style_loss, self.model.deepest,
               self.speed.precision)

        def compute() -> list:
            style = to_tensor(resized(image, sw, sh)).to(self.devices[0])
            with self._precision_context():
                feats = self.model(style.contiguous(memory_format=self.stylizer.memory_format),
                                   layers=s.style_layers)
            # statistics outside autocast: Gram matrices and moments are float32 matmuls
            return [loss_cls.statistics(feats[LAYER_INDEX[name]].float()) for name in s.style_layers]

        return self.stylizer.targets.get(key, compute)

    def _criterion(self, content: torch.Tensor, scale: int) -> Callable[[dict], torch.Tensor]:
        """The weighted objective at one scale, one value per item: Σ content + Σ style + TV."""
        s, model, first = self.settings, self.model, self.devices[0]
        # Targets go through the same arithmetic as the iterate (bf16 convolutions under bf16), so
        # that rounding shifts both alike: the content image scores zero content loss, as in fp32.
        with torch.no_grad():
            with self._precision_context():
                content_feats = model(content, layers=s.content_layers)
            per_item = [[self._style_statistics(item, k, scale) for k in range(len(item.styles))]
                        for item in self.items]
        loss_cls = STYLE_LOSSES[s.style_loss]

        def weights(values: Callable[[StyleSettings], list[float]], device: torch.device) -> torch.Tensor:
            return torch.tensor([values(it.settings) for it in self.items], dtype=torch.float32, device=device)

        terms = []
        for j, name in enumerate(s.content_layers):
            i = LAYER_INDEX[name]
            w = weights(lambda st: st.content_weight * normalized(
                st.content_layer_weights or [1.0] * len(st.content_layers))[j], content_feats[i].device)
            terms.append((i, ContentLoss(content_feats[i].float()), w))
        for j, name in enumerate(s.style_layers):
            i = LAYER_INDEX[name]
            targets = [loss_cls.blend([stats[j] for stats in styles], item.blend)
                       for item, styles in zip(self.items, per_item)]
            target = torch.cat(targets) if s.style_loss == "gram" else \
                tuple(torch.cat(parts) for parts in zip(*targets))
            w = weights(lambda st: st.style_weight * normalized(
                st.style_layer_weights or default_style_layer_weights(len(st.style_layers)))[j],
                model.device_of(name))
            terms.append((i, loss_cls(target), w))
        terms.append(("input", TVLoss(), weights(lambda st: st.tv_weight, first)))

        def objective(feats: dict) -> torch.Tensor:
            total = 0
            for key, loss, weight in terms:
                total = total + (loss(feats[key].float()) * weight).to(first)
            return total

        return objective

    def _with_content_colors(self, item: _Item, image: torch.Tensor) -> torch.Tensor:
        """Luminance of the result with the content's chroma (YUV), as neural-style's -original_colors."""
        h, w = image.shape[-2:]
        if (w, h) not in item.colors:
            item.colors[(w, h)] = rgb_to_yuv(to_tensor(resized(item.content, w, h)))
        yuv = item.colors[(w, h)].clone()
        yuv[:, 0] = rgb_to_yuv(image)[:, 0]
        return yuv_to_rgb(yuv).clamp(0, 1)

    # -- the loop ----------------------------------------------------------------------------------

    def _precision_context(self):
        if self.speed.precision == "bf16":
            return torch.autocast(self.devices[0].type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _optimise(self) -> Iterator[tuple[int, Progress | ScaleFinished]]:
        s, first, speed = self.settings, self.devices[0], self.speed
        fmt, n, count = self.stylizer.memory_format, len(self.scales), len(self.items)
        cuda = [d for d in self.devices if d.type == "cuda"]
        if cuda:
            # fp32 means IEEE float32; tf32 lets cuDNN use TF32 tensor cores for the convolutions.
            # Gram matrices (matmuls) keep PyTorch's float32 default either way.
            torch.backends.cudnn.conv.fp32_precision = "tf32" if speed.precision == "tf32" else "ieee"
            torch.backends.cudnn.benchmark = True  # each scale has a fixed size: autotune once per shape
            for d in cuda:
                torch.cuda.reset_peak_memory_stats(d)
        first_item = self.items[0]
        if first_item.start_checkpoint is None:
            start, moments = 0, None
            image = torch.cat([self._init_image(it, it.generator) for it in self.items])
        else:
            start = first_item.start_checkpoint.scale_index + 1
            image = torch.cat([it.start_checkpoint.image for it in self.items]).to(first)
            adams = [it.start_checkpoint.adam for it in self.items]
            moments = None if adams[0] is None else AdamMoments(
                torch.cat([a.exp_avg for a in adams]), torch.cat([a.exp_avg_sq for a in adams]), adams[0].step)
        t0 = time.time()
        adam = s.optimizer == "adam"
        for k in range(start, n):
            scale, (w, h) = self.scales[k], self.sizes[k]
            if cuda:
                torch.cuda.empty_cache()
            content = torch.cat([to_tensor(resized(it.content, w, h)) for it in self.items]).to(first)
            content = content.contiguous(memory_format=fmt)
            x = F.interpolate(image.detach(), (h, w), mode="bicubic", align_corners=False).clamp(0, 1)
            x = x.contiguous(memory_format=fmt)
            self._ema = EMA(x, s.avg_decay)
            x.requires_grad_()
            objective = self._objective = self._criterion(content, scale)
            opt = make_adam(x, s.step_size, moments) if adam else make_lbfgs(x)
            if cuda:
                torch.cuda.empty_cache()
            iterations = self.ladder[k].iterations
            values: list[float] = [math.nan] * count
            for i in range(1, iterations + 1):
                if adam:
                    with self._precision_context():
                        feats = self.forward(x, self.layers)
                    losses = objective(feats)
                    opt.zero_grad()
                    losses.sum().backward()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0, 1)
                else:
                    def closure():
                        opt.zero_grad()
                        with self._precision_context():
                            feats = self.forward(x, self.layers)
                        value = objective(feats)
                        value.sum().backward()
                        return value
                    losses = opt.step(closure)
                self._ema.update(x)
                if i == 1 or i == iterations or i % speed.loss_every == 0:
                    values = losses.detach().float().tolist()
                now = time.time()
                peak = peak_gpu_bytes(cuda)
                for j in range(count):
                    yield j, Progress(k, n, w, h, i, iterations, values[j], now - t0, peak, now)
            with torch.no_grad():
                x.copy_(self._ema.get())
            image = x.detach()
            moments = AdamMoments.of(opt, x) if adam else None
            self._image, self._ema = image, None
            for j, item in enumerate(self.items):
                item.checkpoint = Checkpoint(
                    k, n, image[j:j + 1].to("cpu", copy=True).contiguous(),
                    None if moments is None else AdamMoments(moments.exp_avg[j:j + 1].cpu().contiguous(),
                                                             moments.exp_avg_sq[j:j + 1].cpu().contiguous(),
                                                             moments.step),
                    item.generator.get_state(), item.fingerprint)
            for j, item in enumerate(self.items):
                yield j, ScaleFinished(k, n, w, h, item.checkpoint)


class StyleRun(BatchRun):
    """One stylization. Iterate it to optimise (events without an item index); read :meth:`image` at any point."""

    def __init__(self, stylizer: Stylizer, jobs: Sequence[Job]):
        if len(jobs) != 1:
            raise ValueError("a StyleRun is one item; use Stylizer.run_batch for several")
        super().__init__(stylizer, jobs)
        self.content = self.items[0].content
        self.styles = self.items[0].styles
        self.fingerprint = self.items[0].fingerprint
        self.start_checkpoint = self.items[0].start_checkpoint

    def __iter__(self) -> Iterator[Progress | ScaleFinished]:  # type: ignore[override]
        return (event for _, event in super().__iter__())

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self.items[0].checkpoint


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
            checkpoint: Checkpoint | None = None, speed: Speed | None = None, **overrides) -> Image.Image:
    """Stylize ``content`` with one or more style images and return the result as a PIL image.

    Settings come from ``settings`` with keyword ``overrides`` on top (``end_scale=256``, ...).
    ``speed`` sets precision, memory format and compilation for a new stylizer (default: auto).
    ``callback`` receives every event; raising :class:`StopStylize` in it ends the run early and the
    current image is returned.
    """
    settings = (settings or StyleSettings()).replace(**overrides)
    if isinstance(styles, Image.Image):
        styles = [styles]
    stylizer = stylizer or Stylizer(weights, devices, speed=speed)
    run = stylizer.run(content, styles, settings, checkpoint)
    try:
        for event in run:
            if callback is not None:
                callback(event)
    except StopStylize:
        pass
    return run.pil()


__all__ = ["Stylizer", "StyleRun", "BatchRun", "Job", "TargetCache", "Speed", "Progress", "ScaleFinished", "Checkpoint", "StopStylize", "DeviceError",
           "stylize", "scale_schedule", "size_to_fit", "style_size_at", "scale_ladder", "check_devices",
           "default_devices", "to_tensor", "rgb_to_yuv", "yuv_to_rgb"]
