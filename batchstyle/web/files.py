"""Which file of a served folder a request names, if any: an allow-list, strict containment, no listings.

A request path is decoded once (``%2e%2e`` is ``..``) and then refused outright if it could mean
anything but a plain relative file name: ``.`` or ``..`` segments, empty segments, backslashes, NUL
or other control characters, a drive letter. Dot-files are private (temporary files, the run's
records and lock): of ``.batchstyle/`` only the gallery's data and thumbnails may be named at all.

What remains is served only if the folder's owner allows it: ``allow(name)`` gives the content type
of a file that may be served, ``None`` for every other one (see the batch dashboard). The file is
judged where it really is, not by how the request spells it: its path, every symlink resolved, must
stay inside the folder and must itself pass the same checks and the same allow-list, so a symlink
``alias.png -> .batchstyle/plan.json`` is refused whatever it is called. Only regular files are
opened, never a FIFO or a device. Content types come from the allow-lists below, never from a guess.
Every refusal is a 404, whatever the reason; a name outside the allow-list is refused before the disk
is looked at. Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import unquote

from .contract import DATA_FOLDER, THUMBS_FOLDER

# What a static page may load from the run's own folder (see gallery.py and thumbs.py).
PUBLIC_DOT_FOLDERS = (DATA_FOLDER, THUMBS_FOLDER)

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff"}
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}  # what a browser plays (a GIF is an image)
PAGE_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
              ".css": "text/css; charset=utf-8"}

Allow = Callable[[str], "str | None"]  # a checked relative name -> its content type, or None: not served


class Refused(Exception):
    """The request path names no servable file; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def relative_name(url_path: str) -> str:
    """The decoded, checked relative file name of a request path (``/`` is ``index.html``)."""
    if not url_path.startswith("/"):
        raise Refused(404, "the path must start with /")
    if "\\" in url_path or "\x00" in url_path:
        raise Refused(404, "backslashes and NUL are not allowed in paths")
    try:
        name = unquote(url_path[1:], errors="strict")
    except UnicodeDecodeError:
        raise Refused(404, "the path is not valid UTF-8") from None
    if name == "":
        return "index.html"
    if any(ord(ch) < 32 or ch == "\x7f" or ch == "\\" for ch in name):
        raise Refused(404, "control characters and backslashes are not allowed in paths")
    _check_parts(name)
    return name


def _check_parts(name: str) -> None:
    """Refuse a ``/``-separated relative name that is not plain, or names a private dot-file."""
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise Refused(404, "not a file of this folder")
    if ":" in parts[0]:  # a drive letter
        raise Refused(404, "not a file of this folder")
    hidden = [part for part in parts if part.startswith(".")]
    if hidden and not (hidden == [".batchstyle"] and name.startswith(PUBLIC_DOT_FOLDERS)):
        raise Refused(404, "not a file of this folder")


def open_served(root: Path, url_path: str, allow: Allow) -> tuple[BinaryIO, str]:
    """The open file of ``root`` that ``url_path`` names, and its content type, if ``allow`` lets
    both the requested name and the file's real path (every symlink resolved) be served."""
    name = relative_name(url_path)
    kind = allow(name)
    if kind is None:
        raise Refused(404, "not a file of this folder")
    real = _real_path(root, name)
    if real != name and allow(real) is None:
        raise Refused(404, "not a file of this folder")
    try:  # not through a symlink put there since; never blocking on a FIFO
        fd = os.open(root.resolve() / real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError:
        raise Refused(404, "no such file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(404, "not a file")
    return os.fdopen(fd, "rb"), kind


def _real_path(root: Path, name: str) -> str:
    """Where ``name`` really is under ``root``, as a checked relative name (:class:`Refused` if outside)."""
    base = root.resolve()
    try:
        target = (base / name).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        raise Refused(404, "no such file") from None
    if not target.is_relative_to(base) or target == base:
        raise Refused(404, "not a file of this folder")
    real = target.relative_to(base).as_posix()
    _check_parts(real)
    return real


def content_type(name: Path | str) -> str | None:
    """The content type of a page's file or an image by its extension; None for any other kind."""
    suffix = os.path.splitext(str(name))[1].lower()
    return PAGE_TYPES.get(suffix) or IMAGE_TYPES.get(suffix)


def image_type(name: str) -> str | None:
    """The content type of an image by its extension; None for anything else."""
    return IMAGE_TYPES.get(os.path.splitext(name)[1].lower())


def media_type(name: str) -> str | None:
    """The content type of an image or a video (a clip) by its extension; None for anything else."""
    suffix = os.path.splitext(name)[1].lower()
    return IMAGE_TYPES.get(suffix) or VIDEO_TYPES.get(suffix)


__all__ = ["Refused", "Allow", "relative_name", "open_served", "content_type", "image_type", "media_type",
           "PUBLIC_DOT_FOLDERS", "IMAGE_TYPES", "VIDEO_TYPES", "PAGE_TYPES"]
