"""Input images at URLs: what a file, folder or glob names (from listings: one per folder, with
sizes and content tags), and each image's header from a small range read, done concurrently for
all files at once and cached by content tag in the output directory, so that a resumed run plans
from listings alone and no image is read whole before it is dispatched."""

from __future__ import annotations

import glob
import posixpath
import sys
from typing import Any, Iterable

from batchstyle.engine.images import ImageError, image_notes, image_size

from .remote_files import RemotePath, _no_bucket, content_tag, filesystem, storage_error

HEADER_BYTES = 64 * 1024  # enough for the header of nearly every image; the whole file otherwise
READERS = 16  # concurrent header reads: batches of 4 x this


class RemoteInputs:
    """Listings and headers of the remote input files of one manifest, each fetched once."""

    def __init__(self, inputs_extensions: tuple[str, ...], headers: Any = None):
        self.extensions = inputs_extensions
        self.headers = headers  # an outdir.HeaderCache, or None
        self.listings: dict[str, dict[str, dict]] = {}  # folder (fs path) -> {fs path: info}
        self.header: dict[str, list] = {}  # content tag -> [width, height, problem, notes]
        self.infos: dict[str, dict | None] = {}  # url -> its listing details

    # -- listings ----------------------------------------------------------------------------------

    def _listing(self, fs, folder: str, url: str) -> dict[str, dict]:
        if folder not in self.listings:
            try:
                found = fs.ls(folder, detail=True)
            except FileNotFoundError as exc:
                if _no_bucket(exc) or "bucket" in str(exc).lower():
                    raise storage_error(exc, url) from None
                found = []
            except Exception as exc:  # noqa: BLE001
                raise storage_error(exc, url) from None
            self.listings[folder] = {info["name"].rstrip("/"): info for info in found}
        return self.listings[folder]

    def info(self, path: RemotePath) -> dict | None:
        """The listing details of ``path`` (from its folder's listing; HTTP: one HEAD request), or None."""
        if path.url not in self.infos:
            self.infos[path.url] = self._info(path)
        return self.infos[path.url]

    def _info(self, path: RemotePath) -> dict | None:
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
            key = _key(path)
            if key not in self.header and key not in todo:
                cached = self.headers.get(path.tag) if self.headers is not None else None
                if cached is not None:
                    self.header[key] = cached
                else:
                    todo[key] = path
        if not todo:
            return
        for key, (result, lasting) in zip(todo, self._read_headers(list(todo.values()))):
            self.header[key] = result
            if self.headers is not None and lasting:  # not a network hiccup: remember it (by content tag only)
                self.headers.put(todo[key].tag, result)

    def header_of(self, path: RemotePath) -> list:
        """``[width, height, problem, notes]`` of a file (problem "" when its header was read)."""
        path = self.tagged(path)
        if _key(path) not in self.header:
            self.prefetch([path])
        return self.header[_key(path)]

    def _read_headers(self, paths: list[RemotePath]) -> list[tuple[list, bool]]:
        """The first bytes of every file in concurrent range reads (one batch per protocol); a file
        whose header goes on beyond them is read whole."""
        results: list[tuple[list, bool] | None] = [None] * len(paths)
        by_protocol: dict[str, list[int]] = {}
        for n, path in enumerate(paths):
            by_protocol.setdefault(path.url.split("://", 1)[0], []).append(n)
        for numbers in by_protocol.values():
            fs, _ = filesystem(paths[numbers[0]].url)
            keys = [filesystem(paths[n].url)[1] for n in numbers]
            try:
                chunks = fs.cat_ranges(keys, [0] * len(keys), [HEADER_BYTES] * len(keys), on_error="return",
                                       batch_size=READERS * 4)
            except Exception as exc:  # noqa: BLE001 - every store raises its own
                chunks = [exc] * len(keys)
            for n, chunk in zip(numbers, chunks):
                results[n] = self._header_from(paths[n], chunk)
        return results

    def _header_from(self, path: RemotePath, chunk: Any) -> tuple[list, bool]:
        """``([width, height, problem, notes], lasting)``: lasting unless the store could not be read."""
        try:
            if isinstance(chunk, BaseException):
                raise chunk
            try:
                return _size_of(chunk, path.name), True
            except ImageError:
                if len(chunk) < HEADER_BYTES:
                    raise
            return _size_of(path.read_bytes(), path.name), True  # the header goes on beyond the first bytes
        except ImageError as exc:
            return [0, 0, str(exc), []], True
        except Exception as exc:  # noqa: BLE001
            return [0, 0, f"cannot be read: {storage_error(exc, path.url).problem}", []], False


def _key(path: RemotePath) -> str:
    """What a header is known by: the content tag, or the URL where the store gives none."""
    return path.tag or f"url:{path.url}"


def _size_of(data: bytes, name: str) -> list:
    with image_notes() as notes:
        size = image_size(data, name=name, max_pixels=sys.maxsize)  # the limit is checked by the caller
    return [size[0], size[1], "", notes]


__all__ = ["RemoteInputs", "HEADER_BYTES"]
