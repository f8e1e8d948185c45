"""The Ray actor that holds a model and runs items one at a time, streaming events.

A worker receives bytes (inputs, checkpoint) and returns encoded image bytes, so it never touches
the user's file system. ``run`` is a generator: Ray streams each event to the driver as it is
yielded (progress at most twice a second, a checkpoint after each scale, then the result).
"""

from __future__ import annotations

import io
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

import ray

from batchstyle.engine.events import Progress

PROGRESS_INTERVAL = 0.5  # seconds between progress events of one item


@dataclass
class ItemTask:
    """What a worker needs to make one image."""

    id: str
    name: str
    content: bytes
    content_name: str
    styles: list[Any]  # ObjectRefs to style bytes (shared by many items) or bytes
    style_names: list[str]
    settings: dict[str, Any]
    output_format: str
    checkpoint: bytes | None = None


@dataclass
class ItemCheckpoint:
    scale_index: int
    scale_count: int
    data: bytes


@dataclass
class ItemResult:
    image: bytes
    width: int
    height: int
    seconds: float
    iterations: int
    final_loss: float | None
    gpu_peak_bytes: int
    resumed_from_scale: int | None = None


@dataclass
class ItemFailure:
    kind: str  # "error": the item is bad; "oom": out of GPU memory; "device": the device is broken
    message: str
    detail: str = ""


@dataclass
class WorkerInfo:
    node_id: str
    host: str
    ip: str
    pid: int
    gpu_ids: list[str]
    devices: list[str]
    device_names: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        gpus = f" GPU {','.join(self.gpu_ids)}" if self.gpu_ids else " CPU"
        return f"{self.host}{gpus}"


class EngineBackend:
    """The real engine: VGG-19 loaded once on this worker's devices."""

    def __init__(self, weights: dict, weights_identity: str, gpus: int, threads: int | None):
        import torch

        from batchstyle.engine.multiscale import Stylizer
        from batchstyle.engine.weights import VGGWeights

        if threads:
            torch.set_num_threads(threads)
        if gpus and torch.cuda.is_available():
            devices = [f"cuda:{i}" for i in range(min(gpus, torch.cuda.device_count()))]
        else:  # a CPU node, or GPUs that exist only as Ray resources (tests)
            devices = ["cpu"] * max(gpus, 1)
        self.stylizer = Stylizer(VGGWeights.from_numpy(weights, source="driver", identity=weights_identity),
                                 devices)
        self.devices = [str(d) for d in self.stylizer.devices]
        self.device_names = [torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"
                             for d in self.stylizer.devices]

    def run(self, task: ItemTask) -> Iterator[Any]:
        import gc

        import torch

        from batchstyle.engine.images import encode_image, load_image
        from batchstyle.engine.multiscale import Checkpoint
        from batchstyle.engine.settings import StyleSettings

        started = time.time()
        content = load_image(task.content, name=task.content_name)
        styles = [load_image(_bytes_of(s), name=n) for s, n in zip(task.styles, task.style_names)]
        settings = StyleSettings.from_dict(task.settings)
        checkpoint = None
        if task.checkpoint:
            try:
                checkpoint = Checkpoint.from_bytes(task.checkpoint, name=f"checkpoint of {task.name}")
                run = self.stylizer.run(content, styles, settings, checkpoint)
            except ValueError:  # unreadable or for other inputs: start afresh
                checkpoint = None
        if checkpoint is None:
            run = self.stylizer.run(content, styles, settings)
        last, out_of_memory = None, False
        try:
            for event in run:
                if isinstance(event, Progress):
                    yield event
                    last = event
                elif event.scale_index < event.scale_count - 1:
                    yield ItemCheckpoint(event.scale_index, event.scale_count, event.checkpoint.to_bytes())
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True
        if out_of_memory:  # free memory outside the except block: its traceback pins tensors
            del run
            gc.collect()
            torch.cuda.empty_cache()
            yield ItemFailure("oom", f"out of GPU memory on {', '.join(self.devices)}")
            return
        image = run.image()
        yield ItemResult(encode_image(image, task.output_format), image.shape[2], image.shape[1],
                         time.time() - started, run.total_iterations, last.loss if last else None,
                         last.gpu_peak_bytes if last else 0,
                         None if checkpoint is None else checkpoint.scale_index)


