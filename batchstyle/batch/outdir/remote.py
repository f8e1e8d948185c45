"""An output directory on object storage (``s3://bucket/prefix``, ``gs://``, ``az://``...): the same
records, failures, checkpoints and plan as a local one, designed for what object storage offers.

Layout (``PREFIX`` is the URL given as the output directory)::

    PREFIX/<outputs>                                 the images
    PREFIX/.batchstyle/done/<id>.<fingerprint>.json  one record per finished image
    PREFIX/.batchstyle/failed/<id>.json              the last failure of an item that is not done
    PREFIX/.batchstyle/checkpoints/<id>.ckpt         engine state after the last finished scale
    PREFIX/.batchstyle/plan.json, hashes.json, headers.json
    PREFIX/.batchstyle/lease.json                    who runs here now (see :mod:`batch.outdir.lease`)

There is no rename: every object is written whole in one PUT (S3: every image below 5 GiB), so a
reader sees an object complete or not at all, and a crash leaves no half-written file under a final
name. The image is written first, then its record, so a record means a complete image. The
record's name carries a fingerprint of the content tag (ETag) the image's PUT returned: one listing
of the prefix tells which records still describe their file, without reading any record, and a
record never vouches for a file that something else has overwritten since.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import asdict
from typing import Any, Iterable

from ..remote_files import RemotePath, StorageError, fingerprint
from .caches import HeaderCache
from .common import Shared
from .folders import StoredObject
from .lease import DEFAULT_TTL, Lease
from .object_stores import remote_folder
from .records import META, BadRecord, FailureRecord, ItemRecord, PlanItem, _json_bytes, plan_from

DONE, FAILED, CHECKPOINTS = f"{META}/done/", f"{META}/failed/", f"{META}/checkpoints/"


class RemoteOutputDir(Shared):
    """An output directory at an fsspec URL. The driver alone reads and writes it."""

    remote = True

    def __init__(self, root: str, lease_ttl: float = DEFAULT_TTL):
        self.folder = remote_folder(str(root))
        self.root = RemotePath(self.folder.url)
        self.url = str(self.root)
        self.meta = self.root / META
        self.done_dir, self.failed_dir, self.checkpoint_dir = (self.meta / "done", self.meta / "failed",
                                                               self.meta / "checkpoints")
        self.lease_ttl = lease_ttl
        self._lease: Lease | None = None
        self._index: dict[str, StoredObject] | None = None  # the prefix's objects, from one listing, kept up to date
        self._fingerprints: dict[str, set[str]] = {}  # id -> fingerprints of its records, from the same
        self.headers = HeaderCache(self)
        self.observers: list[Any] = []  # see watch()
        self._mutex = threading.RLock()  # the gallery's thread writes here too

    # -- the listing -------------------------------------------------------------------------------

    def _scan(self) -> dict[str, StoredObject]:
        with self._mutex:
            if self._index is None:
                self._index = self.folder.listing()
                self._fingerprints = {}
                for rel in self._index:
                    self._note(rel, True)
            return self._index

    def _note(self, rel: str, present: bool) -> None:
        """Keep the id -> record fingerprints index in step with the listing."""
        if rel.startswith(DONE) and rel.endswith(".json"):
            item_id, _, fp = rel[len(DONE):-len(".json")].partition(".")
            fps = self._fingerprints.setdefault(item_id, set())
            fps.add(fp) if present else fps.discard(fp)

    def create(self) -> None:
        """Nothing to create on object storage; a missing bucket or no access is said here, once."""
        self.folder.listing(f"{META}/lease.json")
        self._index = None  # plan from a fresh listing

    def exists(self) -> bool:
        return any(rel.startswith(META + "/") for rel in self._scan())

    def _record_fingerprints(self) -> dict[str, set[str]]:
        """id -> fingerprints of its records (normally one)."""
        self._scan()
        return {item_id: fps for item_id, fps in self._fingerprints.items() if fps}

    # -- reading -----------------------------------------------------------------------------------

    def _read_json(self, rels: Iterable[str], cls) -> dict[str, Any]:
        out = {}
        for rel, data in sorted(self.folder.read_many(rels).items()):
            record = self._record_of(f"{self.url}/{rel}", data, cls)  # none: absent, the item is redone
            if record is not None:
                out[record.id] = record
        return out

    def records(self) -> dict[str, ItemRecord]:
        """Every record (read concurrently); where an id has several, the one describing its file."""
        by_id = self._read_json([rel for rel in self._scan() if rel.startswith(DONE)], ItemRecord)
        current = self._output_fingerprints()
        for item_id, fps in self._record_fingerprints().items():
            record = by_id.get(item_id)
            if record is not None and len(fps) > 1 and fingerprint(record.output_tag) != current.get(record.output):
                match = [fp for fp in fps if fp == current.get(record.output)]
                if match:
                    by_id.update(self._read_json([f"{DONE}{item_id}.{match[0]}.json"], ItemRecord))
        return by_id

    def failures(self) -> dict[str, FailureRecord]:
        return self._read_json([rel for rel in self._scan() if rel.startswith(FAILED)], FailureRecord)

    def _output_fingerprints(self) -> dict[str, str]:
        return {rel: fingerprint(e.tag) for rel, e in self._scan().items() if not rel.startswith(META + "/")}

    def done_ids(self, records: dict[str, ItemRecord] | None = None, outputs: dict[str, str] | None = None) -> set[str]:
        """Ids with a record whose fingerprint is that of the file now at its output (from one listing)."""
        current = self._output_fingerprints()
        anywhere = set(current.values())
        done = set()
        for item_id, fps in self._record_fingerprints().items():
            output = (outputs or {}).get(item_id) or (records[item_id].output if records and item_id in records
                                                      else None)
            if (current.get(output) in fps) if output is not None else bool(fps & anywhere):
                done.add(item_id)
        return done

    def plan(self) -> list[PlanItem]:
        try:
            return plan_from(self.folder.read(f"{META}/plan.json") or b"{}")
        except BadRecord as exc:
            self.unreadable.setdefault(f"{self.url}/{META}/plan.json", str(exc))
            return []

    def checkpoint(self, item_id: str) -> bytes | None:
        rel = f"{CHECKPOINTS}{item_id}.ckpt"
        if self._index is not None and rel not in self._index:  # known absent: no request
            return None
        return self.folder.read(rel)

    def read_file(self, rel: str) -> bytes | None:
        return self.folder.read(rel)

    def file_names(self, rel: str) -> set[str]:
        prefix = rel.rstrip("/") + "/"
        return {key[len(prefix):] for key in list(self._scan()) if key.startswith(prefix) and "/" not in key[len(prefix):]}

    def stamp(self, rel: str) -> tuple | None:
        found = self._scan().get(rel)
        return None if found is None else (found.size, found.tag)

    @property
    def name(self) -> str:
        return self.root.name

    def name_max(self) -> int | None:
        """No limit on object storage: a key is a whole path."""
        return None

    # -- writing -----------------------------------------------------------------------------------

    def _guard(self) -> None:
        """Refuse to write once this run's lease is lost or expired: another run may own the prefix."""
        lease = self._lease
        if lease is not None and lease.tag is not None and not lease.valid():
            raise StorageError(self.folder.shown, lease.lost or "this run's lease has expired; it writes no more")

    def _put(self, rel: str, data: bytes) -> str:
        self._guard()
        tag = self.folder.write(rel, data)
        with self._mutex:
            if self._index is not None:
                self._index[rel] = StoredObject(rel, len(data), tag)
                self._note(rel, True)
        return tag

    def _delete(self, rel: str) -> None:
        if self._index is None or rel in self._index:
            self.folder.delete(rel)
            with self._mutex:
                if self._index is not None:
                    self._index.pop(rel, None)
                    self._note(rel, False)

    def write_file(self, rel: str, data: bytes) -> None:
        self._put(rel, data)

    def write_plan(self, items: Iterable[PlanItem], info: dict[str, Any]) -> None:
        self._put(f"{META}/plan.json", self._plan_bytes(items, info))

    def write_result(self, record: ItemRecord, image: bytes) -> None:
        """The image (one PUT), then its record, named by the image's fingerprint; then old records of
        this item, its failure and its checkpoint go."""
        self._scan()
        old = set(self._fingerprints.get(record.id, ()))
        record.output_tag = self._put(record.output, image)
        record.output_bytes, record.output_mtime_ns = len(image), time.time_ns()
        record.output_sha256 = hashlib.sha256(image).hexdigest()
        fp = fingerprint(record.output_tag)
        self._put(f"{DONE}{record.id}.{fp}.json", _json_bytes(asdict(record)))
        for stale in old - {fp}:
            self._delete(f"{DONE}{record.id}.{stale}.json")
        self._delete(f"{FAILED}{record.id}.json")
        self._delete(f"{CHECKPOINTS}{record.id}.ckpt")
        self._notify("on_result", record, image)

    def write_failure(self, failure: FailureRecord) -> None:
        self._put(f"{FAILED}{failure.id}.json", _json_bytes(asdict(failure)))
        self._notify("on_failure", failure)

    def write_checkpoint(self, item_id: str, data: bytes) -> None:
        self._put(f"{CHECKPOINTS}{item_id}.ckpt", data)

    def remove_temp_files(self) -> int:
        """A crashed run leaves no temporary objects (no renames); abort its unfinished multipart uploads."""
        return self.folder.abort_uploads()

    def unusable(self) -> str | None:
        if self.lost():
            return self.lost()
        try:
            self.folder.listing(f"{META}/lease.json")
        except StorageError as exc:
            return f"the output location cannot be used any more: {exc}"
        return None

    # -- who runs here -----------------------------------------------------------------------------

    def lock(self) -> Lease:
        self._lease = Lease(self.folder, self.lease_ttl)
        return self._lease

    def lost(self) -> str | None:
        return self._lease.lost if self._lease is not None else None


__all__ = ["RemoteOutputDir"]
