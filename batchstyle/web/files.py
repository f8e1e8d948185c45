"""Which file of a served directory a request path names, if any: strict containment, no listings.

A request path is decoded once (``%2e%2e`` is ``..``) and then refused outright if it could mean
anything but a plain relative file name: ``.`` or ``..`` segments, empty segments, backslashes, NUL
or other control characters, a drive letter, a path that resolves (through symlinks) outside the
root. Dot-files are private (temporary files, the run's records and lock): of ``.batchstyle/`` only
the gallery's data and thumbnails are served. Standard library only.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from urllib.parse import unquote

# What a static page may load from the run's own folder (see batch/gallery.py and batch/thumbs.py).
PUBLIC_DOT_FOLDERS = (".batchstyle/gallery/", ".batchstyle/thumbs/")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".webp": "image/webp", ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".txt": "text/plain",
}


class Refused(Exception):
    """The request path names no servable file; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def relative_name(url_path: str) -> str:
    """The decoded, checked relative file name of a request path (``/`` is ``index.html``)."""
    if not url_path.startswith("/"):
        raise Refused(400, "the path must start with /")
    if "\\" in url_path or "\x00" in url_path:
        raise Refused(400, "backslashes and NUL are not allowed in paths")
    try:
        name = unquote(url_path[1:], errors="strict")
    except UnicodeDecodeError:
        raise Refused(400, "the path is not valid UTF-8") from None
    if name == "":
        return "index.html"
    if any(ord(ch) < 32 or ch == "\x7f" or ch == "\\" for ch in name):
        raise Refused(400, "control characters and backslashes are not allowed in paths")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise Refused(404, "not a file of this folder")
    if ":" in parts[0]:  # a drive letter
        raise Refused(404, "not a file of this folder")
    hidden = [part for part in parts if part.startswith(".")]
    if hidden and not (hidden == [".batchstyle"] and name.startswith(PUBLIC_DOT_FOLDERS)):
        raise Refused(404, "not a file of this folder")
    return name


def contained_file(root: Path, url_path: str) -> Path:
    """The regular file under ``root`` that ``url_path`` names, with every symlink resolved inside it."""
    name = relative_name(url_path)
    base = root.resolve()
    try:
        target = (base / name).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        raise Refused(404, "no such file") from None
    if not target.is_relative_to(base) or target == base:
        raise Refused(404, "not a file of this folder")
    if not target.is_file():
        raise Refused(404, "not a file")
    return target


def content_type(path: Path | str) -> str:
    suffix = os.path.splitext(str(path))[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


__all__ = ["Refused", "relative_name", "contained_file", "content_type", "PUBLIC_DOT_FOLDERS"]