class FakeBackend:
    """A fast stand-in for the engine, for scheduler tests and dispatch benchmarks.

    Spec ``fake:iters=20,sleep=0.01,scales=2,die_marker=DIR,log=DIR``. It decodes the content (so
    a bad file fails as with the engine) and returns it, shrunk, as the "stylized" image. Content
    file names steer it: ``fail`` raises an error, ``oom`` runs out of memory on fewer than two
    GPUs, ``die`` kills this worker's process the first time (remembered in ``die_marker``) and
    ``hang`` stops responding the first time.
    With ``log``, every start of an item leaves a file ``<id>.<random>`` there (tests count them).
    """

    def __init__(self, spec: str, gpus: int):
        options = dict(part.split("=", 1) for part in spec.split(":", 1)[1].split(",") if part) \
            if ":" in spec else {}
        self.iters = int(options.get("iters", 10))
        self.sleep = float(options.get("sleep", 0.0))
        self.scales = int(options.get("scales", 2))
        self.die_marker = options.get("die_marker")
        self.log = options.get("log")
        self.gpus = gpus
        self.devices = [f"fake:{i}" for i in range(max(gpus, 1))]
        self.device_names = ["fake"] * len(self.devices)

    def run(self, task: ItemTask) -> Iterator[Any]:
        from PIL import Image

        started = time.time()
        if self.log:
            open(os.path.join(self.log, f"{task.id}.{os.urandom(4).hex()}"), "w").close()
        with Image.open(io.BytesIO(task.content)) as im:
            im.load()
            image = im.convert("RGB")
        for style in task.styles:
            _bytes_of(style)
        name = task.content_name.lower()
        if "fail" in name:
            raise ValueError(f"{task.content_name}: fake failure for tests")
        if "oom" in name and self.gpus < 2:
            yield ItemFailure("oom", "out of GPU memory on fake:0 (fake)")
            return
        start = int(task.checkpoint.decode().split(":")[1]) + 1 if task.checkpoint else 0
        for scale in range(start, self.scales):
            for i in range(1, self.iters + 1):
                if self.die_marker and scale == self.scales - 1 and i == self.iters // 2 and \
                        ("die" in name or "hang" in name):
                    marker = os.path.join(self.die_marker, task.id)
                    if not os.path.exists(marker):
                        open(marker, "w").close()
                        if "hang" in name:
                            time.sleep(3600)  # stuck, as a hung device would leave it
                        os.kill(os.getpid(), 9)  # a real, abrupt process death mid-item
                time.sleep(self.sleep)
                now = time.time()
                yield Progress(scale, self.scales, image.width, image.height, i, self.iters,
                               1.0 / (scale * self.iters + i), now - started, 0, now)
            if scale < self.scales - 1:
                yield ItemCheckpoint(scale, self.scales, f"fake:{scale}".encode())
        image.thumbnail((64, 64))
        from batchstyle.engine.images import encode_image

        yield ItemResult(encode_image(image, task.output_format), image.width, image.height,
                         time.time() - started, self.iters * self.scales, 0.0, 0,
                         start - 1 if task.checkpoint else None)


def _bytes_of(value: Any) -> bytes:
    return value if isinstance(value, bytes) else ray.get(value)


def make_backend(spec: str, weights: dict | None, weights_identity: str, gpus: int, threads: int | None):
    if spec == "engine":
        return EngineBackend(weights, weights_identity, gpus, threads)
    if spec.startswith("fake"):
        return FakeBackend(spec, gpus)
    raise ValueError(f"unknown backend {spec!r}")


@ray.remote(max_restarts=0, max_task_retries=0)
class StyleWorker:
    """A long-lived worker: loads the model once, then runs items one at a time."""

    def __init__(self, backend: str, weights: dict | None, weights_identity: str, gpus: int,
                 threads: int | None = None):
        self.backend = make_backend(backend, weights, weights_identity, gpus, threads)
        context = ray.get_runtime_context()
        self.info_ = WorkerInfo(node_id=context.get_node_id(), host=socket.gethostname(),
                                ip=ray.util.get_node_ip_address(), pid=os.getpid(),
                                gpu_ids=[str(g) for g in context.get_accelerator_ids().get("GPU", [])],
                                devices=self.backend.devices, device_names=self.backend.device_names)

    def info(self) -> WorkerInfo:
        return self.info_

    def run(self, task: ItemTask):
        """Stream the item's events: throttled progress, checkpoints, then one result or failure."""
        last_sent = 0.0
        pending = None
        try:
            for event in self.backend.run(task):
                if isinstance(event, Progress):
                    now = time.monotonic()
                    if now - last_sent >= PROGRESS_INTERVAL or event.iteration == 1:
                        last_sent, pending = now, None
                        yield event
                    else:
                        pending = event
                    continue
                if pending is not None:
                    yield pending
                    pending = None
                yield event
        except Exception as exc:  # the item fails, the worker lives on
            text = str(exc)
            kind = "device" if "CUDA error" in text or type(exc).__name__ == "AcceleratorError" else "error"
            message = text if text and text.startswith(task.content_name) else f"{type(exc).__name__}: {text}"
            yield ItemFailure(kind, message, traceback.format_exc())


__all__ = ["StyleWorker", "ItemTask", "ItemCheckpoint", "ItemResult", "ItemFailure",
           "WorkerInfo", "EngineBackend", "FakeBackend", "make_backend"]
