"""The driver loop: pools of workers, dispatch, events, retries, escalation, draining and Ctrl-C.

The loop is one ``while`` over ``ray.wait``; the policies (how many workers of which shape,
whether to retry, escalate or fail) are small functions beside it.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from batchstyle.engine.events import Progress
from batchstyle.engine.images import format_for
from batchstyle.engine.speed import auto_batch_size

from .plan import Work
from .store import FailureRecord, ItemRecord, OutputDir
from .worker import ItemCheckpoint, ItemFailure, ItemResult, ItemTask, StyleWorker, WorkerInfo

TICK = 0.2  # seconds: how often the display refreshes and Ctrl-C is noticed
INIT_FAILURES_BEFORE_GIVING_UP = 3
SLOW_START = 60.0  # seconds after which a worker that has not started is worth a word


@dataclass
class RunOptions:
    backend: str = "engine"
    device: str = "auto"  # auto | gpu | cpu
    workers: int | None = None  # most workers at once; None: as many as the cluster's resources allow
    retries: int = 2  # extra attempts for an item whose worker was lost
    cpu_threads: int | None = None
    stall_timeout: float | None = 1800.0  # seconds without any event from an item before its worker is replaced
    batch_size: int | None = None  # items optimised together per worker; None: automatic by size and memory
    speed: dict | None = None  # engine Speed options for every worker


@dataclass
class Worker:
    actor: Any
    gpus: int  # 0 for a CPU worker
    info_ref: Any
    info: WorkerInfo | None = None
    batch: list["Running"] = field(default_factory=list)  # the items it is making now (one call)
    node_id: str | None = None  # where a CPU worker was placed
    created: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        return self.info.label if self.info else "starting"


@dataclass
class Running:
    work: Work
    worker: Worker
    gen: Any  # shared by the items of one batch
    started: float
    progress: Progress | None = None
    last_event: float = field(default_factory=time.monotonic)


@dataclass
class BatchState:
    """What the display shows: counts, running items, finished work for rates."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)
    running: dict[str, Running] = field(default_factory=dict)
    queued: int = 0
    units_total: int = 0
    units_done: int = 0
    draining: bool = False
    message: str = ""
    failures: list[FailureRecord] = field(default_factory=list)
    finished: list[tuple[Work, ItemRecord]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return self.total - self.skipped - self.done - self.failed - len(self.running)


class Display(Protocol):
    def update(self, state: BatchState) -> None: ...
    def log(self, text: str) -> None: ...


# --- policies -------------------------------------------------------------------------------------

def desired_workers(need: dict[int, int], gpus_total: int, gpus_per_node_max: int, cap: int | None,
                    cpu_nodes: int) -> dict[int, int]:
    """How many workers of each shape (0 = CPU, 1 or 2 GPUs) the remaining work calls for.

    Two-GPU workers are wanted first (they are the hardest to place); one-GPU workers take the
    GPUs left. Without GPUs every item runs on CPU workers, one per node.
    """
    if gpus_total == 0:
        n = min(sum(need.values()), cpu_nodes, cap or cpu_nodes)
        return {0: n}
    two = min(need.get(2, 0), gpus_total // 2) if gpus_per_node_max >= 2 else 0
    one = min(need.get(1, 0), gpus_total - 2 * two)
    if cap is not None:
        two = min(two, cap)
        one = min(one, cap - two)
    return {1: one, 2: two}


def fit_to_cluster(work: Work, gpus_per_node: int) -> str | None:
    """Make a two-GPU item fit a cluster without two-GPU machines: one GPU, or a failure message."""
    if work.gpus < 2 or gpus_per_node >= 2:
        return None
    if work.item.gpus == 2:
        return ("gpus=2 needs two GPUs in one machine, but no node of this cluster has two; set gpus=1 "
                "or a smaller end_scale")
    work.gpus = 1  # routed to two GPUs only by its size: try one
    return None


def after_worker_lost(work: Work, preempted: bool, retries: int) -> bool:
    """Requeue (True) or give up (False) on an item whose worker died; preemptions are free."""
    if not preempted:
        work.attempts += 1
    return work.attempts <= retries


def after_out_of_memory(work: Work, can_use_two: bool) -> str | None:
    """Move the item to a two-GPU worker (None) or return the failure message."""
    if work.gpus < 2 and can_use_two:
        work.gpus, work.escalated = 2, True
        return None
    if work.gpus < 2:
        return ("out of GPU memory on one GPU and no node has two GPUs; lower end_scale, or run it "
                "on a machine with two GPUs with gpus=2 in the manifest")
    return "out of GPU memory even split over two GPUs; lower end_scale (or style_size)"


# --- the driver -----------------------------------------------------------------------------------

class Scheduler:
    """Runs planned work on Ray workers and writes results into the output directory."""

    def __init__(self, todo: list[Work], skipped: int, out: OutputDir, weights_ref: Any, weights_identity: str,
                 options: RunOptions, display: Display):
        self.out, self.options, self.display = out, options, display
        self.weights_ref, self.weights_identity = weights_ref, weights_identity
        self.queue: deque[Work] = deque(sorted(todo, key=lambda w: -w.gpus))  # big items first
        self.workers: list[Worker] = []
        self.state = BatchState(total=len(todo) + skipped, skipped=skipped, queued=len(todo),
                                units_total=sum(w.units for w in todo))
        self.style_refs: dict[Path, Any] = {}
        self.init_failures: dict[int, int] = {}
        self.aborting = False
        self.interrupts = 0
        self.fatal: str | None = None
        self._resources()
        if self.gpus_total:
            for work in list(self.queue):
                problem = fit_to_cluster(work, self.gpus_per_node)
                if problem:
                    self.queue.remove(work)
                    self._fail(work, "error", problem, None)

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

    def _adjust_pool(self) -> None:
        """Create the workers the remaining work needs; retire idle ones it no longer needs."""
        need: dict[int, int] = {}
        for work in [*self.queue, *(r.work for r in self.state.running.values())]:
            shape = work.gpus if self.gpus_total else 0
            need[shape] = need.get(shape, 0) + 1
        if self.state.draining:
            need = {s: sum(1 for r in self.state.running.values() if self._shape(r.work) == s) for s in need}
        want = desired_workers(need, self.gpus_total, self.gpus_per_node, self.options.workers,
                               len(self.cpu_nodes))
        for shape in sorted(want, reverse=True):
            have = [w for w in self.workers if w.gpus == shape]
            for worker in [w for w in have if not w.batch][: max(0, len(have) - want[shape])]:
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

    def _shape(self, work: Work) -> int:
        return work.gpus if self.gpus_total else 0

    def _start_worker(self, gpus: int) -> None:
        if gpus == 0:
            used = {w.node_id for w in self.workers}
            free = [n for n in self.cpu_nodes if n not in used]
            if not free:
                return
            node = free[0]
            threads = self.options.cpu_threads or self.cpu_nodes[node]
            actor = StyleWorker.options(
                num_cpus=self.cpu_nodes[node], num_gpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(self.options.backend, self.weights_ref, self.weights_identity, 0, threads, self.options.speed)
            worker = Worker(actor, 0, actor.info.remote(), node_id=node)
        else:
            actor = StyleWorker.options(num_gpus=gpus, num_cpus=1).remote(
                self.options.backend, self.weights_ref, self.weights_identity, gpus, self.options.cpu_threads,
                self.options.speed)
            worker = Worker(actor, gpus, actor.info.remote())
        self.workers.append(worker)

    def _retire(self, worker: Worker) -> None:
        ray.kill(worker.actor)
        self.workers.remove(worker)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.info is None or worker.batch:
                continue
            tasks = []
            for work in self._next_for(worker):
                task = self._task(work)
                if task is not None:
                    tasks.append((work, task))
            if not tasks:
                continue
            gen = worker.actor.run.remote([task for _, task in tasks])
            now = time.time()
            for work, _ in tasks:
                running = Running(work, worker, gen, now)
                worker.batch.append(running)
                self.state.running[work.id] = running

    def batch_limit(self, work: Work, worker: Worker) -> int:
        """How many items like ``work`` this worker makes at once (``--batch-size`` or automatic)."""
        if work.batch_key is None or work.solo:
            return 1
        if self.options.batch_size:
            return self.options.batch_size
        info = worker.info
        return auto_batch_size(work.pixels, info.device_kind if info else "cpu",
                               info.memory_bytes if info else 0, info.precision if info else "fp32")

    def _next_for(self, worker: Worker) -> list[Work]:
        """The next queued item for this worker's shape, with compatible items to batch with it.

        A batch takes at most its share of the compatible items among the workers of this shape,
        so that 8 images on 2 GPUs run as 4 + 4, not 8 + nothing.
        """
        for i, work in enumerate(self.queue):
            if self._shape(work) == worker.gpus:
                del self.queue[i]
                group = [work]
                limit = self.batch_limit(work, worker)
                if limit > 1:
                    mates = [w for w in self.queue if w.batch_key == work.batch_key and not w.solo
                             and self._shape(w) == worker.gpus]
                    peers = sum(1 for w in self.workers if w.gpus == worker.gpus and not w.batch)
                    share = -(-(len(mates) + 1) // max(peers, 1))
                    for other in mates[:min(limit, share) - 1]:
                        self.queue.remove(other)
                        group.append(other)
                return group
        return []

    def _task(self, work: Work) -> ItemTask | None:
        """Read the inputs for a worker; a file that vanished since planning fails the item."""
        item = work.item
        try:
            content = item.content.read_bytes()
            for style in item.styles:
                if style not in self.style_refs:
                    self.style_refs[style] = ray.put(style.read_bytes())
        except OSError as exc:
            self._fail(work, "error", f"cannot read {exc.filename}: {exc.strerror}", None)
            return None
        return ItemTask(id=work.id, name=item.output, content=content, content_name=item.content.name,
                        styles=[self.style_refs[s] for s in item.styles],
                        style_names=[s.name for s in item.styles], settings=item.settings.to_dict(),
                        output_format=format_for(item.output), checkpoint=self.out.checkpoint(work.id))

    def _pump(self) -> None:
        """Wait a moment for events, then handle every one that has arrived."""
        starting = {w.info_ref: w for w in self.workers if w.info is None}
        gens = {w.batch[0].gen: w for w in self.workers if w.batch}
        waitables = [*starting, *gens]
        if not waitables:
            time.sleep(TICK)
            return
        ready, _ = ray.wait(waitables, num_returns=1, timeout=TICK)
        if ready:
            ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
        for waitable in ready:
            if waitable in starting:
                self._worker_ready(starting[waitable])
            elif waitable in gens and gens[waitable].batch and gens[waitable].batch[0].gen is waitable:
                self._next_event(gens[waitable])

    def _replace_stalled(self) -> None:
        """A worker silent for too long (a hung device, a deadlock) is killed; its items run again."""
        limit = self.options.stall_timeout
        if not limit:
            return
        now = time.monotonic()
        for worker in [w for w in self.workers if w.batch]:
            silent = now - max(r.last_event for r in worker.batch)
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
        now = time.monotonic()
        for running in worker.batch:
            running.last_event = now
        gen = worker.batch[0].gen
        try:
            ref = next(gen)
        except StopIteration:  # ended without a result: treat as a lost worker
            self._worker_lost(worker, "the worker stopped without a result", False)
            return
        try:
            task_id, event = ray.get(ref)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            self._worker_lost(worker, _cause(exc), bool(getattr(exc, "preempted", False)))
            return
        except RayTaskError as exc:
            for running in list(worker.batch):
                self._finish_failed(running, "error", _cause(exc))
            return
        running = next((r for r in worker.batch if r.work.id == task_id), None)
        if running is None:  # an item already given up on (cannot happen in order; be safe)
            return
        if isinstance(event, Progress):
            running.progress = event
        elif isinstance(event, ItemCheckpoint):
            self.out.write_checkpoint(running.work.id, event.data)
        elif isinstance(event, ItemResult):
            self._finish_done(running, event)
        elif isinstance(event, ItemFailure):
            self._item_failure(running, event)

    # -- outcomes ----------------------------------------------------------------------------------

    def _release(self, running: Running) -> None:
        self.state.running.pop(running.work.id, None)
        if running in running.worker.batch:
            running.worker.batch.remove(running)

    def _finish_done(self, running: Running, result: ItemResult) -> None:
        work, item = running.work, running.work.item
        info = running.worker.info
        record = ItemRecord(
            id=work.id, output=item.output, line=item.line, content=str(item.content),
            styles=[str(s) for s in item.styles], settings=item.settings.to_dict(), weights=self.weights_identity,
            worker=info.label if info else "", devices=info.devices if info else [], attempts=work.attempts + 1,
            started=running.started, finished=time.time(), seconds=result.seconds, iterations=result.iterations,
            final_loss=result.final_loss, gpu_peak_bytes=result.gpu_peak_bytes,
            resumed_from_scale=result.resumed_from_scale, batch_size=result.batch_size)
        self.out.write_result(record, result.image)
        self._release(running)
        self.state.done += 1
        self.state.units_done += work.units
        self.state.finished.append((work, record))
        resumed = "" if result.resumed_from_scale is None else f", resumed after scale {result.resumed_from_scale + 1}"
        batch = f", in a batch of {result.batch_size}" if result.batch_size > 1 else ""
        self.display.log(f"[green]done[/] {item.output} ({result.seconds:.0f} s on {record.worker}{resumed}{batch})")

    def _finish_failed(self, running: Running, kind: str, message: str) -> None:
        self._release(running)
        self._fail(running.work, kind, message, running.worker)

    def _fail(self, work: Work, kind: str, message: str, worker: Worker | None) -> None:
        failure = FailureRecord(id=work.id, output=work.item.output, line=work.item.line,
                                content=str(work.item.content), error=message, kind=kind,
                                attempts=work.attempts + 1, time=time.time(),
                                worker=worker.label if worker else "")
        self.out.write_failure(failure)
        self.state.failed += 1
        self.state.units_total -= work.units
        self.state.failures.append(failure)
        self.display.log(f"[red]failed[/] {work.item.output} (line {work.item.line}): {message}")

    def _item_failure(self, running: Running, failure: ItemFailure) -> None:
        work, worker = running.work, running.worker
        if failure.batch_size > 1 and failure.kind in ("oom", "error"):
            # the batch as a whole failed: each item gets a run of its own, which decides
            self._release(running)
            if failure.kind == "oom" and not worker.batch:
                self._retire(worker)
            work.solo = True
            self.display.log(f"[yellow]retrying alone[/] {work.item.output}: its batch failed ({failure.message})")
            self.queue.appendleft(work)
        elif failure.kind == "oom":
            self._release(running)
            self._retire(worker)  # a fresh process sheds the allocator's fragmentation
            problem = after_out_of_memory(work, self.gpus_per_node >= 2 and self.gpus_total >= 2)
            if problem is None:
                self.display.log(f"[yellow]out of memory[/] {work.item.output}: moving it to a two-GPU worker")
                self.queue.appendleft(work)
            else:
                self._fail(work, "oom", problem, worker)
        elif failure.kind == "device":
            self._release(running)
            if not worker.batch:
                self._retire(worker)
            self._requeue_or_fail(work, f"device error: {failure.message}", False)
        else:
            self._finish_failed(running, "error", failure.message)

    def _worker_lost(self, worker: Worker, cause: str, preempted: bool) -> None:
        """The worker died or hangs: every item it was making is requeued (or given up on)."""
        batch = list(worker.batch)
        for running in batch:
            self._release(running)
        if worker in self.workers:
            self.workers.remove(worker)
        ray.kill(worker.actor)
        for running in reversed(batch):
            self._requeue_or_fail(running.work, f"worker lost ({cause})", preempted)

    def _requeue_or_fail(self, work: Work, reason: str, preempted: bool) -> None:
        if self.aborting:
            return
        if after_worker_lost(work, preempted, self.options.retries):
            self.display.log(f"[yellow]retrying[/] {work.item.output}: {reason}")
            self.queue.appendleft(work)
        else:
            self._fail(work, "worker-lost", f"{reason}; gave up after {work.attempts} attempts", None)

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


__all__ = ["Scheduler", "RunOptions", "BatchState", "desired_workers", "fit_to_cluster", "after_worker_lost",
           "after_out_of_memory"]
