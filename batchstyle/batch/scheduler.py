"""The driver loop: pools of workers, dispatch, events, retries, escalation, draining and Ctrl-C.

The loop is one ``while`` over ``ray.wait``; the decisions (how many workers of which shape, how
many items per call, whether to retry, escalate or fail) are the small functions of
:mod:`batch.policies`. A worker owns its current call; the scheduler owns the queue and what it
has learnt about each item (attempts, route, whether it must run alone).
"""

from __future__ import annotations

import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from batchstyle.engine.events import Progress

from .manifest import Item
from .messages import ItemCheckpoint, ItemFailure, ItemInputs, ItemPreview, ItemResult, WorkerInfo
from .policies import (after_out_of_memory, after_worker_lost, auto_group_size, desired_workers, fair_share,
                       fit_to_cluster)
from .store import FailureRecord, ItemRecord, OutputDir
from .worker import BackendFactory, StyleWorker

TICK = 0.2  # seconds: how often the display refreshes and Ctrl-C is noticed
INIT_FAILURES_BEFORE_GIVING_UP = 3
SLOW_START = 60.0  # seconds after which a worker that has not started is worth a word


@dataclass
class RunOptions:
    backend: BackendFactory | None = None  # what makes the images; None: the engine
    device: str = "auto"  # auto | gpu | cpu
    workers: int | None = None  # most workers at once; None: as many as the cluster's resources allow
    retries: int = 2  # extra attempts for an item whose worker was lost
    cpu_threads: int | None = None
    stall_timeout: float | None = 1800.0  # seconds without any event from an item before its worker is replaced
    group_size: int | None = None  # items optimised together per call; None: automatic by size and memory
    speed: dict | None = None  # engine Speed options for every worker
    preview_interval: float = 0.0  # seconds between live previews of a running item (--web); 0: none


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
    node_id: str | None = None  # where a CPU worker was placed
    created: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        return self.info.label if self.info else "starting"


