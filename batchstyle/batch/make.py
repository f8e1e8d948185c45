"""Make a batch: every missing image of a manifest, into its output directory, with Ray.

The one use case behind ``batchstyle run``, the benchmarks and library users::

    from batchstyle.batch.make import BatchRequest, make_batch

    outcome = make_batch(BatchRequest("jobs/night1/manifest.csv", outdir="out/night1"))
    print(outcome.state.done, "made,", outcome.state.failed, "failed")

In order: the output directory (as given, else ``output/`` beside the manifest), the manifest read
and checked, the VGG-19 weights resolved, the output directory created and locked (a lease on object
storage), what a crashed run left cleaned up, the observer told it is open, the plan (what is done,
what to make), the video files of clips with frames to make decoded, Ray started or joined (or the caller's, when it has started Ray already), the weights
put into its object store once, and the scheduler run until every item is made, failed or
interrupted; then each clip whose frames are all done gets its video. An observer hears of each step, so that a terminal, a log or the pages can show it; it
prints nothing itself (without one, the scheduler's lines go to the ``batchstyle`` logger). Problems
that stop the batch before any image is made raise :class:`BatchError` (or
:class:`~batchstyle.batch.manifest.ManifestError`, with every problem's line). An image that fails
does not raise: it is counted in ``outcome.state.failed`` and recorded in the output directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager

from batchstyle.engine.settings import StyleSettings

from .clip_outputs import ClipOutcome, decode_clips, finish_clips
from .manifest import MAX_PIXELS, read_manifest
from .plan import Plan, make_plan
from .outdir import LockError, OutputDir, open_output_dir
from .remote_files import RemotePath, StorageError, as_path, redact

if TYPE_CHECKING:  # the scheduler imports Ray: only when a batch is made
    from .scheduler import Scheduler
    from .state import BatchOptions, BatchState


class BatchError(Exception):
    """What stops a batch before any image is made: its message says what is wrong and what to do."""


@dataclass
class BatchRequest:
    """What to make, and where and how."""

    manifest: str  # a path or URL
    outdir: str | None = None  # None: output/ beside the manifest, local or remote
    defaults: StyleSettings | None = None  # the settings of empty cells (the command line's)
    weights: str | None = None  # a weights file; None: $BATCHSTYLE_WEIGHTS, the cache or torchvision's download
    address: str | None = None  # a Ray cluster to join; None: start Ray on this machine
    two_gpu_pixels: int | None = None  # items larger than this run on two GPUs
    options: BatchOptions | None = None  # how the scheduler runs; None: its defaults


@dataclass
class BatchOutcome:
    plan: Plan
    state: BatchState | None = None  # None: nothing was left to make
    interrupted: bool = False
    clips: ClipOutcome | None = None  # the clips' videos written, waiting for frames, or failed


class LoggedDisplay:
    """The scheduler's display for a caller that draws none: each line it logs goes to the
    ``batchstyle`` logger (at INFO), without the terminal's colour markup."""

    def update(self, state: BatchState) -> None:
        pass

    def log(self, text: str) -> None:
        logging.getLogger("batchstyle").info(re.sub(r"\[/?[a-z ]*\]", "", text))


class BatchObserver:
    """What happens while a batch is made, for those who show it. Every method does nothing here."""

    def opened(self, out: OutputDir) -> None:
        """The output directory is created and locked; nothing is planned yet."""

    def took_over(self, out: OutputDir, holder: dict) -> None:
        """The lock was left by a run that ended without cleaning up (``holder``: its pid and host)."""

    def removed_temp_files(self, out: OutputDir, count: int) -> None:
        """Temporary files an interrupted run left were removed."""

    def fetching_weights(self) -> None:
        """No weights were given or cached: torchvision's download is tried."""

    def planned(self, out: OutputDir, plan: Plan) -> None:
        """Every item has its id; ``plan.done`` are skipped, ``plan.todo`` are to make."""

    def scheduling(self, plan: Plan) -> ContextManager[Any]:
        """A context around the scheduler's loop that gives the display the scheduler reports to
        (here: its lines go to the ``batchstyle`` logger)."""
        return contextlib.nullcontext(LoggedDisplay())

    def stopped(self, scheduler: Scheduler) -> None:
        """The scheduler has stopped, normally, interrupted or aborted (``scheduler.aborting``)."""

    def clip_note(self, text: str) -> None:
        """What happened to a clip outside the scheduler's loop: a video file decoded, a video written."""


def make_batch(request: BatchRequest, observer: BatchObserver | None = None) -> BatchOutcome:
    """Make every missing image of ``request.manifest``; see the module's documentation."""
    from .state import BatchOptions

    observer = observer or BatchObserver()
    options = request.options = request.options or BatchOptions()
    out = output_dir_for(request.outdir, request.manifest)
    try:
        items = read_manifest(request.manifest, request.defaults, max_pixels=options.max_pixels or MAX_PIXELS,
                              headers=out.headers, name_max=out.name_max())
    except StorageError as exc:  # the output location, where remote inputs' headers are cached
        raise BatchError(str(exc)) from None
    resolved, identity = _weights(request.weights, options.backend, observer)
    lock = _lock(out)
    try:
        _clean_up_after_a_crash(out, lock, observer)
        observer.opened(out)
        plan = make_plan(items, out, identity, force=options.force, two_gpu_pixels=request.two_gpu_pixels)
        observer.planned(out, plan)
        _decode_clips(plan, observer)
        if not plan.todo:
            return BatchOutcome(plan, clips=_finish_clips(plan, out, observer))
        return _schedule(request, out, plan, resolved, identity, observer)
    finally:
        lock.release()


