"""Who runs in a remote output location now: a lease object instead of a lock.

Object stores have no flock and no rename. The run holds ``<prefix>/.batchstyle/lease.json``
(owner, host, pid, since, expiry), created only if absent and renewed every ``ttl / 4`` seconds only
if it is still the object this run last wrote (S3 and Azure: ``If-None-Match: *`` and
``If-Match: <ETag>``; GCS: ``ifGenerationMatch``; see :mod:`batch.outdir.object_stores`).
A second run is refused while the lease is live; a crashed run's lease is taken over once it has
expired (or at once on the same host when its process is gone). A run whose renewal finds someone
else's lease, or that could not renew before its own expiry, has lost it and must stop writing.

On stores without conditional writes the same steps check, then write: best effort (two runs
starting within the same second could both get in).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from ..remote_files import StorageError
from .folders import RemoteFolder
from .lock import LockError

LEASE = ".batchstyle/lease.json"
DEFAULT_TTL = 120.0  # seconds a crashed run's lease keeps others out


class LeaseError(LockError):
    """Another live run holds the output location."""


def _since(holder: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))


def _process_gone(holder: dict[str, Any]) -> bool:
    """The holder ran on this host and its process no longer exists (a killed driver)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OSError):
        return False
    return False


class Lease:
    """The lease of one output location; the interface of :class:`lock.RunLock` (acquire, release,
    holder, held_elsewhere, taken_over) plus :attr:`lost`."""

    def __init__(self, folder: RemoteFolder, ttl: float = DEFAULT_TTL):
        self.folder, self.ttl = folder, ttl
        self.owner = uuid.uuid4().hex
        self.tag: str | None = None
        self.expires = 0.0
        self.taken_over: dict[str, Any] | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------

    def _current(self) -> tuple[dict[str, Any] | None, str | None]:
        found = self.folder.stat(LEASE)
        if found is None:
            return None, None
        data = self.folder.read(LEASE)
        try:
            return (json.loads(data) if data else None), found.tag
        except ValueError:
            return {}, found.tag  # unreadable: nobody's, take it over

    def holder(self) -> dict[str, Any] | None:
        """Who holds (or last held without releasing) the lease; None when it was released."""
        data, _ = self._current()
        return data if data and not data.get("released") else None

    def held_elsewhere(self) -> bool:
        holder = self.holder()
        return bool(holder) and holder.get("owner") != self.owner and not self._stale(holder)

    def _stale(self, holder: dict[str, Any]) -> bool:
        return holder.get("released") or holder.get("expires", 0) < time.time() or _process_gone(holder)

    # -- taking and keeping it ----------------------------------------------------------------------

    def _body(self, released: bool = False) -> bytes:
        self.expires = 0.0 if released else time.time() + self.ttl
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": getattr(self, "_started", time.time()), "expires": self.expires,
                           "ttl": self.ttl, "released": released}).encode()

    def acquire(self) -> "Lease":
        self._started = time.time()
        tag = self.folder.create(LEASE, self._body())
        if tag is None:
            tag = self._take_over()
        self.tag = tag
        self._thread = threading.Thread(target=self._keep, name="batchstyle-lease", daemon=True)
        self._thread.start()
        return self

    def _take_over(self) -> str:
        holder, tag = self._current()
        if holder is None and tag is None:  # released and deleted between our two looks
            tag = self.folder.create(LEASE, self._body())
        elif not holder or self._stale(holder):
            new = self.folder.replace(LEASE, self._body(), tag)
            if new is not None and holder and not holder.get("released"):
                self.taken_over = holder
            tag = new
        else:
            tag = None
        if tag is None:
            holder = self.holder() or {}
            expires = time.strftime("%H:%M:%S", time.localtime(holder.get("expires", 0)))
            raise LeaseError(f"{self.folder.shown} is in use by another batchstyle run (pid {holder.get('pid')} on "
                             f"{holder.get('host')}, since {_since(holder)}). Wait for it to finish or stop it, or "
                             f"use another output location. (If that run crashed, its lease expires at {expires}.)")
        return tag

    def _keep(self) -> None:
        """Renew every ttl/4 seconds until released; note a lost lease for the run to stop on."""
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except StorageError:  # the store is unreachable for now: try again, unless time is up
                pass
            if self.lost is None and time.time() >= self.expires:
                self.lost = (f"the lease on {self.folder.shown} expired before it could be renewed; this run stops so "
                             f"that no other run's images are overwritten. Run the same command again to resume.")
            if self.lost:
                return

    def renew(self) -> None:
        with self._mutex:
            if self.lost or self.tag is None:
                return
            tag = self.folder.replace(LEASE, self._body(), self.tag)
            if tag is None:
                holder = self.holder() or {}
                self.lost = (f"another batchstyle run (pid {holder.get('pid')} on {holder.get('host')}) took over "
                             f"{self.folder.shown}; this run stops.")
            else:
                self.tag = tag

    def valid(self) -> bool:
        """Held, not lost, and not about to expire: writing is safe."""
        return self.tag is not None and not self.lost and time.time() < self.expires - 1.0

    def release(self) -> None:
        """Mark the lease released (only if it is still ours), so that the next run starts at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._mutex:
            if self.tag is not None and not self.lost:
                try:
                    self.folder.replace(LEASE, self._body(released=True), self.tag)
                except StorageError:
                    pass  # it expires by itself
            self.tag = None

    def abandon(self) -> None:
        """Stop renewing without releasing: what a crash leaves (for tests and benchmarks)."""
        self._stop.set()

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["Lease", "LeaseError", "LEASE", "DEFAULT_TTL"]
