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
    batch_size: int = 1  # how many items were optimised together with this one (itself included)


@dataclass
class ItemFailure:
    kind: str  # "error": the item is bad; "oom": out of GPU memory; "device": the device is broken
    message: str
    detail: str = ""
    batch_size: int = 1  # > 1: it failed together with the other items of a batch


@dataclass
class WorkerInfo:
    node_id: str
    host: str
    ip: str
    pid: int
    gpu_ids: list[str]
    devices: list[str]
    device_names: list[str] = field(default_factory=list)
    memory_bytes: int = 0  # of the first GPU; 0 on CPU
    device_kind: str = "cpu"  # cpu or cuda (of the first device)
    precision: str = "fp32"  # as resolved on this worker

    @property
    def label(self) -> str:
        gpus = f" GPU {','.join(self.gpu_ids)}" if self.gpu_ids else " CPU"
        return f"{self.host}{gpus}"


class EngineBackend:
    """The real engine: VGG-19 loaded once on this worker's devices, style targets cached across items."""

    def __init__(self, weights: dict, weights_identity: str, gpus: int, threads: int | None,
                 speed: dict | None = None):
        import torch

        from batchstyle.engine.stylizer import Stylizer
        from batchstyle.engine.speed import Speed
        from batchstyle.engine.weights import VGGWeights

        if threads:
            torch.set_num_threads(threads)
        if gpus and torch.cuda.is_available():
            devices = [f"cuda:{i}" for i in range(min(gpus, torch.cuda.device_count()))]
        else:  # a CPU node, or GPUs that exist only as Ray resources (tests)
            devices = ["cpu"] * max(gpus, 1)
        self.stylizer = Stylizer(VGGWeights.from_numpy(weights, source="driver", identity=weights_identity),
                                 devices, speed=Speed.from_dict(speed))
        self.devices = [str(d) for d in self.stylizer.devices]
        self.device_names = [torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"
                             for d in self.stylizer.devices]
        first = self.stylizer.devices[0]
        self.memory_bytes = torch.cuda.get_device_properties(first).total_memory if first.type == "cuda" else 0
        self.precision = self.stylizer.speed.precision

    def run(self, tasks: list[ItemTask]) -> Iterator[tuple[str, Any]]:
        """Make the tasks' images, optimised together where they resume from the same point.

        Yields ``(task id, event)``. An item whose inputs cannot be read fails alone; the others go on.
        """
        from batchstyle.engine.images import load_image
        from batchstyle.engine.checkpoint import Checkpoint
        from batchstyle.engine.run import Job
        from batchstyle.engine.settings import StyleSettings

        groups: dict[int | None, list[tuple[ItemTask, Job]]] = {}
        for task in tasks:
            try:
                content = load_image(task.content, name=task.content_name)
                styles = [load_image(_bytes_of(s), name=n) for s, n in zip(task.styles, task.style_names)]
                settings = StyleSettings.from_dict(task.settings)
            except Exception as exc:  # noqa: BLE001 - a bad input fails its own item only
                yield task.id, failure_of(exc, task)
                continue
            checkpoint = None
            if task.checkpoint:
                try:
                    checkpoint = Checkpoint.from_bytes(task.checkpoint, name=f"checkpoint of {task.name}")
                    self.stylizer.run(content, styles, settings, checkpoint)  # does it fit these inputs?
                except ValueError:  # unreadable or for other inputs: start afresh
                    checkpoint = None
            start = None if checkpoint is None else checkpoint.scale_index
            groups.setdefault(start, []).append((task, Job(content, styles, settings, checkpoint)))
        for group in groups.values():
            yield from self._run_group(group)

    def _run_group(self, group: list[tuple[ItemTask, Any]]) -> Iterator[tuple[str, Any]]:
        import gc

        import torch

        from batchstyle.engine.images import encode_image

        started = time.time()
        tasks = [task for task, _ in group]
        run = self.stylizer.run_group([job for _, job in group])
        last: dict[int, Progress] = {}
        out_of_memory = False
        try:
            for event in run:
                if isinstance(event, Progress):
                    last[event.item] = event
                    yield tasks[event.item].id, event
                elif event.scale_index < event.scale_count - 1:
                    yield tasks[event.item].id, ItemCheckpoint(event.scale_index, event.scale_count,
                                                               event.checkpoint.to_bytes())
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True
        if out_of_memory:  # free memory outside the except block: its traceback pins tensors
            del run
            gc.collect()
            torch.cuda.empty_cache()
            batch = f" (a batch of {len(tasks)})" if len(tasks) > 1 else ""
            for task in tasks:
                yield task.id, ItemFailure("oom", f"out of GPU memory on {', '.join(self.devices)}{batch}",
                                           batch_size=len(tasks))
            return
        seconds = time.time() - started
        for index, task in enumerate(tasks):
            image = run.image(index)
            start = group[index][1].checkpoint
            final = last.get(index)
            yield task.id, ItemResult(encode_image(image, task.output_format), image.shape[2], image.shape[1],
                                      seconds, run.total_iterations, final.loss if final else None,
                                      final.gpu_peak_bytes if final else 0,
                                      None if start is None else start.scale_index, batch_size=len(tasks))