@dataclass
class BatchState:
    """What the display shows: counts, the workers and their calls, failures."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)
    queued: int = 0
    units_total: int = 0
    units_done: int = 0
    draining: bool = False
    message: str = ""
    failures: list[FailureRecord] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    @property
    def running(self) -> list[tuple[Item, Worker]]:
        """Every item being made now, with its worker (whose call has its progress)."""
        return [(item, w) for w in self.workers if w.call for item in w.call.items]

    @property
    def pending(self) -> int:
        return self.total - self.skipped - self.done - self.failed - len(self.running)


class Display(Protocol):
    def update(self, state: BatchState) -> None: ...
    def log(self, text: str) -> None: ...


class Scheduler:
    """Runs planned items on Ray workers and writes results into the output directory."""

    def __init__(self, todo: list[Item], skipped: int, out: OutputDir, weights_ref: Any, weights_identity: str,
                 options: RunOptions, display: Display):
        self.out, self.options, self.display = out, options, display
        self.weights_ref, self.weights_identity = weights_ref, weights_identity
        self.queue: deque[Item] = deque(sorted(todo, key=lambda i: -i.route))  # big items first
        self.state = BatchState(total=len(todo) + skipped, skipped=skipped, queued=len(todo),
                                units_total=sum(i.units for i in todo))
        self.workers = self.state.workers
        self.route = {item.id: item.route for item in todo}  # GPUs per item, after escalation
        self.attempts: Counter[str] = Counter()  # runs that ended without a result (worker lost)
        self.alone: set[str] = set()  # failed inside a group once: from now on they run alone
        self.style_refs: dict[Path, Any] = {}
        self.init_failures: dict[int, int] = {}
        self.aborting = False
        self.interrupts = 0
        self.fatal: str | None = None
        self._resources()
        if self.gpus_total:
            self._fit_to_cluster()

    def _resources(self) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.gpus_total = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        self.gpus_per_node = int(max((n["Resources"].get("GPU", 0) for n in nodes), default=0))
        if self.options.device == "cpu":
            self.gpus_total = self.gpus_per_node = 0
        elif self.options.device == "gpu" and self.gpus_total == 0:
            # an autoscaling cluster with no GPU node yet: asking for workers makes the nodes
            self.gpus_total = self.options.workers or 1
            self.gpus_per_node = max(self.gpus_per_node, 2)
        self.cpu_nodes = {n["NodeID"]: int(n["Resources"].get("CPU", 1)) for n in nodes}

    def _fit_to_cluster(self) -> None:
        for item in list(self.queue):
            decision = fit_to_cluster(self.route[item.id], item.gpus, self.gpus_per_node)
            if isinstance(decision, str):
                self.queue.remove(item)
                self._fail(item, "error", decision)
            else:
                self.route[item.id] = decision

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> BatchState:
        previous = self._install_signal_handlers()
        try:
            while (self.queue or self.state.running) and not self.aborting and not self.fatal:
                self._adjust_pool()
                if not self.state.draining:
                    self._dispatch()
                self._pump()
                self._replace_stalled()
                self.state.queued = len(self.queue)
                self._explain_waiting()
                self.display.update(self.state)
                if self.state.draining and not self.state.running:
                    break
        finally:
            self._restore_signal_handlers(previous)
            for worker in self.workers:
                ray.kill(worker.actor)
            self.workers.clear()
        if self.fatal:
            raise RuntimeError(self.fatal)
        return self.state

    @property
    def interrupted(self) -> bool:
        return self.interrupts > 0

    def _shape(self, item: Item) -> int:
        """The worker shape an item goes to: 0 (CPU) on a cluster without GPUs, else its route."""
        return self.route[item.id] if self.gpus_total else 0

    def _adjust_pool(self) -> None:
        """Create the workers the remaining work needs; retire idle ones it no longer needs."""
        if self.state.draining:
            need = Counter(self._shape(item) for item, _ in self.state.running)
        else:
            need = Counter(self._shape(item) for item in [*self.queue, *(i for i, _ in self.state.running)])
        want = desired_workers(need, self.gpus_total, self.gpus_per_node, self.options.workers,
                               len(self.cpu_nodes))
        for shape in sorted(want, reverse=True):
            have = [w for w in self.workers if w.gpus == shape]
            for worker in [w for w in have if not w.call][: max(0, len(have) - want[shape])]:
                self._retire(worker)
        for shape in sorted(want, reverse=True):
            have = sum(1 for w in self.workers if w.gpus == shape)
            for _ in range(want[shape] - have):
                self._start_worker(shape)

    def _explain_waiting(self) -> None:
        """Say so when workers take long to start (busy or missing GPUs, an autoscaler at work)."""
        if self.state.draining:
            return
        slow = [w for w in self.workers if w.info is None and time.monotonic() - w.created > SLOW_START]
        if slow:
            shapes = ", ".join(sorted({f"{w.gpus} GPU" if w.gpus else "CPU" for w in slow}))
            self.state.message = (f"waiting for {len(slow)} worker(s) ({shapes}) to start: the cluster has no "
                                  f"free resources for them yet")
        else:
            self.state.message = ""

    def _start_worker(self, gpus: int) -> None:
        options = self.options
        if gpus == 0:
            used = {w.node_id for w in self.workers}
            free = [n for n in self.cpu_nodes if n not in used]
            if not free:
                return
            node = free[0]
            actor = StyleWorker.options(
                num_cpus=self.cpu_nodes[node], num_gpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(options.backend, self.weights_ref, self.weights_identity, 0,
                     options.cpu_threads or self.cpu_nodes[node], options.speed)
            self.workers.append(Worker(actor, 0, actor.info.remote(), node_id=node))
        else:
            actor = StyleWorker.options(num_gpus=gpus, num_cpus=1).remote(
                options.backend, self.weights_ref, self.weights_identity, gpus, options.cpu_threads, options.speed)
            self.workers.append(Worker(actor, gpus, actor.info.remote()))

    def _retire(self, worker: Worker) -> None:
        ray.kill(worker.actor)
        self.workers.remove(worker)

    # -- dispatch ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.info is None or worker.call:
                continue
            inputs = [one for one in map(self._inputs, self._next_for(worker)) if one is not None]
            if inputs:
                worker.call = Call([one.item for one in inputs], worker.actor.run.remote(inputs), time.time())

    def group_limit(self, item: Item, worker: Worker) -> int:
        """How many items like ``item`` this worker makes at once (``--batch-size`` or automatic)."""
        if item.group_key is None or item.id in self.alone:
            return 1
        if self.options.group_size:
            return self.options.group_size
        info = worker.info
        return auto_group_size(item.pixels, info.device_kind if info else "cpu",
                               info.memory_bytes if info else 0, info.precision if info else "fp32")

    def _next_for(self, worker: Worker) -> list[Item]:
        """The next queued item for this worker's shape, with its share of the compatible items."""
        first = next((item for item in self.queue if self._shape(item) == worker.gpus), None)
        if first is None:
            return []
        self.queue.remove(first)
        limit = self.group_limit(first, worker)
        if limit == 1:
            return [first]
        mates = [i for i in self.queue if i.group_key == first.group_key and i.id not in self.alone
                 and self._shape(i) == worker.gpus]
        idle = sum(1 for w in self.workers if w.gpus == worker.gpus and not w.call)
        group = [first, *mates[:fair_share(len(mates) + 1, idle, limit) - 1]]
        for item in group[1:]:
            self.queue.remove(item)
        return group

    def _inputs(self, item: Item) -> ItemInputs | None:
        """Read the inputs for a worker; a file that vanished since planning fails the item."""
        try:
            content = item.content.read_bytes()
            for style in item.styles:
                if style not in self.style_refs:
                    self.style_refs[style] = ray.put(style.read_bytes())
        except OSError as exc:
            self._fail(item, "error", f"cannot read {exc.filename}: {exc.strerror}")
            return None
        return ItemInputs(item, content, [self.style_refs[s] for s in item.styles], self.out.checkpoint(item.id),
                          preview_interval=self.options.preview_interval)

    # -- events ------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Wait a moment for events, then handle every one that has arrived."""
        starting = {w.info_ref: w for w in self.workers if w.info is None}
        calls = {w.call.events: w for w in self.workers if w.call}
        waitables = [*starting, *calls]
        if not waitables:
            time.sleep(TICK)
            return
        ready, _ = ray.wait(waitables, num_returns=1, timeout=TICK)
        if ready:
            ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
        for waitable in ready:
            if waitable in starting:
                self._worker_ready(starting[waitable])
            elif waitable in calls and calls[waitable].call and calls[waitable].call.events is waitable:
                self._next_event(calls[waitable])

    def _replace_stalled(self) -> None:
        """A worker silent for too long (a hung device, a deadlock) is killed; its items run again."""
        limit = self.options.stall_timeout
        if not limit:
            return
        now = time.monotonic()
        for worker in [w for w in self.workers if w.call]:
            silent = now - worker.call.last_event
            if silent > limit:
                self._worker_lost(worker, f"no progress for {silent:.0f} s", False)

    def _worker_ready(self, worker: Worker) -> None:
        try:
            worker.info = ray.get(worker.info_ref)
            self.init_failures[worker.gpus] = 0
        except RayActorError as exc:
            self.workers.remove(worker)
            count = self.init_failures.get(worker.gpus, 0) + 1
            self.init_failures[worker.gpus] = count
            cause = _cause(exc)
            self.display.log(f"a worker could not start: {cause}")
            if count >= INIT_FAILURES_BEFORE_GIVING_UP:
                self.fatal = f"workers cannot start ({count} tries): {cause}"

    def _next_event(self, worker: Worker) -> None:
        call = worker.call
        call.last_event = time.monotonic()
        try:
            ref = next(call.events)
        except StopIteration:  # ended without a result: treat as a lost worker
            self._worker_lost(worker, "the worker stopped without a result", False)
            return
        try:
            item_id, event = ray.get(ref)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            self._worker_lost(worker, _cause(exc), bool(getattr(exc, "preempted", False)))
            return
        except RayTaskError as exc:
            for item in list(call.items):
                self._finish_failed(worker, item, "error", _cause(exc))
            return
        item = next((i for i in call.items if i.id == item_id), None)
        if item is None:  # an item already given up on (cannot happen in order; be safe)
            return
        if isinstance(event, Progress):
            call.progress[item.id] = event
        elif isinstance(event, ItemPreview):
            call.previews[item.id] = event
        elif isinstance(event, ItemCheckpoint):
            self.out.write_checkpoint(item.id, event.data)
        elif isinstance(event, ItemResult):
            self._finish_done(worker, item, event)
        elif isinstance(event, ItemFailure):
            self._item_failure(worker, item, event)

    # -- outcomes ----------------------------------------------------------------------------------

    def _release(self, worker: Worker, item: Item) -> None:
        """The item leaves the worker's call; a call with no items left frees the worker."""
        call = worker.call
        if call is not None and item in call.items:
            call.items.remove(item)
            call.progress.pop(item.id, None)
            call.previews.pop(item.id, None)
            if not call.items:
                worker.call = None

    def _finish_done(self, worker: Worker, item: Item, result: ItemResult) -> None:
        info = worker.info
        record = ItemRecord(
            id=item.id, output=item.output, line=item.line, content=str(item.content),
            styles=[str(s) for s in item.styles], settings=item.settings.to_dict(), weights=self.weights_identity,
            worker=worker.label, devices=info.devices if info else [], attempts=self.attempts[item.id] + 1,
            started=worker.call.started, finished=time.time(), seconds=result.seconds, iterations=result.iterations,
            final_loss=result.final_loss, gpu_peak_bytes=result.gpu_peak_bytes,
            resumed_from_scale=result.resumed_from_scale, group_size=result.group_size)
        self.out.write_result(record, result.image)
        self._release(worker, item)
        self.state.done += 1
        self.state.units_done += item.units
        resumed = "" if result.resumed_from_scale is None else f", resumed after scale {result.resumed_from_scale + 1}"
        together = f", in a group of {result.group_size}" if result.group_size > 1 else ""
        self.display.log(f"[green]done[/] {item.output} ({result.seconds:.0f} s on {record.worker}{resumed}{together})")

    def _finish_failed(self, worker: Worker, item: Item, kind: str, message: str, detail: str = "") -> None:
        self._release(worker, item)
        self._fail(item, kind, message, worker.label, detail)

    def _fail(self, item: Item, kind: str, message: str, worker: str = "", detail: str = "") -> None:
        failure = FailureRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                                error=message, kind=kind, attempts=self.attempts[item.id] + 1, time=time.time(),
                                worker=worker, detail=detail)
        self.out.write_failure(failure)
        self.state.failed += 1
        self.state.units_total -= item.units
        self.state.failures.append(failure)
        self.display.log(f"[red]failed[/] {item.output} (line {item.line}): {message}")

    def _item_failure(self, worker: Worker, item: Item, failure: ItemFailure) -> None:
        if failure.group_size > 1 and failure.kind in ("oom", "error"):
            # the group as a whole failed: each item gets a run of its own, which decides
            self._release(worker, item)
            if failure.kind == "oom" and not worker.call:
                self._retire(worker)
            self.alone.add(item.id)
            self.display.log(f"[yellow]retrying alone[/] {item.output}: its group failed ({failure.message})")
            self.queue.appendleft(item)
        elif failure.kind == "oom":
            self._release(worker, item)
            self._retire(worker)  # a fresh process sheds the allocator's fragmentation
            decision = after_out_of_memory(self.route[item.id], self.gpus_per_node >= 2 and self.gpus_total >= 2)
            if isinstance(decision, str):
                self._fail(item, "oom", decision, worker.label, failure.detail)
            else:
                self.route[item.id] = decision
                self.display.log(f"[yellow]out of memory[/] {item.output}: moving it to a two-GPU worker")
                self.queue.appendleft(item)
        elif failure.kind == "device":
            self._release(worker, item)
            if not worker.call:
                self._retire(worker)
            self._requeue_or_fail(item, f"device error: {failure.message}", False)
        else:
            self._finish_failed(worker, item, "error", failure.message, failure.detail)

    def _worker_lost(self, worker: Worker, cause: str, preempted: bool) -> None:
        """The worker died or hangs: every item it was making is requeued (or given up on)."""
        items = list(worker.call.items) if worker.call else []
        worker.call = None
        if worker in self.workers:
            self.workers.remove(worker)
        ray.kill(worker.actor)
        for item in reversed(items):
            self._requeue_or_fail(item, f"worker lost ({cause})", preempted)

    def _requeue_or_fail(self, item: Item, reason: str, preempted: bool) -> None:
        if self.aborting:
            return
        self.attempts[item.id] = after_worker_lost(self.attempts[item.id], preempted)
        if self.attempts[item.id] <= self.options.retries:
            self.display.log(f"[yellow]retrying[/] {item.output}: {reason}")
            self.queue.appendleft(item)
        else:
            self._fail(item, "worker-lost", f"{reason}; gave up after {self.attempts[item.id]} attempts")

    # -- Ctrl-C and SIGTERM --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict:
        previous = {}
        try:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_terminate)
        except ValueError:  # not the main thread (embedded use): no signal handling
            pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_interrupt(self, signum, frame) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.state.draining = True
            self.state.message = "Ctrl-C: finishing the running images; press Ctrl-C again to stop now"
            self.display.log(self.state.message)
        else:
            self.aborting = True

    def _on_terminate(self, signum, frame) -> None:
        self.interrupts += 2
        self.aborting = True

    def request_stop(self, now: bool = False) -> None:
        """Drain (or, with ``now``, abort) from code: what Ctrl-C does."""
        self._on_interrupt(None, None)
        if now:
            self._on_interrupt(None, None)


def _cause(exc: BaseException) -> str:
    """A one-line reason from a Ray exception (its cause's message where there is one)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    text = str(cause if cause is not None else exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


__all__ = ["Scheduler", "RunOptions", "BatchState", "Worker", "Call"]
