"""Files on this machine: writing one so that its final name only ever holds a complete file, the
temporary names that writing uses (so that a later run recognises what a crash left), what a path
is when it is not a regular file, and the user's cache folder (the weights, decoded clips).

The engine writes its own files this way (images, checkpoints, the weights cache), and the batch's
output directory does too; this module is here, in the engine, so that both use one writer.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["atomic_write", "temp_name", "is_temp_name", "TEMP_PREFIX", "TEMP_SUFFIX", "file_kind", "not_regular",
           "cache_dir", "ENV_CACHE"]

ENV_CACHE = "BATCHSTYLE_CACHE_DIR"

TEMP_PREFIX, TEMP_SUFFIX = ".bs-", ".tmp"  # a temporary file is ".bs-<random>.tmp"


def cache_dir() -> Path:
    """batchstyle's folder in the user's cache: ``$BATCHSTYLE_CACHE_DIR``, else ``batchstyle`` under
    ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batchstyle"


def temp_name() -> str:
    """A new name for a temporary file: hidden, recognisable, and short, so that it fits wherever the
    final name fits."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is that of a temporary file :func:`atomic_write` leaves when it is killed before
    the rename (also the ``.<name>.<random>.tmp`` of earlier versions)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the final name only ever holds a complete file.

    The bytes go to a hidden temporary file in the same directory (:func:`temp_name`: same file
    system, so the rename is atomic), are flushed to disk, and then renamed over ``path``. On any
    failure the temporary file is removed and the exception propagates; an existing file at ``path``
    is left untouched until the rename.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(temp_name())
    # os.open with 0o666 (not mkstemp's 0o600) so the result gets the user's usual permissions.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(final.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; elsewhere directories cannot be opened for this)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# What a path may be other than a regular file; opening a named pipe waits for a writer forever.
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` (symlinks followed) is when it is not a regular file, such as "a named pipe (FIFO)";
    None for a regular file. Looks at it with ``os.stat`` only, never opens it; raises what that raises."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a file")


def not_regular(kind: str) -> str:
    """Why a file of this :func:`file_kind` is not read and what to do, to follow its name in a sentence."""
    todo = "name an image file in it" if kind == "a folder" else "copy the image into a regular file and name that"
    return f"is {kind}, not a regular file; {todo}"
