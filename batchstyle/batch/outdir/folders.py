"""A folder (prefix) on any fsspec store that an output directory on object storage reads and
writes: whole objects, listings with details, and create or replace on a condition, checked then
written (best effort). The stores that make those conditions atomic are
:mod:`batch.outdir.object_stores`, which also picks the folder class for a URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..remote_files import NO_BUCKET, StorageError, _no_bucket, content_tag, filesystem, redact, storage_error


@dataclass(frozen=True)
class StoredObject:
    """One object of a listing: its name relative to the listed folder, size and content tag."""

    name: str
    size: int
    tag: str  # the store's ETag (or MD5, or modification time), "" when it gives none
    folder: bool = False


class RemoteFolder:
    """A folder (prefix) on a remote store: whole-object reads and writes, listings with details.

    Every write is one object written whole: a reader sees the old object or the new, never half.
    ``conditional`` says whether :meth:`create` and :meth:`replace` are atomic on this store (S3,
    Azure and GCS: :mod:`batch.outdir.object_stores`); elsewhere they check, then write: best effort.
    """

    conditional = False

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.shown = redact(self.url)  # what messages say
        self.fs, root = filesystem(self.url)
        self.root = root.rstrip("/")

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def where(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def _fail(self, exc: BaseException, rel: str = "") -> StorageError:
        return storage_error(exc, self.where(rel))

    def _if_there(self, rel: str, call):
        """``call()``'s answer about the object ``rel``; None when there is no such object (a missing
        bucket, like every other problem, is a :class:`StorageError`)."""
        try:
            return call()
        except FileNotFoundError as exc:
            if _no_bucket(exc):  # about the folder, not one object in it
                raise StorageError(self.url, NO_BUCKET) from None
            return None
        except Exception as exc:  # noqa: BLE001 - every store raises its own; one line each
            raise self._fail(exc, rel) from None

    def read(self, rel: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        return self._if_there(rel, lambda: self.fs.cat_file(self.key(rel)))

    def read_many(self, rels: Iterable[str]) -> dict[str, bytes]:
        """Several objects at once (concurrently on asynchronous stores); missing ones are left out."""
        keys = {self.key(rel): rel for rel in rels}
        if not keys:
            return {}
        try:
            found = self.fs.cat(list(keys), on_error="omit")
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from None
        return {keys[k]: v for k, v in found.items() if isinstance(v, bytes)}

    def stat(self, rel: str) -> StoredObject | None:
        info = self._if_there(rel, lambda: self.fs.info(self.key(rel)))
        if info is None:
            return None
        return StoredObject(rel, int(info.get("size") or 0), content_tag(info), info.get("type") == "directory")

    def write(self, rel: str, data: bytes) -> str:
        """Write the object whole; its new content tag."""
        try:
            self.fs.pipe_file(self.key(rel), data)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None
        found = self.stat(rel)
        return found.tag if found else ""

    def create(self, rel: str, data: bytes) -> str | None:
        """Write the object only if there is none: its tag, or None when one exists (best effort here)."""
        if self.stat(rel) is not None:
            return None
        return self.write(rel, data)

    def replace(self, rel: str, data: bytes, tag: str) -> str | None:
        """Write the object only if it is still the one with ``tag``: its new tag, or None (best effort here)."""
        found = self.stat(rel)
        if found is None or found.tag != tag:
            return None
        return self.write(rel, data)

    def delete(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.key(rel))
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None

    def listing(self, rel: str = "") -> dict[str, StoredObject]:
        """Every object under ``rel`` (recursively), by name relative to this folder, in one listing."""
        try:
            found = self.fs.find(self.key(rel), detail=True)
            if not isinstance(found, dict):  # adlfs answers a single file's name as a list
                found = {name: self.fs.info(name) for name in found}
        except FileNotFoundError as exc:
            if _no_bucket(exc):  # about the folder, not one object in it
                raise StorageError(self.url, NO_BUCKET) from None
            return {}
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, rel) from None
        start = len(self.root) + 1
        return {name[start:]: StoredObject(name[start:], int(info.get("size") or 0), content_tag(info))
                for name, info in found.items() if info.get("type") != "directory" and name.startswith(self.root + "/")}

    def abort_uploads(self) -> int:
        """Abort unfinished multipart uploads under this folder (none on stores without them)."""
        return 0


__all__ = ["StoredObject", "RemoteFolder"]