def output_dir_for(outdir: str | None, manifest: str) -> OutputDir:
    """The output directory (not touched yet): as given, else output/ beside the manifest, local or remote."""
    target = outdir
    if not target:
        parent = as_path(manifest).parent
        target = parent.url + "/output" if isinstance(parent, RemotePath) else str(parent / "output")
    try:
        return open_output_dir(target)
    except StorageError as exc:
        raise BatchError(str(exc)) from None
    except ValueError as exc:
        raise BatchError(f"{redact(target)}: {exc}") from None


def _lock(out: OutputDir):
    """Create and lock the output directory for this run (a lease on object storage)."""
    try:
        out.create()
        return out.lock().acquire()
    except LockError as exc:
        raise BatchError(str(exc)) from None
    except OSError as exc:
        raise BatchError(f"cannot use {out.root} as the output directory: {exc.strerror or exc}") from None


def _weights(path: str | None, backend, observer: BatchObserver):
    """The VGG-19 weights and their identity, before anything is written; another backend (tests,
    benchmarks) needs none."""
    if backend is not None:
        return None, getattr(backend, "identity", type(backend).__name__)
    from batchstyle.engine.weights import ENV_WEIGHTS, WeightsError, cache_dir, resolve_weights

    if not (path or os.environ.get(ENV_WEIGHTS) or (cache_dir() / "vgg19_features.safetensors").is_file()):
        observer.fetching_weights()
    try:
        resolved = resolve_weights(path)
    except WeightsError as exc:
        raise BatchError(f"--weights: {exc}") from None
    return resolved, resolved.identity


def _clean_up_after_a_crash(out: OutputDir, lock, observer: BatchObserver) -> None:
    if lock.taken_over:
        observer.took_over(out, lock.taken_over)
    removed = out.remove_temp_files()
    if removed:
        observer.removed_temp_files(out, removed)


def _decode_clips(plan: Plan, observer: BatchObserver) -> None:
    from .clip_files import ClipError

    try:
        decode_clips(plan.todo, observer.clip_note)
    except ClipError as exc:
        raise BatchError(str(exc)) from None


def _finish_clips(plan: Plan, out: OutputDir, observer: BatchObserver) -> ClipOutcome:
    outcome = finish_clips(plan.all, out)
    for video in outcome.written:
        observer.clip_note(f"[green]wrote[/] {video}")
    for video, why in outcome.failed.items():
        observer.clip_note(f"[red]cannot write[/] {video}: {why}")
    for video, (made, frames) in outcome.waiting.items():
        observer.clip_note(f"{video} waits for its frames ({made} of {frames} made); run the batch again")
    return outcome


def _schedule(request: BatchRequest, out: OutputDir, plan: Plan, resolved, identity: str,
              observer: BatchObserver) -> BatchOutcome:
    from .scheduler import Scheduler

    with contextlib.ExitStack() as stack:
        ray = _ray(request.address, stack)
        weights_ref = ray.put(resolved.to_numpy()) if resolved is not None else None
        display = stack.enter_context(observer.scheduling(plan))
        scheduler = Scheduler(plan.todo, len(plan.done), out, weights_ref, identity, request.options, display,
                              plan.done)
        try:
            state = scheduler.run()
            # the videos before the observer hears the batch stopped: the gallery it closes then lists them
            clips = None if scheduler.interrupted else _finish_clips(plan, out, observer)
        finally:
            observer.stopped(scheduler)
        return BatchOutcome(plan, state, scheduler.interrupted, clips)


def _ray(address: str | None, stack: contextlib.ExitStack):
    """Ray as the caller started it (a library user's, used as it is and left running), or started
    here (or joined at ``address``) for this batch and shut down after it."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    if ray.is_initialized():
        return ray
    ray = start_ray(address)
    stack.callback(ray.shutdown)
    return ray


def start_ray(address: str | None):
    """Join the cluster at ``address``, or start Ray on this machine.

    Ctrl-C while Ray starts waits for the start to finish and then shuts Ray down again: an
    interrupted ``ray.init`` would leave its helper processes running.
    """
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if not address:
        kwargs["include_dashboard"] = False
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        ray.init(address=address or "local", **kwargs)  # "local": a new instance, never one found running
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupted:
            ray.shutdown()
    if interrupted:
        raise KeyboardInterrupt
    return ray


__all__ = ["BatchError", "BatchObserver", "LoggedDisplay", "BatchOutcome", "BatchRequest", "make_batch", "output_dir_for", "start_ray"]