class FakeBackend:
    """A fast stand-in for the engine, for scheduler tests and dispatch benchmarks.

    Spec ``fake:iters=20,sleep=0.01,scales=2,die_marker=DIR,log=DIR``. It decodes the content (so
    a bad file fails as with the engine) and returns it, shrunk, as the "stylized" image. Items of
    one call run in lockstep, as a batch does. Content file names steer it: ``fail`` raises an
    error, ``oom`` runs out of memory on fewer than two GPUs (or in a batch), ``die`` kills this
    worker's process the first time (remembered in ``die_marker``) and ``hang`` stops responding
    the first time. With ``log``, every start of an item leaves a file ``<id>.<batch size>.<random>``
    there (tests count them).
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
        self.memory_bytes = 80 << 30 if gpus else 0
        self.precision = "fp32"

    def run(self, tasks: list[ItemTask]) -> Iterator[tuple[str, Any]]:
        from PIL import Image

        from batchstyle.engine.images import encode_image

        started = time.time()
        live = []
        for task in tasks:
            try:
                with Image.open(io.BytesIO(task.content)) as im:
                    im.load()
                    image = im.convert("RGB")
                for style in task.styles:
                    _bytes_of(style)
                if "fail" in task.content_name.lower():
                    raise ValueError(f"{task.content_name}: fake failure for tests")
            except Exception as exc:  # noqa: BLE001 - as the engine: a bad input fails its own item
                yield task.id, failure_of(exc, task)
                continue
            live.append((task, image))
        if self.log:
            for task, _ in live:
                open(os.path.join(self.log, f"{task.id}.{len(live)}.{os.urandom(4).hex()}"), "w").close()
        names = " ".join(task.content_name.lower() for task, _ in live)
        if "oom" in names and (self.gpus < 2 or len(live) > 1):
            for task, _ in live:
                yield task.id, ItemFailure("oom", "out of GPU memory on fake:0 (fake)", batch_size=len(live))
            return
        starts = {int(t.checkpoint.decode().split(":")[1]) + 1 if t.checkpoint else 0 for t, _ in live}
        start = min(starts, default=0)
        for scale in range(start, self.scales):
            for i in range(1, self.iters + 1):
                doomed = [t for t, _ in live if "die" in t.content_name.lower() or "hang" in t.content_name.lower()]
                if self.die_marker and scale == self.scales - 1 and i == self.iters // 2 and doomed:
                    marker = os.path.join(self.die_marker, doomed[0].id)
                    if not os.path.exists(marker):
                        open(marker, "w").close()
                        if "hang" in names:
                            time.sleep(3600)  # stuck, as a hung device would leave it
                        os.kill(os.getpid(), 9)  # a real, abrupt process death mid-item
                time.sleep(self.sleep)
                now = time.time()
                for task, image in live:
                    yield task.id, Progress(scale, self.scales, image.width, image.height, i, self.iters,
                                            1.0 / (scale * self.iters + i), now - started, 0, now)
            if scale < self.scales - 1:
                for task, _ in live:
                    yield task.id, ItemCheckpoint(scale, self.scales, f"fake:{scale}".encode())
        for task, image in live:
            image.thumbnail((64, 64))
            yield task.id, ItemResult(encode_image(image, task.output_format), image.width, image.height,
                                      time.time() - started, self.iters * self.scales, 0.0, 0,
                                      start - 1 if task.checkpoint else None, batch_size=len(live))


def failure_of(exc: BaseException, task: ItemTask) -> ItemFailure:
    """An exception as an item failure: ``device`` for a broken GPU, else ``error``."""
    text = str(exc)
    kind = "device" if "CUDA error" in text or type(exc).__name__ == "AcceleratorError" else "error"
    message = text if text and text.startswith(task.content_name) else f"{type(exc).__name__}: {text}"
    return ItemFailure(kind, message, traceback.format_exc())


def _bytes_of(value: Any) -> bytes:
    return value if isinstance(value, bytes) else ray.get(value)


def make_backend(spec: str, weights: dict | None, weights_identity: str, gpus: int, threads: int | None,
                 speed: dict | None = None):
    if spec == "engine":
        return EngineBackend(weights, weights_identity, gpus, threads, speed)
    if spec.startswith("fake"):
        return FakeBackend(spec, gpus)
    raise ValueError(f"unknown backend {spec!r}")


@ray.remote(max_restarts=0, max_task_retries=0)
class StyleWorker:
    """A long-lived worker: loads the model once, then runs items (alone or batched) one call at a time."""

    def __init__(self, backend: str, weights: dict | None, weights_identity: str, gpus: int,
                 threads: int | None = None, speed: dict | None = None):
        self.backend = make_backend(backend, weights, weights_identity, gpus, threads, speed)
        context = ray.get_runtime_context()
        devices = self.backend.devices
        self.info_ = WorkerInfo(node_id=context.get_node_id(), host=socket.gethostname(),
                                ip=ray.util.get_node_ip_address(), pid=os.getpid(),
                                gpu_ids=[str(g) for g in context.get_accelerator_ids().get("GPU", [])],
                                devices=devices, device_names=self.backend.device_names,
                                memory_bytes=self.backend.memory_bytes,
                                device_kind="cuda" if devices[0].startswith(("cuda", "fake")) and gpus else "cpu",
                                precision=self.backend.precision)

    def info(self) -> WorkerInfo:
        return self.info_

    def run(self, tasks: list[ItemTask]):
        """Stream ``(task id, event)``: throttled progress, checkpoints, then one result or failure per task."""
        last_sent: dict[str, float] = {}
        pending: dict[str, Any] = {}
        finished: set[str] = set()
        try:
            for task_id, event in self.backend.run(tasks):
                if isinstance(event, Progress):
                    now = time.monotonic()
                    if now - last_sent.get(task_id, 0.0) >= PROGRESS_INTERVAL or event.iteration == 1:
                        last_sent[task_id] = now
                        pending.pop(task_id, None)
                        yield task_id, event
                    else:
                        pending[task_id] = event
                    continue
                if task_id in pending:
                    yield task_id, pending.pop(task_id)
                if isinstance(event, (ItemResult, ItemFailure)):
                    finished.add(task_id)
                yield task_id, event
        except Exception as exc:  # noqa: BLE001 - the items fail, the worker lives on
            for task in tasks:
                if task.id not in finished:
                    failure = failure_of(exc, task)
                    failure.batch_size = len(tasks) - len(finished)
                    yield task.id, failure


__all__ = ["StyleWorker", "ItemTask", "ItemCheckpoint", "ItemResult", "ItemFailure",
           "WorkerInfo", "EngineBackend", "FakeBackend", "make_backend", "failure_of"]
