"""The caches an output directory keeps so that a rerun reads less: the hashes of local input files
(``.batchstyle/hashes.json``) and what remote inputs' headers said (``.batchstyle/headers.json``).
Anything in them that is not of their shape is no cache: the inputs are hashed or read again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from batchstyle.engine.files import atomic_write

from ..remote_files import RemotePath, StorageError
from .records import META, _json_object

if TYPE_CHECKING:
    from .base import OutputDir


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """SHA-256 of input files, remembered by (path, size, mtime) so a rerun does not reread them.

    A remote input's identity is its store's content tag (ETag and size, from the listing that
    found it): no bytes are read for it, unless the store gives no tag.
    """

    def __init__(self, path: Path | None, out: "OutputDir | None" = None, rel: str = ""):
        self.path, self.out, self.rel = path, out, rel
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            data = path.read_bytes() if path is not None else out.read_file(rel) if out is not None else None
        except OSError:
            data = None
        self.entries = _json_object(data) or {}  # anything else is no cache: inputs are hashed again

    @classmethod
    def in_output(cls, out: "OutputDir") -> "HashCache":
        return cls(None, out, f"{META}/hashes.json")

    def digest(self, file: Path | RemotePath) -> str:
        if isinstance(file, RemotePath):
            return file.tag or hashlib.sha256(file.read_bytes()).hexdigest()
        key = str(file.resolve())
        st = file.stat()
        cached = self.entries.get(key)
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [st.st_size, st.st_mtime_ns]:
            return cached[2]
        digest = _sha256_of(file)
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        data = json.dumps(self.entries).encode()
        if self.path is not None:
            atomic_write(self.path, data)
        elif self.out is not None:
            self.out.write_file(self.rel, data)
        self.changed = False


class HeaderCache:
    """What the headers of remote input images said (size, problem, notes), by content tag, kept in
    the output directory so that a resumed run plans from listings alone."""

    REL = f"{META}/headers.json"

    def __init__(self, out: "OutputDir"):
        self.out = out
        self._entries: dict[str, list] | None = None
        self.changed = False

    @property
    def entries(self) -> dict[str, list]:
        if self._entries is None:
            try:
                self._entries = _json_object(self.out.read_file(self.REL)) or {}
            except StorageError as exc:  # said of the output location, not of a file inside it
                raise StorageError(self.out.url, exc.problem) from None
        return self._entries

    def get(self, tag: str) -> list | None:
        value = self.entries.get(tag) if tag else None
        return value if isinstance(value, list) else None

    def put(self, tag: str, value: list) -> None:
        if tag:
            self.entries[tag] = value
            self.changed = True

    def save(self) -> None:
        if self.changed:
            self.out.write_file(self.REL, json.dumps(self.entries).encode())
            self.changed = False


__all__ = ["HashCache", "HeaderCache"]
