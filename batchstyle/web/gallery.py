"""``OUTDIR/index.html``: the batch's gallery, a static page kept up to date while the batch runs.

The page is a small shell (``assets/gallery.html``) that loads its data with
``<script src>`` (a page opened from disk cannot ``fetch()``), so it works from disk, a bucket or any
web server with no batchstyle running. The data is written by a background thread of the driver from
what the output directory records (plan, done and failure records; :mod:`.gallery_data`). Its files,
globals and fields are named in :mod:`.contract`::

    .batchstyle/gallery/summary.js          counts, state, and a version per shard
    .batchstyle/gallery/shard-00000.js ...  the entries in plan order, SHARD_SIZE per file
    .batchstyle/gallery/{live,gallery}.js, style.css   the page's code (copied from the package)
    .batchstyle/thumbs/<hash>.jpg           thumbnails (thumbs.py)

An entry is an image, or a clip: all its frames as one (:func:`.gallery_data.clip_entry`), with its
video once the batch has written it (looked for when the gallery starts and when it closes; with clips,
the CLI closes it after the videos are written). A finished or failed image rewrites its shard and the
summary only, so an update costs the same at 10,000 images as at 10 (``benchmarks/bench_gallery.py``).
Every file is written atomically. The scheduler's thread only hands events over (:meth:`Gallery.on_result`, :meth:`Gallery.on_failure`,
called by :meth:`OutputDir.watch`); decoding, thumbnails and writing happen here.

What the data names (the done images, the thumbnails) is all that ``run --web`` serves of the
output directory besides these files: :meth:`Gallery.names`, and :func:`published` for the data a
gallery wrote before.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any

from batchstyle.batch.clip_outputs import video_current
from batchstyle.batch.outdir import FailureRecord, ItemRecord, OutputDir, PlanItem
from batchstyle.batch.remote_files import as_path, file_stamp

from .contract import DATA_FOLDER, DATA_GLOBAL, GALLERY_PAGE, PAGE_ASSETS, SUMMARY_FILE, THUMBS_FOLDER, shard_file
from .gallery_data import clip_entry, gallery_item, in_reach, public
from .server import asset
from .thumbs import Thumb, Thumbnails

SHARD_SIZE = 100  # entries (images or clips) per data file
THUMBS = THUMBS_FOLDER.rstrip("/")
FLUSH_EVERY = 2.0  # seconds: while making thumbnails, write what changed at least this often
SAVE_INDEX_EVERY = 60.0  # seconds between saves of the thumbnails' index (and at the end)
CLOSE_BUDGET = 30.0  # seconds a closing gallery still spends on missing thumbnails
GLOBAL = f"(window.{DATA_GLOBAL}=window.{DATA_GLOBAL}||{{shards:{{}}}})"  # the page's data, set by each file


class Gallery:
    """Keeps ``OUTDIR/index.html`` and its data current: :meth:`start`, events, :meth:`close`."""

    def __init__(self, out: OutputDir, shard_size: int = SHARD_SIZE):
        self.out, self.shard_size = out, shard_size
        self.folder = DATA_FOLDER.rstrip("/")  # relative to the output directory, as every file written here
        self.thumbs = Thumbnails(out, THUMBS)
        self.started = time.time()
        self.error: str | None = None
        self._cond = threading.Condition()
        self._events: list[tuple[str, Any]] = []
        self._closing: str | None = None  # "" (decide from the counts) or a state, once close() was called
        self._deadline: float | None = None  # once closing: thumbnails are still made until then (None: all)
        self._thread: threading.Thread | None = None
        # the model: owned by the writer thread (versions are read under _cond)
        self.plan: list[PlanItem] = []
        self.items: list[dict] = []
        self.position: dict[str, int] = {}
        self.entries: list[list[int]] = []  # each entry's items: an image's one, a clip's frames in order
        self.entry_of: list[int] = []  # each item's entry
        self.videos: dict[int, bool] = {}  # of each clip entry: whether its video is written
        self.content_videos: dict[int, str] = {}  # of a clip entry: its content clip, where the page reaches it
        self.shown: dict[int, int | None] = {}  # of a clip entry: its first done frame, whose thumbnail it shows
        self.output_thumbs: dict[str, Thumb] = {}
        self.input_thumbs: dict[str, Thumb | None] = {}
        self.versions: list[int] = []
        self.named: list[frozenset[str]] | None = None  # per shard, the files it names; None until written
        self.summary_version = 0
        self.state = "running"
        self.done_this_run = 0
        self._todo: deque[int] = deque()
        self._dirty: set[int] = set()
        self._last_flush = self._last_index_save = time.monotonic()

    # -- the driver's side -------------------------------------------------------------------------

    def start(self) -> "Gallery":
        """Write the page and its data now (in the background) and follow the run from here."""
        self._thread = threading.Thread(target=self._run, name="batchstyle-gallery", daemon=True)
        self._thread.start()
        return self

    def on_result(self, record: ItemRecord, image: bytes) -> None:
        self._hand_over(("result", (record, image)))

    def on_failure(self, failure: FailureRecord) -> None:
        self._hand_over(("failure", failure))

    def _hand_over(self, event: tuple[str, Any]) -> None:
        with self._cond:
            if self.error is None and self._closing is None:
                self._events.append(event)
                self._cond.notify()

    def close(self, state: str = "", budget: float | None = CLOSE_BUDGET) -> str | None:
        """Write the last updates and the final state; the error that stopped the gallery, if any.

        ``state`` "" is "finished" when every image is done, else "stopped". Missing thumbnails are
        still made for ``budget`` seconds (None: all of them; 0: none, e.g. after a second Ctrl-C); the
        others are made by the next run or ``batchstyle status --html``.
        """
        with self._cond:
            if self._closing is None:
                self._closing = state
                self._deadline = None if budget is None else time.monotonic() + budget
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        return self.error

    def live(self) -> dict[str, Any]:
        """The data versions, for the live dashboard (a page reloads the shards whose version changed)."""
        with self._cond:
            return {"summary": self.summary_version, "shards": list(self.versions)}

    def names(self, rel: str) -> bool | None:
        """Whether the data written so far names the file ``rel`` (a done image, a thumbnail); None
        before any data is written (a server then goes by :func:`published`)."""
        with self._cond:
            return None if self.named is None else any(rel in files for files in self.named)

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load()
            self._write_page()
            self._flush(everything=True)
            while self._step():
                pass
            self._finish()
        except Exception as exc:  # noqa: BLE001 - the gallery must never stop the batch
            with self._cond:
                self.error = f"{type(exc).__name__}: {exc}"
                self._events.clear()

    def _load(self) -> None:
        """Every planned image as the records say, with the thumbnails that need no work."""
        records, failures = self.out.records(), self.out.failures()
        done = self.out.done_ids(records)
        self.plan = self.out.plan()
        for n, plan in enumerate(self.plan):
            record = records.get(plan.id) if plan.id in done else None
            self.items.append(gallery_item(n, plan, record, failures.get(plan.id) if record is None else None))
            self.position[plan.id] = n
        self._group()
        for e in self.videos:
            self._check_video(e)
            self.content_videos[e] = in_reach(self.out.root, self.plan[self.entries[e][0]].source)
            self.shown[e] = next((n for n in self.entries[e] if self.items[n]["state"] == "done"), None)
        for n in range(len(self.items)):
            if not self._thumbnails(n, make=False):
                self._todo.append(n)
        with self._cond:
            self.versions = [0] * -(-len(self.entries) // self.shard_size)

    def _group(self) -> None:
        """The entries: each image, and each clip (its frames, by number) where its first frame is."""
        clips: dict[str, int] = {}
        for n, plan in enumerate(self.plan):
            e = clips.setdefault(plan.clip, len(self.entries)) if plan.clip else len(self.entries)
            if e == len(self.entries):
                self.entries.append([])
            self.entries[e].append(n)
            self.entry_of.append(e)
        for e in clips.values():
            self.entries[e].sort(key=lambda n: self.plan[n].frame)
            self.videos[e] = False

    def _check_video(self, e: int) -> None:
        """Whether clip entry ``e``'s video is written, from its very frames (as the batch records it)."""
        frames = self.entries[e]
        video = self.plan[frames[0]].video
        complete = all(self.items[n]["state"] == "done" for n in frames)
        if video and complete and not self.videos[e]:
            self.videos[e] = video_current(self.out, video, [self.plan[n].id for n in frames])
            self._dirty.add(e // self.shard_size)

    def _shard_of(self, n: int) -> int:
        return self.entry_of[n] // self.shard_size

    def _step(self) -> bool:
        """Handle what arrived, or make one missing thumbnail; False once closed and nothing is left."""
        with self._cond:
            while not self._events and not self._todo and self._closing is None:
                self._cond.wait()
            events, self._events = self._events, []
            closing, deadline = self._closing, self._deadline
        complete = deadline is None or time.monotonic() < deadline
        for kind, payload in events:
            if kind == "result":
                self._apply_result(*payload)
            else:
                self._apply_failure(payload)
        thumbnails = bool(self._todo) and (closing is None or complete)
        if not events and thumbnails:
            n = self._todo.popleft()
            self._thumbnails(n, make=True)
            self._dirty.add(self._shard_of(n))
        if self._dirty and (events or not self._todo or time.monotonic() - self._last_flush > FLUSH_EVERY):
            self._flush()
        return closing is None or bool(events) or (thumbnails and bool(self._todo))

    def _apply_result(self, record: ItemRecord, image: bytes) -> None:
        n = self.position.get(record.id)
        if n is None:
            return
        self.items[n] = gallery_item(n, self.plan[n], record, None)
        e = self.entry_of[n]
        if e in self.shown and (self.shown[e] is None or self.plan[n].frame < self.plan[self.shown[e]].frame):
            self.shown[e] = n
        thumb = self.thumbs.of_bytes(image, record.output) if self._shows_output(n) else None
        if thumb is not None:
            self.output_thumbs[record.id] = thumb
            self.thumbs.remember(f"out:{record.output}", self.out.stamp(record.output), thumb)
        self.done_this_run += 1
        self._dirty.add(self._shard_of(n))

    def _apply_failure(self, failure: FailureRecord) -> None:
        n = self.position.get(failure.id)
        if n is not None:
            self.items[n] = gallery_item(n, self.plan[n], None, failure)
            self._dirty.add(self._shard_of(n))

    def _thumbnails(self, n: int, make: bool) -> bool:
        """Find (or make) image ``n``'s thumbnails; whether it has all it can have."""
        item, first = self.items[n], self.plan[n].frame <= 1  # a clip shows its first frame's content
        paths = [item["content_path"]] if first else []
        paths += [s["path"] for s in (*item["styles"], *item["masks"])]
        complete = all(self._input_thumb(path, make) is not None for path in paths)
        if item["state"] == "done" and item["id"] not in self.output_thumbs and self._shows_output(n):
            output = item["output"]
            thumb = self.thumbs.of_file(f"out:{output}", self.out.root / output, self.out.stamp(output), make)
            if thumb is None:
                return False
            self.output_thumbs[item["id"]] = thumb
        return complete

    def _shows_output(self, n: int) -> bool:
        """Whether item ``n``'s result is shown as a thumbnail: an image's, or a clip's first done frame."""
        return self.shown.get(self.entry_of[n], n) == n

    def _input_thumb(self, path: str, make: bool) -> Thumb | None:
        """An input's thumbnail, looked for (or made) once per path: a style shared by many rows is one."""
        if path in self.input_thumbs:
            return self.input_thumbs[path]
        file = as_path(path)
        thumb = self.thumbs.of_file(f"in:{path}", file, file_stamp(file), make)
        if thumb is not None or make:
            self.input_thumbs[path] = thumb  # None: unreadable, not tried again
        return thumb

    # -- files ---------------------------------------------------------------------------------------

    def _write_page(self) -> None:
        """The page's code, then index.html, where they differ from this version's (in this order, so
        that a browser that finds the page finds its style and scripts)."""
        for name in PAGE_ASSETS:
            self._write_if_changed(f"{self.folder}/{name}", asset(name))
        self._write_if_changed("index.html", asset(GALLERY_PAGE))

    def _write_if_changed(self, rel: str, data: bytes) -> None:
        try:
            if self.out.read_file(rel) == data:
                return
        except OSError:
            pass
        self.out.write_file(rel, data)

    def _flush(self, everything: bool = False) -> None:
        """Write the changed shards, then the summary that names their new versions."""
        shards = range(len(self.versions)) if everything else sorted(self._dirty)
        self._dirty.clear()
        for k in shards:
            rows = self._rows(k)
            self.out.write_file(f"{self.folder}/{shard_file(k)}", _script(f"shards[{k}]", rows))
            with self._cond:
                self.versions[k] += 1
                self.named = self.named or [frozenset()] * len(self.versions)
                self.named[k] = files_named(rows)
        self.out.write_file(f"{self.folder}/{SUMMARY_FILE}", self._summary())
        with self._cond:
            self.summary_version += 1
        self._last_flush = time.monotonic()
        if time.monotonic() - self._last_index_save > SAVE_INDEX_EVERY:
            self.thumbs.save()
            self._last_index_save = time.monotonic()

    def _rows(self, k: int) -> list[dict]:
        return [self._row(e) for e in range(k * self.shard_size, min((k + 1) * self.shard_size, len(self.entries)))]

    def _entry(self, e: int) -> dict:
        """Entry ``e`` as :mod:`.gallery_data` gives it, with the item whose result it shows."""
        frames = self.entries[e]
        if e not in self.videos:
            return self.items[frames[0]]
        item = clip_entry(e, [self.plan[n] for n in frames], [self.items[n] for n in frames], self.videos[e],
                          self.content_videos.get(e, ""))
        shown = self.shown.get(e)
        return {**item, "shown": self.items[shown]["id"] if shown is not None else None}

    def _row(self, e: int) -> dict:
        item = self._entry(e)
        result = item.pop("shown", item["id"] if item["state"] == "done" else None)
        row = public(item)
        content = self.input_thumbs.get(item["content_path"])
        if content is not None:
            row["content_thumb"], row["content_size"] = content.name, [content.width, content.height]
        for shown, given in [*zip(row["styles"], item["styles"]), *zip(row["masks"], item["masks"])]:
            thumb = self.input_thumbs.get(given["path"])
            if thumb is not None:
                shown["thumb"] = thumb.name
        output = self.output_thumbs.get(result) if result is not None else None
        if output is not None:
            row["thumb"], row["size"] = output.name, [output.width, output.height]
        return row

    def _counts(self) -> Counter:
        """The entries by state (a partial clip counts as pending)."""
        counts = Counter()
        for e, frames in enumerate(self.entries):
            if e in self.videos:
                state = self._entry(e)["state"]
                counts["pending" if state == "partial" else state] += 1
            else:
                counts[self.items[frames[0]]["state"]] += 1
        return counts

    def _summary(self) -> bytes:
        counts = self._counts()
        elapsed = time.time() - self.started
        summary = {
            "format": 1, "title": self.out.name, "state": self.state, "started": self.started,
            "updated": time.time(), "total": len(self.entries),
            "counts": {k: counts.get(k, 0) for k in ("done", "failed", "pending")},
            "done_this_run": self.done_this_run,
            "images_per_hour": self.done_this_run / (elapsed / 3600) if self.done_this_run and elapsed > 0 else None,
            "shard_size": self.shard_size, "shards": list(self.versions), "thumbs": f"{THUMBS}/",
        }
        return _script("summary", summary)

    def _finish(self) -> None:
        for e in self.videos:
            self._check_video(e)  # written by the batch after its frames
        counts = self._counts()
        self.state = self._closing or ("finished" if counts["done"] == len(self.entries) else "stopped")
        self._write_page()  # again, in case it was deleted during the run
        self._flush()
        self.thumbs.save()


def _script(key: str, data: Any) -> bytes:
    """A data file of the page: ``GLOBAL.KEY=JSON;``."""
    return f"{GLOBAL}.{key}=".encode() + json.dumps(data, separators=(",", ":")).encode() + b";\n"


def _read_script(out: OutputDir, rel: str, key: str) -> Any:
    """The data of a file written by :func:`_script`, or None where it is missing or not such a file."""
    head = f"{GLOBAL}.{key}=".encode()
    try:
        blob = out.read_file(rel)
    except OSError:
        return None
    if not blob or not blob.startswith(head) or not blob.endswith(b";\n"):
        return None
    try:
        return json.loads(blob[len(head):-2])
    except ValueError:
        return None


def files_named(rows: list[dict]) -> frozenset[str]:
    """The files of the output directory that rows of the page's data show: each done image, each
    clip's done frames, video and content clip, and every thumbnail (of the results and of their
    inputs: content, styles, masks)."""
    names = set()
    for row in rows:
        if row.get("state") == "done" and isinstance(row.get("output"), str):
            names.add(row["output"])
        frames = row.get("frame_outputs")
        clip = [*(frames if isinstance(frames, list) else []), row.get("video"), row.get("content_video")]
        names.update(name for name in clip if isinstance(name, str))
        inputs = [*row.get("styles", []), *row.get("masks", [])]
        thumbs = [row.get("thumb"), row.get("content_thumb"), *(s.get("thumb") for s in inputs)]
        names.update(f"{THUMBS}/{name}" for name in thumbs if isinstance(name, str))
    return frozenset(names)


def published(out: OutputDir) -> frozenset[str]:
    """What the gallery data already in ``out`` names (:func:`files_named`), before this run writes its own."""
    summary = _read_script(out, DATA_FOLDER + SUMMARY_FILE, "summary")
    shards = summary.get("shards") if isinstance(summary, dict) else None
    names: set[str] = set()
    for k in range(len(shards) if isinstance(shards, list) else 0):
        rows = _read_script(out, DATA_FOLDER + shard_file(k), f"shards[{k}]")
        if isinstance(rows, list):
            names |= files_named([row for row in rows if isinstance(row, dict)])
    return frozenset(names)


def rebuild_gallery(out: OutputDir) -> Gallery:
    """Write the gallery of an output directory from its records, every thumbnail included (no run)."""
    gallery = Gallery(out)
    gallery.started = 0.0
    gallery.start()
    error = gallery.close(budget=None)
    if error:
        raise OSError(f"cannot write the gallery in {out.root}: {error}")
    return gallery


__all__ = ["Gallery", "rebuild_gallery", "published", "files_named", "SHARD_SIZE", "PAGE_ASSETS", "THUMBS"]
