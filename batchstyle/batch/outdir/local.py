"""A local output directory: finished images, their records, failures, checkpoints, the lock and resume.

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
:mod:`batch.outdir.records`; the hash and header caches are :mod:`batch.outdir.caches`; the lock is
:mod:`batch.outdir.lock`. A file of the wrong shape counts as absent and is noted once in
:attr:`LocalOutputDir.unreadable`.

Other files (a gallery, thumbnails) go through :meth:`LocalOutputDir.write_file`, which writes them the
same safe way here and on object storage. An output directory at a URL (``s3://bucket/prefix``)
is a :class:`remote.RemoteOutputDir`: the same methods (:class:`base.OutputDir`), a lease instead of
the lock.

Every file is written under a temporary name and renamed into place, so a crash never leaves a
half-written file under a final name. A record means a complete image; no record means redo. A
record also holds its image's size, time and hash, so that it never vouches for a file something
else has overwritten since (another item of the same output name, another program).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from batchstyle.engine.files import atomic_write, is_temp_name

from ..outputs import NAME_MAX
from ..remote_files import as_path, file_stamp
from .caches import HeaderCache, _sha256_of
from .common import Shared
from .lock import RunLock
from .records import META, BadRecord, FailureRecord, ItemRecord, PlanItem, _json_bytes, plan_from


class LocalOutputDir(Shared):
    """Reads and writes one output directory on this machine; safe against crashes at any instant."""

    remote = False  # on object storage (RemoteOutputDir): records are listed, not read

    def __init__(self, root: str | os.PathLike):
        self.root = as_path(os.fspath(root))
        self.url = str(self.root)  # what messages show
        self.meta = self.root / META
        self.done_dir = self.meta / "done"
        self.failed_dir = self.meta / "failed"
        self.checkpoint_dir = self.meta / "checkpoints"
        self._by_output: dict[str, set[str]] | None = None
        self.observers: list[Any] = []  # see watch()
        self.headers = HeaderCache(self)

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
        """The most bytes one file name may have here (the file system's limit)."""
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

    def plan(self) -> list[PlanItem]:
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

    def write_plan(self, items: Iterable[PlanItem], info: dict[str, Any]) -> None:
        atomic_write(self.meta / "plan.json", self._plan_bytes(items, info))

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
                if is_temp_name(name):
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

    def lock(self) -> RunLock:
        return RunLock(self.meta / "lock")


__all__ = ["LocalOutputDir"]
