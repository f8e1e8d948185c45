"""Who runs in a local output directory now: ``.batchstyle/lock``, held with ``flock``, which the
kernel releases when the process holding it dies. On object storage the lease of
:mod:`batch.outdir.lease` stands in for it, with the same methods."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .records import _json_object

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class LockError(RuntimeError):
    """Another live run holds the output directory."""


class RunLock:
    """An exclusive lock on an output directory, released by the kernel when its process dies.

    The lock file holds who took it, for the message shown to a second run; a file whose lock is no
    longer held was left by a crashed run and is taken over.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.taken_over: dict[str, Any] | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = self.holder()
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}"
                   if holder else "another process")
            raise LockError(f"{self.path.parent.parent} is in use by another batchstyle run ({who}). "
                            f"Wait for it to finish or stop it, or use another output directory.") from None
        previous = self.holder_from_fd(fd)
        if previous:
            self.taken_over = previous
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            os.fsync(fd)
        except OSError as exc:  # a full disk: the lock holds all the same, only who holds it goes unsaid
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                os.close(fd)
                raise
        self._fd = fd
        return self

    @staticmethod
    def holder_from_fd(fd: int) -> dict[str, Any] | None:
        try:
            return _json_object(os.pread(fd, 4096, 0))
        except OSError:
            return None

    def held_elsewhere(self) -> bool:
        """Whether a live process holds this lock (probing it without taking it)."""
        if fcntl is None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        try:
            return _json_object(self.path.read_bytes())
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody to report as crashed
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["RunLock", "LockError"]
