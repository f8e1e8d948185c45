"""Input images at URLs: what a file, folder or glob names (from listings: one per folder, with
sizes and content tags), and each image's header from a small range read, done concurrently for
all files at once and cached by content tag in the output directory, so that a resumed run plans
from listings alone and no image is read whole before it is dispatched."""

from __future__ import annotations

import glob
import posixpath
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from batchstyle.engine.images import ImageError, image_notes, image_size

from .storage import RemotePath, content_tag, filesystem, storage_error

HEADER_BYTES = 64 * 1024  # enough for the header of nearly every image; the whole file otherwise
READERS = 16  # concurrent header reads


class RemoteInputs:
    """Listings and headers of the remote input files of one manifest, each fetched once."""

    def __init__(self, inputs_extensions: tuple[str, ...], headers: Any = None):
        self.extensions = inputs_extensions
        self.headers = headers  # a store.HeaderCache, or None
        self.listings: dict[str, dict[str, dict]] = {}  # folder (fs path) -> {fs path: info}
        self.header: dict[str, list] = {}  # content tag -> [width, height, problem, notes]

    # -- listings ----------------------------------------------------------------------------------

    def _listing(self, fs, folder: str, url: str) -> dict[str, dict]:
        if folder not in self.listings:
            try:
                found = fs.ls(folder, detail=True)
            except FileNotFoundError as exc:
                if "bucket" in str(exc).lower():
                    raise storage_error(exc, url) from None
                found = []
            except Exception as exc:  # noqa: BLE001
                raise storage_error(exc, url) from None
            self.listings[folder] = {info["name"].rstrip("/"): info for info in found}
        return self.listings[folder]

    def info(self, path: RemotePath) -> dict | None:
        """The listing details of ``path`` (from its folder's listing; HTTP: one HEAD request), or None."""
        fs, key = filesystem(path.url)
        if path.url.split("://", 1)[0].lower() in ("http", "https"):  # no listings: ask for the file itself
            try:
                return fs.info(key)
            except FileNotFoundError:
                return None
            except Exception as exc:  # noqa: BLE001
                raise storage_error(exc, path.url) from None
        key = key.rstrip("/")
        return self._listing(fs, posixpath.dirname(key), path.url).get(key)

    def tagged(self, path: RemotePath) -> RemotePath:
        """``path`` with its content tag (ETag and size) from the listing."""
        if path.tag:
            return path
        info = self.info(path)
        return RemotePath(path.url, content_tag(info)) if info else path

    def expand(self, target: RemotePath, cell: str) -> tuple[list[RemotePath], bool, str | None]:
        """Like :func:`inputs.expand_content`, on remote storage: ``(files, expanded, problem)``."""
        kinds = ", ".join(self.extensions)
        fs, key = filesystem(target.url)
        if glob.has_magic(key):
            try:
                found = fs.glob(key, detail=True)
            except Exception as exc:  # noqa: BLE001
                raise storage_error(exc, target.url) from None
            files = self._images(fs, target, found.values())
            return files, True, (None if files else f"content pattern {cell!r} matches no image ({kinds})")
        info = self.info(target)
        if (info and info.get("type") == "directory") or (not info and cell.endswith("/")):
            listing = self._listing(fs, key.rstrip("/"), target.url)
            files = self._images(fs, target, [i for i in listing.values() if not
                                              posixpath.basename(i["name"]).startswith(".")])
            return files, True, (None if files else f"content folder {cell!r} holds no image ({kinds})")
        return [self.tagged(target)], False, None

    def _images(self, fs, target: RemotePath, infos: Iterable[dict]) -> list[RemotePath]:
        scheme = target.url.split("://", 1)[0]
        found = [RemotePath(f"{scheme}://{i['name']}", content_tag(i)) for i in infos
                 if i.get("type") != "directory" and posixpath.splitext(i["name"])[1].lower() in self.extensions]
        return sorted(found)

    # -- headers -----------------------------------------------------------------------------------

    def prefetch(self, paths: Iterable[RemotePath]) -> None:
        """Read the headers of all these files at once (those not known by their tag already)."""
        todo = {}
        for path in paths:
            path = self.tagged(path)
            if path.tag and path.tag not in self.header:
                cached = self.headers.get(path.tag) if self.headers is not None else None
                if cached is not None:
                    self.header[path.tag] = cached
                else:
                    todo[path.tag] = path
        if todo:
            with ThreadPoolExecutor(READERS) as pool:
                for tag, (result, lasting) in zip(todo, pool.map(self._read_header, todo.values())):
                    self.header[tag] = result
                    if self.headers is not None and lasting:  # not a network hiccup: remember it
                        self.headers.put(tag, result)

    def header_of(self, path: RemotePath) -> list:
        """``[width, height, problem, notes]`` of a file (problem "" when its header was read)."""
        path = self.tagged(path)
        if not path.tag:
            return [0, 0, "does not exist", []]
        if path.tag not in self.header:
            self.prefetch([path])
        return self.header[path.tag]

    @staticmethod
    def _read_header(path: RemotePath) -> tuple[list, bool]:
        """``([width, height, problem, notes], lasting)``: lasting unless the store could not be read."""
        try:
            fs, key = filesystem(path.url)
            data = fs.cat_file(key, start=0, end=HEADER_BYTES)
            try:
                return _size_of(data, path.name), True
            except ImageError:
                if len(data) < HEADER_BYTES:
                    raise
            return _size_of(fs.cat_file(key), path.name), True  # the header goes on beyond the first bytes
        except ImageError as exc:
            return [0, 0, str(exc), []], True
        except Exception as exc:  # noqa: BLE001 - every store raises its own
            return [0, 0, f"cannot be read: {storage_error(exc, path.url).problem}", []], False


def _size_of(data: bytes, name: str) -> list:
    with image_notes() as notes:
        size = image_size(data, name=name, max_pixels=sys.maxsize)  # the limit is checked by the caller
    return [size[0], size[1], "", notes]


__all__ = ["RemoteInputs", "HEADER_BYTES"]
