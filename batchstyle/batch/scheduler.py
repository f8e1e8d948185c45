"""The driver loop: pools of workers, dispatch, events, retries, escalation, draining and Ctrl-C.

The loop is one ``while`` over ``ray.wait``; the decisions (how many workers of which shape, how
many items per call, whether to retry, escalate or fail) are the small functions of
:mod:`batch.policies`, and the workers and the cluster they run on are :mod:`batch.pool`'s. A
worker owns its current call; the scheduler owns the queue and what it has learnt about each item
(attempts, route, whether it must run alone).
"""

from __future__ import annotations

import signal
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from batchstyle.engine.events import Progress

from .chains import Chains
from .items import Item
from .messages import ItemCheckpoint, ItemFailure, ItemInputs, ItemPreview, ItemResult
from .outdir import FailureRecord, ItemRecord, OutputDir
from .outputs import why_not_written
from .plan import frame_fields, mask_fields
from .policies import after_out_of_memory, after_worker_lost, auto_group_size, fair_share, fit_to_cluster
from .pool import Call, Worker, WorkerPool, WorkerSetup, cause_of
from .state import BatchOptions, BatchState, Display, clip_counts, clip_name

TICK = 0.2  # seconds: how often the display refreshes and Ctrl-C is noticed


class Scheduler:
    """Runs planned items on Ray workers and writes results into the output directory."""

    def __init__(self, todo: list[Item], skipped: int, out: OutputDir, weights_ref: Any, weights_identity: str,
                 options: BatchOptions, display: Display, done: list[Item] = ()):
        self.out, self.options, self.display = out, options, display
        self.weights_identity = weights_identity
        self.queue: deque[Item] = deque(sorted(todo, key=lambda i: -i.route))  # big items first
        self.state = BatchState(total=len(todo) + skipped, skipped=skipped, queued=len(todo),
                                units_total=sum(i.units for i in todo),
                                adaptive_units_total=sum(i.units for i in todo if i.settings.schedule == "adaptive"))
        setup = WorkerSetup(options.backend, weights_ref, weights_identity, options.cpu_threads, options.speed)
        self.pool = WorkerPool(setup, options.device, options.workers, display.log)
        self.state.workers = self.workers = self.pool.workers
        self.route = {item.id: item.route for item in todo}  # GPUs per item, after escalation
        self.tiles: dict[str, int] = {}  # tile cores of items retried after running out of memory
        self.attempts: Counter[str] = Counter()  # runs that ended without a result (worker lost)
        self.alone: set[str] = set()  # failed inside a group once: from now on they run alone
        self.style_refs: dict[Path, Any] = {}
        self.chains = Chains(todo, done)  # frames of clips wait for the earlier frames they start from
        self.state.clips = clip_counts(todo, list(done))
        self.aborting = False
        self.interrupts = 0
        self._announced = 0  # Ctrl-Cs already said out loud
        self.fatal: str | None = None
        self.pool.look()
        for item in [i for i in self.queue if i.problem]:  # unreadable files found in folders
            self.queue.remove(item)
            self._fail(item, "input", item.problem)
        if self.pool.gpus_total:
            self._fit_to_cluster()

    def _fit_to_cluster(self) -> None:
        for item in list(self.queue):
            decision = fit_to_cluster(self.route[item.id], item.gpus, self.pool.gpus_per_node)
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
                self._tick()
                if self.state.draining and not self.state.running:
                    break
        finally:
            self._restore_signal_handlers(previous)
            self._announce_interrupts()
            self.state.interrupted = len(self.state.running) if self.aborting else 0
            self.pool.close()
        if self.fatal:
            raise RuntimeError(self.fatal)
        return self.state

    def _tick(self) -> None:
        self._check_output()
        if self.pool.due():
            for worker in self.pool.look():
                self._worker_lost(worker, "its node left the cluster", preempted=True)
        self.pool.adjust(self._need())
        if not self.state.draining:
            self._dispatch()
        self._pump()
        self._replace_stalled()
        self.state.queued = len(self.queue)
        self.state.message = "" if self.state.draining else self.pool.waiting()
        self._announce_interrupts()
        self.display.update(self.state)

    def _check_output(self) -> None:
        """Stop at once when this run may no longer write its output (another run took its lease over)."""
        lost = self.out.lost()
        if lost and not self.fatal:
            self.fatal = lost

    @property
    def interrupted(self) -> bool:
        return self.interrupts > 0

    def _shape(self, item: Item) -> int:
        """The worker shape an item goes to: 0 (CPU) on a cluster without GPUs, else its route."""
        return self.route[item.id] if self.pool.gpus_total else 0

    def _need(self) -> Counter:
        """Items per worker shape that workers are needed for: the running ones, and the queue unless draining."""
        running = [item for item, _ in self.state.running]
        ready = [item for item in self.queue if self.chains.ready(item)]
        return Counter(self._shape(item) for item in (running if self.state.draining else [*ready, *running]))

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
        first = next((item for item in self.queue if self._shape(item) == worker.gpus and self.chains.ready(item)), None)
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
            masks = [mask.read_bytes() for mask in item.masks]
            earlier = self.chains.earlier_inputs(item, self.out)
        except OSError as exc:
            self._fail(item, "error", f"cannot read {exc.filename}: {exc.strerror}")
            return None
        checkpoint = None if self.options.force else self.out.checkpoint(item.id)
        return ItemInputs(item, content, [self.style_refs[s] for s in item.styles], checkpoint,
                          self.options.max_pixels, tile=self.tiles.get(item.id, item.tile),
                          preview_interval=self.options.preview_interval, masks=masks, earlier=earlier)

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
                self.fatal = self.pool.started(starting[waitable]) or self.fatal
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

    def _next_event(self, worker: Worker) -> None:
        call = worker.call
        call.last_event = time.monotonic()
        try:
            item_id, event = ray.get(next(call.events))
        except StopIteration:  # ended without a result: treat as a lost worker
            self._worker_lost(worker, "the worker stopped without a result", False)
            return
        except RayTaskError as exc:
            for item in list(call.items):
                self._finish_failed(worker, item, "error", cause_of(exc))
            return
        except RayError as exc:  # the actor, its process or its node died
            self._worker_lost(worker, cause_of(exc), bool(getattr(exc, "preempted", False)))
            return
        item = next((i for i in call.items if i.id == item_id), None)
        if item is None:  # an item already given up on (cannot happen in order; be safe)
            return
        if isinstance(event, Progress):
            call.progress[item.id] = event
        elif isinstance(event, ItemPreview):
            call.previews[item.id] = event
        elif isinstance(event, ItemCheckpoint):
            self._save_checkpoint(item, event.data)
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
            resumed_from_scale=result.resumed_from_scale, group_size=result.group_size,
            notes=list(dict.fromkeys([*item.notes, *result.notes])), **mask_fields(item), **frame_fields(item))
        try:
            self.out.write_result(record, result.image)
        except OSError as exc:
            self._write_failed(worker, item, exc)
            return
        self._release(worker, item)
        self.chains.done(item)
        if item.frame is not None:
            count = self.state.clips[clip_name(item)]
            count.done += 1
            count.seconds.append(result.seconds)
        self.state.done += 1
        self.state.units_done += item.units
        if item.settings.schedule == "adaptive":
            self.state.adaptive_units_done += item.units
            self.state.adaptive_shares.append(result.share)
        resumed = "" if result.resumed_from_scale is None else f", resumed after scale {result.resumed_from_scale + 1}"
        together = f", in a group of {result.group_size}" if result.group_size > 1 else ""
        self.display.log(f"[green]done[/] {item.output} ({result.seconds:.0f} s on {record.worker}{resumed}{together})")

    def _save_checkpoint(self, item: Item, data: bytes) -> None:
        """A checkpoint that cannot be saved costs a restart from an earlier scale; a gone output stops the run."""
        try:
            self.out.write_checkpoint(item.id, data)
        except OSError as exc:
            self.fatal = self.out.unusable()
            if not self.fatal:
                self.display.log(f"[yellow]note:[/] cannot save the checkpoint of {item.output}: {exc.strerror or exc}")

    def _write_failed(self, worker: Worker, item: Item, exc: OSError) -> None:
        """An image that cannot be written fails alone, unless the output directory itself is gone."""
        problem = self.out.unusable()
        if problem:
            self.fatal = problem
            return
        self._finish_failed(worker, item, "write", f"cannot write {item.output}: {why_not_written(exc)}")

    def _finish_failed(self, worker: Worker, item: Item, kind: str, message: str, detail: str = "") -> None:
        self._release(worker, item)
        self._fail(item, kind, message, worker.label, detail)

    def _fail(self, item: Item, kind: str, message: str, worker: str = "", detail: str = "") -> None:
        failure = FailureRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                                error=message, kind=kind, attempts=self.attempts[item.id] + 1, time=time.time(),
                                worker=worker, detail=detail)
        try:
            self.out.write_failure(failure)
        except OSError as exc:  # a full disk: the failure is kept here (summary, exit code), the batch goes on
            self.fatal = self.out.unusable() or self.fatal
            if not self.fatal:
                self.display.log(f"[yellow]note:[/] the failure of {item.output} cannot be recorded in "
                                 f"{self.out.meta} ({why_not_written(exc)}); it counts in this run's summary, "
                                 f"and the next run makes the image again")
        self.state.failed += 1
        self.state.units_total -= item.units
        self.state.failures.append(failure)
        self.display.log(f"[red]failed[/] {item.output} (line {item.line}): {message}")
        later = self.chains.later(item, list(self.queue))  # they would start from it
        for frame in later:
            self.queue.remove(frame)
        for frame in later:
            self._fail(frame, "error", f"frame {item.frame.index} of its clip, which it starts from, failed")

    def _item_failure(self, worker: Worker, item: Item, failure: ItemFailure) -> None:
        if failure.group_size > 1 and failure.kind in ("oom", "error"):
            # the group as a whole failed: each item gets a run of its own, which decides
            self._release(worker, item)
            if failure.kind == "oom" and not worker.call:
                self.pool.remove(worker)
            self.alone.add(item.id)
            self.display.log(f"[yellow]retrying alone[/] {item.output}: its group failed ({failure.message})")
            self.queue.appendleft(item)
        elif failure.kind == "oom":
            self._release(worker, item)
            self.pool.remove(worker)  # a fresh process sheds the allocator's fragmentation
            self._after_out_of_memory(worker, item, failure)
        elif failure.kind == "device":
            self._release(worker, item)
            if not worker.call:
                self.pool.remove(worker)
            self._requeue_or_fail(item, f"device error: {failure.message}", False)
        else:
            self._finish_failed(worker, item, "error", failure.message, failure.detail)

    def _after_out_of_memory(self, worker: Worker, item: Item, failure: ItemFailure) -> None:
        """Smaller tiles first, then two GPUs, then a failure (:func:`policies.after_out_of_memory`)."""
        two_gpus_exist = self.pool.gpus_per_node >= 2 and self.pool.gpus_total >= 2
        decision = after_out_of_memory(self.route[item.id], two_gpus_exist, failure.tile_used)
        if isinstance(decision, str):
            self._fail(item, "oom", decision, worker.label, failure.detail)
            return
        if decision.tile is not None:
            self.tiles[item.id] = decision.tile
            self.display.log(f"[yellow]out of memory[/] {item.output}: retrying with tiles of {decision.tile} px")
        else:
            self.display.log(f"[yellow]out of memory[/] {item.output}: moving it to a two-GPU worker")
        self.route[item.id] = decision.gpus
        self.queue.appendleft(item)

    def _worker_lost(self, worker: Worker, cause: str, preempted: bool) -> None:
        """The worker died or hangs: every item it was making is requeued (or given up on)."""
        items = list(worker.call.items) if worker.call else []
        worker.call = None
        if worker in self.workers:
            self.pool.looked = 0.0  # its node may be gone too: look again before starting a replacement
        self.pool.remove(worker)
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
        self.state.draining = True
        self.aborting = self.interrupts > 1

    def _announce_interrupts(self) -> None:
        """Say once what each Ctrl-C does (from the loop: a signal handler must not print)."""
        if self.interrupts == 1 and not self._announced and not self.aborting:
            self.display.log("[yellow]Ctrl-C:[/] finishing the running images, starting no more; press Ctrl-C "
                             "again to stop now")
        if self.aborting and self._announced < 2:
            self.display.log("[yellow]Stopping now:[/] the running images continue from their last finished "
                             "scale next time")
        self._announced = max(self._announced, min(self.interrupts, 2))

    def _on_terminate(self, signum, frame) -> None:
        self.interrupts += 2
        self.aborting = True

    def request_stop(self, now: bool = False) -> None:
        """Drain (or, with ``now``, abort) from code: what Ctrl-C does."""
        self._on_interrupt(None, None)
        if now:
            self._on_interrupt(None, None)


__all__ = ["Scheduler", "BatchOptions", "BatchState"]
