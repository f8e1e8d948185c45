"""The workers of a batch and the cluster they run on.

The pool looks at the cluster's nodes every few seconds: a node that joins can get a worker, a
worker whose node left is handed back as lost. It starts workers of the shapes the remaining work
calls for (0 = a CPU worker per node, 1 or 2 GPUs), retires idle ones it no longer needs, and
tells workers that are slow to start from workers that cannot start.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
from ray.exceptions import ActorUnschedulableError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from batchstyle.engine.events import Progress

from .items import Item
from .messages import ItemPreview, WorkerInfo
from .policies import desired_workers
from .worker import BackendFactory, StyleWorker

NODE_CHECK = 2.0  # seconds between looks at the cluster's nodes (joined, lost)
INIT_FAILURES_BEFORE_GIVING_UP = 3
SLOW_START = 60.0  # seconds after which a worker that has not started is worth a word


@dataclass
class Call:
    """A worker's current call: the items it is making together and the stream of their events."""

    items: list[Item]
    events: Any  # Ray's generator of event references
    started: float
    progress: dict[str, Progress] = field(default_factory=dict)
    last_event: float = field(default_factory=time.monotonic)
    previews: dict[str, ItemPreview] = field(default_factory=dict)  # the latest of each item, for --web


@dataclass
class Worker:
    actor: Any
    gpus: int  # 0 for a CPU worker
    info_ref: Any
    info: WorkerInfo | None = None
    call: Call | None = None
    node_id: str | None = None  # its node: where a CPU worker was placed, or where a GPU worker started
    created: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        return self.info.label if self.info else "starting"


@dataclass
class WorkerSetup:
    """What every worker is started with."""

    backend: BackendFactory | None
    weights_ref: Any
    weights_identity: str
    cpu_threads: int | None = None
    speed: dict | None = None


