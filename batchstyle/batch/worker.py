"""The Ray actor that holds a model and runs items one call at a time, streaming events.

``run`` is a generator: Ray streams each event to the driver as it is yielded (progress at most
twice a second per item, a checkpoint after each scale, then the result or failure).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import ray

from batchstyle.engine.events import Progress

from .engine_backend import EngineBackend
from .messages import ItemFailure, ItemInputs, ItemResult, WorkerInfo, failure_of

PROGRESS_INTERVAL = 0.5  # seconds between progress events of one item

BackendFactory = Callable[..., Any]  # (weights, weights_identity, gpus, threads, speed) -> backend


@ray.remote(max_restarts=0, max_task_retries=0)
class StyleWorker:
    """A long-lived worker: loads the model once, then runs items (alone or grouped) one call at a time."""

    def __init__(self, backend: BackendFactory | None, weights: dict | None, weights_identity: str, gpus: int,
                 threads: int | None = None, speed: dict | None = None):
        self.backend = (backend or EngineBackend)(weights, weights_identity, gpus, threads, speed)
        context = ray.get_runtime_context()
        self.info_ = WorkerInfo(node_id=context.get_node_id(), host=socket.gethostname(),
                                gpu_ids=[str(g) for g in context.get_accelerator_ids().get("GPU", [])],
                                devices=self.backend.devices, memory_bytes=self.backend.memory_bytes,
                                device_kind=self.backend.device_kind, precision=self.backend.precision)

    def info(self) -> WorkerInfo:
        return self.info_

    def run(self, inputs: list[ItemInputs]):
        """Stream ``(item id, event)``: throttled progress, checkpoints, then one result or failure per item."""
        last_sent: dict[str, float] = {}
        pending: dict[str, Any] = {}
        finished: set[str] = set()
        try:
            for item_id, event in self.backend.run(inputs):
                if isinstance(event, Progress):
                    now = time.monotonic()
                    # a scale's first and last steps always go: the displays see where each scale ended
                    if (now - last_sent.get(item_id, 0.0) >= PROGRESS_INTERVAL or event.iteration == 1
                            or event.last_of_scale):
                        last_sent[item_id] = now
                        pending.pop(item_id, None)
                        yield item_id, event
                    else:
                        pending[item_id] = event
                    continue
                if item_id in pending:
                    yield item_id, pending.pop(item_id)
                if isinstance(event, (ItemResult, ItemFailure)):
                    finished.add(item_id)
                yield item_id, event
        except Exception as exc:  # noqa: BLE001 - the items fail, the worker lives on
            unfinished = [one.item for one in inputs if one.item.id not in finished]
            for item in unfinished:
                failure = failure_of(exc, item)
                failure.group_size = len(unfinished)
                yield item.id, failure


__all__ = ["StyleWorker", "BackendFactory", "PROGRESS_INTERVAL"]
