"""The input files of a batch, looked at once each before anything runs: what a folder or glob row
expands to, each image's size from its header, what is wrong with a file, and the warnings a
library raised while reading it (kept as notes on the file, never printed over the display)."""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from batchstyle.engine.files import file_kind, not_regular
from batchstyle.engine.images import MAX_PIXELS, ImageError, image_notes, image_size

from .remote_files import RemotePath, StorageError, as_path, is_url

# Image files a folder or glob row expands to (Pillow reads them all).
INPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")


@dataclass
class InputFile:
    """What the batch knows about one input file."""

    size: tuple[int, int] | None = None  # (width, height) as it loads; None when it cannot be read
    problem: str = ""  # why it cannot be used, worded to follow its name
    notes: tuple[str, ...] = ()  # warnings raised while reading its header


@dataclass
class InputChecker:
    """Looks at each input file once (a style is usually shared by many rows). Files at URLs are
    listed and their headers read in bulk (:meth:`prefetch`), their results cached in ``headers``."""

    max_pixels: int = MAX_PIXELS
    files: dict[Path | RemotePath, InputFile] = field(default_factory=dict)
    headers: Any = None  # an outdir.HeaderCache for remote inputs, or None
    _remote: Any = None

    @property
    def remote(self):
        if self._remote is None:
            from .remote_inputs import RemoteInputs

            self._remote = RemoteInputs(INPUT_EXTENSIONS, self.headers)
        return self._remote

    def check(self, path: Path | RemotePath) -> InputFile:
        if path not in self.files:
            self.files[path] = self._inspect_remote(path) if isinstance(path, RemotePath) else self._inspect(path)
        return self.files[path]

    def resolved(self, path: Path | RemotePath) -> Path | RemotePath:
        """The path as items carry it: a remote file with its content tag (what its id is made of)."""
        if not isinstance(path, RemotePath):
            return path
        try:
            return self.remote.tagged(path)
        except StorageError:  # reported by check()
            return path

    def expand(self, cell: str, base: Path | RemotePath) -> tuple[list, bool, str | None]:
        """What a content cell names (see :func:`expand_content`), local or remote."""
        target = resolve(base, cell)
        if isinstance(target, RemotePath):
            return self.remote.expand(target, cell)
        return expand_content(cell, base)

    def prefetch(self, paths: list) -> None:
        """Read the headers of every remote file among ``paths`` at once (concurrently)."""
        remote = [p for p in paths if isinstance(p, RemotePath)]
        if remote:
            self.remote.prefetch(remote)

    def _inspect(self, path: Path) -> InputFile:
        try:
            kind = file_kind(path)  # a pipe or a device is never opened: reading one may never end
        except (FileNotFoundError, NotADirectoryError):
            return InputFile(problem="is a symbolic link to nothing" if path.is_symlink() else "does not exist")
        except OSError as exc:
            return InputFile(problem=f"cannot be read: {exc.strerror or exc}")
        if kind:
            return InputFile(problem=not_regular(kind))
        try:
            with image_notes() as notes:
                size = image_size(path, name=path.name, max_pixels=sys.maxsize)  # the limit is checked below
        except ImageError as exc:
            return InputFile(problem=_after_name(str(exc), path.name), notes=tuple(notes))
        return self._judged(size, tuple(notes))

    def _inspect_remote(self, path: RemotePath) -> InputFile:
        try:
            info = self.remote.info(path)
        except StorageError as exc:
            return InputFile(problem=f"cannot be read: {exc.problem}")
        if info is None:
            return InputFile(problem="does not exist")
        if info.get("type") == "directory":
            return InputFile(problem=not_regular("a folder"))
        width, height, problem, notes = self.remote.header_of(path)
        if problem:
            return InputFile(problem=_after_name(problem, path.name), notes=tuple(notes))
        return self._judged((width, height), tuple(notes))

    def _judged(self, size: tuple[int, int], notes: tuple[str, ...]) -> InputFile:
        pixels = size[0] * size[1]
        if pixels > self.max_pixels:
            return InputFile(problem=f"is {size[0]}x{size[1]}, {pixels / 1e6:,.0f} megapixels: more than the limit "
                                     f"of {self.max_pixels / 1e6:,.0f} (--max-input-pixels); downscale it, or raise "
                                     f"the limit if you mean it", notes=notes)
        return InputFile(size=size, notes=notes)