class WorkerPool:
    """Workers following the cluster. ``device`` is auto, gpu or cpu; ``cap`` the most workers."""

    def __init__(self, setup: WorkerSetup, device: str, cap: int | None, log: Callable[[str], None]):
        self.setup, self.device, self.cap, self.log = setup, device, cap, log
        self.workers: list[Worker] = []
        self.gone_nodes: set[str] = set()  # nodes found gone before the cluster said so
        self.cpu_nodes: dict[str, int] | None = None  # alive nodes and their CPUs, from the last look
        self.gpus_total = self.gpus_per_node = 0
        self.init_failures: Counter[int] = Counter()
        self.looked = 0.0

    # -- the cluster ---------------------------------------------------------------------------------

    def due(self) -> bool:
        return time.monotonic() - self.looked >= NODE_CHECK

    def look(self) -> list[Worker]:
        """Look at the cluster's nodes; the workers whose node left (the caller requeues their items)."""
        self.looked = time.monotonic()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        real_gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        self.gpus_total = real_gpus
        self.gpus_per_node = int(max((n["Resources"].get("GPU", 0) for n in nodes), default=0))
        if self.device == "cpu":
            self.gpus_total = self.gpus_per_node = 0
        elif self.device == "gpu":
            # an autoscaling cluster: asking for the workers wanted is what makes its GPU nodes
            self.gpus_total = max(real_gpus, self.cap or 1)
            self.gpus_per_node = self.gpus_per_node if real_gpus else 2
        before, self.cpu_nodes = self.cpu_nodes, {n["NodeID"]: int(n["Resources"].get("CPU", 1)) for n in nodes
                                                  if n["NodeID"] not in self.gone_nodes}
        if before is not None:  # not the first look
            self._say_what_changed(before, nodes)
        return [w for w in self.workers if w.node_id and w.node_id not in self.cpu_nodes]

    def _say_what_changed(self, before: dict[str, int], nodes: list[dict]) -> None:
        for node in nodes:
            if node["NodeID"] in self.cpu_nodes and node["NodeID"] not in before:
                gpus = int(node["Resources"].get("GPU", 0))
                self.log(f"node {node['NodeID'][:8]} joined the cluster ({self.cpu_nodes[node['NodeID']]} CPUs"
                         f"{f', {gpus} GPUs' if gpus else ''}): the pool can grow")
        for node_id in before.keys() - self.cpu_nodes.keys():
            self.log(f"node {node_id[:8]} left the cluster: its images run elsewhere")

    # -- workers -------------------------------------------------------------------------------------

    def adjust(self, need: Counter) -> None:
        """Start the workers ``need`` (items per shape) calls for; retire idle ones it does not."""
        want = desired_workers(need, self.gpus_total, self.gpus_per_node, self.cap, len(self.cpu_nodes))
        for shape in sorted(want, reverse=True):
            have = [w for w in self.workers if w.gpus == shape]
            for worker in [w for w in have if not w.call][: max(0, len(have) - want[shape])]:
                self.remove(worker)
        for shape in sorted(want, reverse=True):
            for _ in range(want[shape] - sum(1 for w in self.workers if w.gpus == shape)):
                self._start(shape)

    def _start(self, gpus: int) -> None:
        setup = self.setup
        if gpus == 0:
            free = [n for n in self.cpu_nodes if n not in {w.node_id for w in self.workers}]
            if not free:
                return
            node = free[0]
            actor = StyleWorker.options(
                num_cpus=self.cpu_nodes[node], num_gpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(setup.backend, setup.weights_ref, setup.weights_identity, 0,
                     setup.cpu_threads or self.cpu_nodes[node], setup.speed)
            self.workers.append(Worker(actor, 0, actor.info.remote(), node_id=node))
        else:
            actor = StyleWorker.options(num_gpus=gpus, num_cpus=1).remote(
                setup.backend, setup.weights_ref, setup.weights_identity, gpus, setup.cpu_threads, setup.speed)
            self.workers.append(Worker(actor, gpus, actor.info.remote()))

    def remove(self, worker: Worker) -> None:
        """Kill the worker's process and forget it (a lost worker, or one no longer needed)."""
        ray.kill(worker.actor)
        if worker in self.workers:
            self.workers.remove(worker)

    def started(self, worker: Worker) -> str | None:
        """Take a worker's start-up answer; why workers cannot start at all, after a few tries."""
        try:
            worker.info = ray.get(worker.info_ref)
            worker.node_id = worker.info.node_id
            self.init_failures[worker.gpus] = 0
            return None
        except RayError as exc:
            self.workers.remove(worker)
            if isinstance(exc, ActorUnschedulableError) and worker.node_id:
                self.gone_nodes.add(worker.node_id)  # its node left the cluster before it started
            self.look()
            if worker.node_id and worker.node_id not in self.cpu_nodes:
                return None  # not the worker's fault: start no replacement there
            self.init_failures[worker.gpus] += 1
            self.log(f"a worker could not start: {cause_of(exc)}")
            count = self.init_failures[worker.gpus]
            if count < INIT_FAILURES_BEFORE_GIVING_UP:
                return None
            return f"workers cannot start ({count} tries): {cause_of(exc)}"

    def waiting(self) -> str:
        """A word about workers that take long to start (busy or missing GPUs, an autoscaler at work)."""
        slow = [w for w in self.workers if w.info is None and time.monotonic() - w.created > SLOW_START]
        if not slow:
            return ""
        shapes = ", ".join(sorted({f"{w.gpus} GPU" if w.gpus else "CPU" for w in slow}))
        return f"waiting for {len(slow)} worker(s) ({shapes}) to start: the cluster has no free resources for them yet"

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker.actor)
        self.workers.clear()


def cause_of(exc: BaseException) -> str:
    """A one-line reason from a Ray exception (its cause's message where there is one)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    text = str(cause if cause is not None else exc).strip()
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


__all__ = ["WorkerPool", "WorkerSetup", "Worker", "Call", "cause_of", "NODE_CHECK"]
