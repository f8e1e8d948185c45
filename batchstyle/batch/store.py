"""The output directory: finished images, their records, failures, checkpoints, the lock and resume.

Layout::

    OUTDIR/<outputs>                         the images, where the manifest says
    OUTDIR/.batchstyle/done/<id>.json        one record per finished image (written after the image)
    OUTDIR/.batchstyle/failed/<id>.json      the last failure of an item that is not done
    OUTDIR/.batchstyle/checkpoints/<id>.ckpt engine state after the last finished scale
    OUTDIR/.batchstyle/plan.json             the items of the latest run (for ``batchstyle status``)
    OUTDIR/.batchstyle/hashes.json           input file hashes by (path, size, mtime)
    OUTDIR/.batchstyle/headers.json          what remote inputs' headers said, by content tag (ETag)
    OUTDIR/.batchstyle/lock                  who runs here now

What the records hold, and the check of their shape that every reader applies, is
:mod:`batch.records`; the hash and header caches are :mod:`batch.caches`. A file of the wrong shape
counts as absent and is noted once in :attr:`OutputDir.unreadable`.

Other files (a gallery, thumbnails) go through :meth:`OutputDir.write_file`, which writes them the
same safe way here and on object storage. An output directory at a URL (``s3://bucket/prefix``)
is a :class:`remote_store.RemoteOutputDir`: same methods, a lease instead of the lock.

Every file is written under a temporary name and renamed into place, so a crash never leaves a
half-written file under a final name. A record means a complete image; no record means redo. A
record also holds its image's size, time and hash, so that it never vouches for a file something
else has overwritten since (another item of the same output name, another program).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from batchstyle.engine.images import atomic_write

from .caches import HashCache, HeaderCache, _json_object, _sha256_of
from .outputs import NAME_MAX
from .records import META, BadRecord, FailureRecord, ItemRecord, PlanEntry, _json_bytes, plan_from, record_from
from .storage import RemotePath, as_path, is_url

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TMP_SUFFIX = ".tmp"  # atomic_write's temporary files are ".bs-<random>.tmp" (before: ".<name>.<random>.tmp")


class LockError(RuntimeError):
    """Another live run holds the output directory."""


class OutputDir:
    """Reads and writes one output directory; safe against crashes at any instant.

    ``OutputDir("s3://bucket/prefix")`` (any fsspec URL) gives a :class:`remote_store.RemoteOutputDir`
    with the same methods, designed for object storage; a local path keeps this class's fast path.
    """

    def __new__(cls, root: str | os.PathLike, **options):
        if cls is OutputDir and is_url(root):
            from .remote_store import RemoteOutputDir

            cls = RemoteOutputDir
        return super().__new__(cls)

    remote = False  # on object storage (RemoteOutputDir): records are listed, not read

    def __init__(self, root: str | os.PathLike, **options):
        self.root = as_path(os.fspath(root))
        self.url = str(self.root)  # what messages show
        self.meta = self.root / META
        self.done_dir = self.meta / "done"
        self.failed_dir = self.meta / "failed"
        self.checkpoint_dir = self.meta / "checkpoints"
        self._by_output: dict[str, set[str]] | None = None
        self.observers: list[Any] = []  # see watch()
        self.headers = HeaderCache(self)

    @property
    def unreadable(self) -> dict[str, str]:
        """The files of ``.batchstyle/`` read as absent so far, each once: where -> why (for one note each)."""
        return self.__dict__.setdefault("_unreadable", {})

    def _record_of(self, where: str, data: bytes, cls):
        """The record in a file's bytes, or None (noted once in :attr:`unreadable`) when it is none."""
        try:
            return record_from(data, cls, where.rsplit("/", 1)[-1])
        except BadRecord as exc:
            self.unreadable.setdefault(where, str(exc))
            return None

    def create(self) -> None:
        for d in (self.done_dir, self.failed_dir, self.checkpoint_dir):
            d.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        """Whether this is a batchstyle output directory (it has a ``.batchstyle`` folder)."""
        return self.meta.is_dir()

    def lost(self) -> str | None:
        """Why this run may no longer write here (another run took over), or None."""
        return None

    # -- any file under the directory (the gallery, thumbnails, caches) ------------------------------

    def write_file(self, rel: str, data: bytes) -> None:
        """Write ``rel`` (a path relative to the directory, ``/`` separated) whole: readers see the
        old file or the new one, never half of it."""
        atomic_write(self.root / rel, data)

    def read_file(self, rel: str) -> bytes | None:
        """The bytes of ``rel`` under the directory, or None when there is no such file."""
        try:
            return (self.root / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def file_names(self, rel: str) -> set[str]:
        """The names of the files in the folder ``rel`` under the directory (none if there is no such folder)."""
        try:
            return set(os.listdir(self.root / rel))
        except OSError:
            return set()

    def stamp(self, rel: str) -> tuple | None:
        """What tells whether the file ``rel`` changed without reading it (see :func:`file_stamp`)."""
        return file_stamp(self.root / rel)

    def name_max(self) -> int | None:
        """The most bytes one file name may have here (the file system's limit; None on object storage)."""
        if self.remote:
            return None
        folder = Path(os.path.abspath(self.root))
        while not folder.is_dir() and folder != folder.parent:  # not made yet: the folder it will be made in
            folder = folder.parent
        try:
            return os.pathconf(folder, "PC_NAME_MAX")
        except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer: the usual limit
            return NAME_MAX

    @property
    def name(self) -> str:
        """The directory's own name, as a title."""
        return Path(os.path.abspath(self.root)).name

    # -- reading ---------------------------------------------------------------------------------

    def _read_json_dir(self, folder: Path, cls):
        out = {}
        if not folder.is_dir():
            return out
        for entry in os.scandir(folder):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                data = Path(entry.path).read_bytes()
            except OSError as exc:
                self.unreadable.setdefault(entry.path, f"cannot be read: {exc.strerror or exc}")
                continue
            record = self._record_of(entry.path, data, cls)  # none: counts as absent, the item is redone
            if record is not None:
                out[record.id] = record
        return out

    def records(self) -> dict[str, ItemRecord]:
        return self._read_json_dir(self.done_dir, ItemRecord)

    def failures(self) -> dict[str, FailureRecord]:
        return self._read_json_dir(self.failed_dir, FailureRecord)

    def done_ids(self, records: dict[str, ItemRecord] | None = None, outputs: dict[str, str] | None = None) -> set[str]:
        """Ids whose record exists and whose image is still the one the record describes.

        ``outputs`` (id -> output, from a plan) lets a remote directory check without reading records.
        """
        records = self.records() if records is None else records
        return {i for i, r in records.items() if self._still_there(r)}

    def _still_there(self, record: ItemRecord) -> bool:
        path = self.root / record.output
        try:
            st = path.stat()
        except OSError:
            return False
        if not record.output_sha256:  # a record from before images were fingerprinted
            return path.is_file()
        if st.st_size != record.output_bytes:
            return False
        # the same size and time: the same file; a copy (new times) is checked by its hash
        return st.st_mtime_ns == record.output_mtime_ns or _sha256_of(path) == record.output_sha256

    def plan(self) -> list[PlanEntry]:
        path = self.meta / "plan.json"
        try:
            return plan_from(path.read_bytes())
        except OSError:
            return []
        except BadRecord as exc:
            self.unreadable.setdefault(str(path), str(exc))
            return []

    def checkpoint(self, item_id: str) -> bytes | None:
        try:
            return (self.checkpoint_dir / f"{item_id}.ckpt").read_bytes()
        except OSError:
            return None

    # -- writing ---------------------------------------------------------------------------------

    def write_plan(self, entries: Iterable[PlanEntry], info: dict[str, Any]) -> None:
        atomic_write(self.meta / "plan.json", _json_bytes({**info, "items": [asdict(e) for e in entries]}))

    def write_result(self, record: ItemRecord, image: bytes) -> None:
        """The image first, then its record; then forget the failure and checkpoint of that item.

        Records of other items that name the same output go first: once the file is replaced,
        they no longer describe it (a crash in between leaves the old image without a record,
        which is redone).
        """
        if not self.done_dir.is_dir():  # the directory was removed under the run: do not make a new one
            raise FileNotFoundError(errno.ENOENT, "the output directory is gone", str(self.done_dir))
        for other in self._claims_on(record.output) - {record.id}:
            (self.done_dir / f"{other}.json").unlink(missing_ok=True)
        path = self.root / record.output
        atomic_write(path, image)
        st = path.stat()
        record.output_bytes, record.output_mtime_ns = st.st_size, st.st_mtime_ns
        record.output_sha256 = hashlib.sha256(image).hexdigest()
        atomic_write(self.done_dir / f"{record.id}.json", _json_bytes(asdict(record)))
        self._claims_on(record.output).add(record.id)
        (self.failed_dir / f"{record.id}.json").unlink(missing_ok=True)
        (self.checkpoint_dir / f"{record.id}.ckpt").unlink(missing_ok=True)
        self._notify("on_result", record, image)

    def _claims_on(self, output: str) -> set[str]:
        """Ids of the records that name ``output`` (an index built once from the records)."""
        if self._by_output is None:
            self._by_output = {}
            for item_id, record in self.records().items():
                self._by_output.setdefault(record.output, set()).add(item_id)
        return self._by_output.setdefault(output, set())

    def write_failure(self, failure: FailureRecord) -> None:
        atomic_write(self.failed_dir / f"{failure.id}.json", _json_bytes(asdict(failure)))
        self._notify("on_failure", failure)

    def write_checkpoint(self, item_id: str, data: bytes) -> None:
        atomic_write(self.checkpoint_dir / f"{item_id}.ckpt", data)

    def remove_temp_files(self) -> int:
        """Delete temporary files left by a crashed run (only call while holding the lock)."""
        removed = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    Path(folder, name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def unusable(self) -> str | None:
        """Why nothing can be written here any more (the directory gone or read-only), or None.

        Probes by writing: permission bits say nothing to root or on a read-only mount. A full disk
        (or quota) is no reason: each write that fails fails alone, and space may come back.
        """
        for folder in (self.root, self.done_dir):
            if not folder.is_dir():
                return f"the output directory {self.root} is gone ({folder} no longer exists); nothing more can be saved"
        try:
            with tempfile.TemporaryFile(dir=self.done_dir):
                pass
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return None
            return f"the output directory {self.root} cannot be written any more: {exc.strerror or exc}"
        return None

    def lock(self) -> "RunLock":
        return RunLock(self.meta / "lock")

    # -- observers -------------------------------------------------------------------------------

    def watch(self, observer: Any) -> None:
        """After each write, call ``observer.on_result(record, image)`` or ``observer.on_failure(failure)``
        (the gallery follows the run this way); an observer must return quickly."""
        self.observers.append(observer)

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args)


class RunLock:
    """An exclusive lock on an output directory, released by the kernel when its process dies.

    The lock file holds who took it, for the message shown to a second run; a file whose lock is no
    longer held was left by a crashed run and is taken over.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.taken_over: dict[str, Any] | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = self.holder()
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}"
                   if holder else "another process")
            raise LockError(f"{self.path.parent.parent} is in use by another batchstyle run ({who}). "
                            f"Wait for it to finish or stop it, or use another output directory.") from None
        previous = self.holder_from_fd(fd)
        if previous:
            self.taken_over = previous
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            os.fsync(fd)
        except OSError as exc:  # a full disk: the lock holds all the same, only who holds it goes unsaid
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                os.close(fd)
                raise
        self._fd = fd
        return self

    @staticmethod
    def holder_from_fd(fd: int) -> dict[str, Any] | None:
        try:
            return _json_object(os.pread(fd, 4096, 0))
        except OSError:
            return None

    def held_elsewhere(self) -> bool:
        """Whether a live process holds this lock (probing it without taking it)."""
        if fcntl is None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        try:
            return _json_object(self.path.read_bytes())
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody to report as crashed
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def file_stamp(path: Path | RemotePath) -> tuple | None:
    """What tells whether a file changed without reading it: its size and modification time; for a
    file at a URL, its store's content tag (or the URL itself when no listing gave one); None when it
    cannot be reached."""
    if isinstance(path, RemotePath):
        return (0, path.tag or path.url)
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


__all__ = ["OutputDir", "ItemRecord", "FailureRecord", "PlanEntry", "RunLock", "LockError", "HashCache", "HeaderCache",
           "META", "file_stamp"]
