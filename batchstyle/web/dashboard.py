"""The live dashboard of ``batchstyle run --web``: the gallery page plus the running batch.

A :class:`Dashboard` sits between the scheduler and its display: every tick it passes the state on
and keeps a small snapshot of it (counts, rates, ETA, each worker's items with scale, iteration, loss,
and the latest preview of each running image). Building it costs O(running items); the server's
threads read it and serialise it (once per tick, however many browsers ask). Routes (their names and
every field of the state are in :mod:`.contract`)::

    /.live/state           JSON: {"batchstyle": "live", "finished", "counts", "progress", "eta",
                           "images_per_hour", "workers": [{"label", "state", "items": [...]}],
                           "gallery": {"summary", "shards"}}  (data versions, see gallery.py)
    /.live/preview/<id>    the latest preview JPEG of a running image (404 when there is none)

The scheduler knows nothing of it: the CLI hands it to the scheduler as its display
(:class:`batchstyle.batch.state.Display`), wrapping the terminal's.

Of the output directory (local, or remote and read through this dashboard) only what the pages
need is served (:meth:`Dashboard.allow`): ``/`` and the page's code (batchstyle's own copies, see
:data:`PAGE_FILES`), the gallery's data files, and the done images and thumbnails that data names;
every other file is 404, and so is a symlink whose real path is not one of those.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from batchstyle.batch.messages import ItemPreview
from batchstyle.batch.pool import Worker
from batchstyle.batch.progress import BatchProgress, images_per_hour, units_done
from batchstyle.batch.outdir import OutputDir
from batchstyle.batch.state import BatchState, Display, clip_name

from .contract import DATA_FOLDER, GALLERY_PAGE, LIVE_MARK, LIVE_PREFIX, PAGE_ASSETS, PREVIEW_ROUTE, STATE_ROUTE
from .files import PAGE_TYPES, Refused, content_type, media_type, relative_name
from .gallery import Gallery, published
from .server import Reply, asset, json_bytes, text_reply

PREVIEW_INTERVAL = 3.0  # seconds between previews of one running image while the dashboard is served
# What "/" shows in the first moments of a new output directory, before its gallery is written.
PREPARING_PAGE = (b"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta http-equiv='refresh' "
                  b"content='1'><title>batchstyle</title></head><body><p>Preparing the gallery\xe2\x80\xa6</p>"
                  b"</body></html>")
# The page and its code, as the gallery writes them (gallery.py): served from batchstyle itself.
PAGE_FILES = {"index.html": GALLERY_PAGE, **{f"{DATA_FOLDER}{name}": name for name in PAGE_ASSETS}}
DATA_FILE = re.compile(re.escape(DATA_FOLDER) + r"(summary|shard-\d{5})\.js")


class Dashboard:
    """A display for the scheduler (wrapping the terminal's) and the live routes for the web server."""

    def __init__(self, display: Display | None = None, gallery: Gallery | None = None, out: OutputDir | None = None):
        """``out``: the output directory whose gallery is shown; the server streams a local one's files
        (``root``, by :meth:`allow`), this dashboard reads a remote one's itself."""
        self.display, self.gallery, self.out = display, gallery, out
        self.root = out.root if out is not None and not out.remote else None
        self._published: frozenset[str] | None = None
        self._published_lock = threading.Lock()
        self.progress = BatchProgress()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"batchstyle": LIVE_MARK, "finished": False, "workers": [], "progress": 0.0,
                                       "counts": _counts(0, 0, 0, 0, 0, 0), "message": "starting"}
        self._previews: dict[str, ItemPreview] = {}
        self._version = 0
        self._cache: tuple[tuple, bytes] | None = None

    # -- the scheduler's side (its thread) -----------------------------------------------------------

    def attach(self, display: Display) -> "Dashboard":
        """Show the scheduler's state on ``display`` too (the terminal's); returns the dashboard."""
        self.display = display
        return self

    def update(self, state: BatchState) -> None:
        if self.display is not None:
            self.display.update(state)
        self.publish(state)

    def log(self, text: str) -> None:
        if self.display is not None:
            self.display.log(text)

    def starting(self, total: int, skipped: int, message: str) -> None:
        """Before the scheduler runs (Ray starting): the counts of the plan and what is happening."""
        self._set({**self._state, "counts": _counts(total, skipped, 0, 0, 0, total - skipped), "message": message},
                  {})

    def publish(self, state: BatchState, finished: bool = False) -> None:
        """Snapshot ``state`` for the browsers: O(running items)."""
        self.progress.track(state)
        now = time.time()
        running = state.running
        units = state.units_done + sum(units_done(item, w.call.progress.get(item.id)) for item, w in running)
        if finished and not running and state.pending <= 0:
            units = state.units_total  # all made (or failed): the bar is full
        snapshot = {
            "batchstyle": LIVE_MARK, "finished": finished, "draining": state.draining, "message": state.message,
            "counts": _counts(state.total, state.skipped, state.done, state.failed, len(running),
                              max(state.pending, 0)),
            # never backwards: a retried image starts again from its checkpoint, which would take work back
            "progress": max(self._state.get("progress", 0.0),
                            min(1.0, units / state.units_total) if state.units_total else float(finished)),
            "eta": 0.0 if finished else self.progress.batch_eta(state), "elapsed": now - state.started,
            "images_per_hour": images_per_hour(state),
            "workers": [self._worker(w, now, state) for w in state.workers],
        }
        previews = {item.id: w.call.previews[item.id] for item, w in running if item.id in w.call.previews}
        self._set(snapshot, previews)

    def finish(self, state: BatchState) -> None:
        """The batch has ended (finished, failed or interrupted): the page says so."""
        self.publish(state, finished=True)

    def _set(self, snapshot: dict[str, Any], previews: dict[str, ItemPreview]) -> None:
        with self._lock:
            self._state, self._previews = snapshot, previews
            self._version += 1

    def _worker(self, worker: Worker, now: float, state: BatchState) -> dict[str, Any]:
        call = worker.call
        items = [] if call is None else [self._item(item, worker, now, state) for item in call.items]
        return {"label": worker.label, "state": "running" if call else ("idle" if worker.info else "starting"),
                "items": items}

    def _item(self, item, worker: Worker, now: float, state: BatchState) -> dict[str, Any]:
        call = worker.call
        p, preview = call.progress.get(item.id), call.previews.get(item.id)
        out: dict[str, Any] = {"id": item.id, "output": item.output, "line": item.line, "elapsed": now - call.started,
                               "its_per_sec": self.progress.iterations_per_s(item),
                               "eta": self.progress.item_eta(item, p, state)}
        if item.frame is not None:  # a frame: its card tells the clip's frames, and the clip's ETA
            count = state.clips[clip_name(item)]
            running = sum(1 for other, _ in state.running if other.frame and clip_name(other) == clip_name(item))
            out.update(output=f"{clip_name(item)} · frame {item.frame.index} · {count.done}/{count.total} frames",
                       eta=count.eta(running))
        if p is not None:
            out.update(scale=p.scale_index + 1, scales=p.scale_count, width=p.width, height=p.height,
                       iteration=p.iteration, iterations=p.iterations, loss=p.loss,
                       gpu_memory_mb=p.gpu_peak_bytes / 2**20)
        if preview is not None:
            out["preview"] = {"version": preview.version, "width": preview.width, "height": preview.height,
                              "of_width": preview.of_width, "of_height": preview.of_height}
        return out

    # -- the server's side (its threads) ---------------------------------------------------------------

    def reply(self, path: str, query: str) -> Reply | None:
        if path == STATE_ROUTE:
            return Reply(200, self._state_json(), "application/json; charset=utf-8")
        if path.startswith(PREVIEW_ROUTE):
            with self._lock:
                preview = self._previews.get(path[len(PREVIEW_ROUTE):])
            if preview is None:
                return text_reply(404, "no preview of that image now")
            return Reply(200, preview.image, "image/jpeg")
        if path.startswith(LIVE_PREFIX):
            return text_reply(404, "not found")
        if self.out is None:
            return None
        try:
            name = relative_name(path)
        except Refused as exc:
            return text_reply(exc.status, str(exc))
        if name in PAGE_FILES:
            return self._page_file(name)
        return self._remote_file(name) if self.root is None else None  # a local one's: the server, by allow()

    def allow(self, name: str) -> str | None:
        """The content type of a file of the output directory that the pages need (the gallery's data,
        the done images, clips and thumbnails it names), None for every other file."""
        if DATA_FILE.fullmatch(name):
            return PAGE_TYPES[".js"]
        return media_type(name) if self._named(name) else None

    def _named(self, name: str) -> bool:
        """Whether the gallery's data names ``name``: this run's once written, until then the one there."""
        gallery = self.gallery
        named = gallery.names(name) if gallery is not None else None
        if named is not None:
            return named
        with self._published_lock:
            if self._published is None:
                self._published = published(self.out)
            return name in self._published

    def _page_file(self, name: str) -> Reply:
        """The page or its code, batchstyle's own; the page says "preparing" until the gallery is there."""
        if name == "index.html" and not self._has_page():
            return Reply(200, PREPARING_PAGE, "text/html; charset=utf-8")
        return Reply(200, asset(PAGE_FILES[name]), content_type(name))

    def _has_page(self) -> bool:
        if self.root is not None:
            return (self.root / "index.html").is_file()
        return self.out.read_file("index.html") is not None

    def _remote_file(self, name: str) -> Reply:
        """A file of a remote output directory, by the same allow-list as a local one's (no symlinks there)."""
        kind = self.allow(name)
        data = self.out.read_file(name) if kind is not None else None
        return text_reply(404, "no such file") if data is None else Reply(200, data, kind)

    def _state_json(self) -> bytes:
        """The snapshot as JSON, made once per tick and data version whatever the number of browsers."""
        gallery = self.gallery.live() if self.gallery is not None else None
        with self._lock:
            version, state = self._version, self._state
        key = (version, gallery["summary"] if gallery else None)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        body = json_bytes({**state, "gallery": gallery})
        self._cache = (key, body)
        return body


def _counts(total: int, skipped: int, done: int, failed: int, running: int, pending: int) -> dict[str, int]:
    return {"total": total, "skipped": skipped, "done": done, "failed": failed, "running": running,
            "pending": pending}


__all__ = ["Dashboard", "PREVIEW_INTERVAL"]