def resolve(base: Path | RemotePath, name: str) -> Path | RemotePath:
    """A path named in a manifest cell: a URL as it is, anything else relative to the manifest's folder."""
    if is_url(name) or name.lower().startswith("file://"):
        return as_path(name)
    return base / name


def _after_name(message: str, name: str) -> str:
    """``"a.png: cannot read image: x"`` -> ``"cannot be read: x"``, to follow the file's name in a sentence."""
    text = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
    if text.startswith("cannot read image: "):
        text = "cannot be read: " + text[len("cannot read image: "):]
    return text


def expand_content(cell: str, base: Path) -> tuple[list[Path], bool, str | None]:
    """The content files a cell names: ``(files, expanded, problem)``.

    A file is itself; a folder is its images (sorted by name, hidden files left out) and a glob the
    images it matches (sorted), each real file once however many links lead to it. ``expanded`` tells
    the two apart: a file found by expanding that cannot be read fails as an image, while a file named
    in a cell is probably a typo.
    """
    path = resolve(base, cell)
    kinds = ", ".join(INPUT_EXTENSIONS)
    if glob.has_magic(cell):
        found = _images(_matching(*_pattern(base, path), set()))
        return found, True, (None if found else f"content pattern {cell!r} matches no image ({kinds})")
    if path.is_dir():
        found = _images(_entries(path, "*"))
        return found, True, (None if found else f"content folder {cell!r} holds no image ({kinds})")
    return [path], False, None


def _pattern(base: Path, target: Path) -> tuple[Path, tuple[str, ...]]:
    """Where matching a glob starts (the manifest's folder and the pattern's leading parts without
    wildcards, taken as they are) and the parts left to match."""
    parts = target.parts
    fixed = len(base.parts) if parts[:len(base.parts)] == base.parts else 0
    while fixed < len(parts) and not glob.has_magic(parts[fixed]):
        fixed += 1
    return Path(*parts[:fixed]), parts[fixed:]


def _matching(folder: Path, parts: tuple[str, ...], entered: set) -> Iterator[Path]:
    """The paths under ``folder`` that the pattern ``parts`` matches, as ``glob.glob(recursive=True)``
    finds them, except that ``**`` enters each real folder once for each ``**`` of the pattern: a
    symbolic link back to a folder above is not followed round and round (a link elsewhere is)."""
    if not parts:
        if os.path.lexists(folder):  # a link to nothing too: it fails as an image, saying so
            yield folder
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        try:
            st = os.stat(folder)
        except OSError:
            return
        if (len(parts), st.st_dev, st.st_ino) in entered:
            return
        entered.add((len(parts), st.st_dev, st.st_ino))
        yield from _matching(folder, rest or ("*",), entered)
        for sub in _entries(folder, "*"):
            if sub.is_dir():
                yield from _matching(sub, parts, entered)
    elif glob.has_magic(head):
        for entry in _entries(folder, head):
            yield from _matching(entry, rest, entered)
    else:
        yield from _matching(folder / head, rest, entered)


def _entries(folder: Path, pattern: str) -> list[Path]:
    """What in ``folder`` matches one part of a glob, sorted; hidden names only for a pattern starting with '.'."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    if not pattern.startswith("."):
        names = [name for name in names if not name.startswith(".")]
    return [folder / name for name in fnmatch.filter(names, pattern)]


def _images(paths: Iterable[Path]) -> list[Path]:
    """The paths named like images, sorted, each real file once (the first path that reaches it). Folders
    are left out; anything else is kept, so that a named pipe or a device fails as an image, saying what it is."""
    found, seen = [], set()
    for path in paths:
        if path.suffix.lower() not in INPUT_EXTENSIONS:
            continue
        try:
            st = os.stat(path)
        except OSError:  # a link to nothing: it fails, saying so
            found.append(path)
            continue
        if not stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            found.append(path)
    return sorted(found)


__all__ = ["InputChecker", "InputFile", "expand_content", "resolve", "INPUT_EXTENSIONS"]
