"""The output directory: a batch's images and, in ``.batchstyle/``, its records, failures,
checkpoints, plan, caches and lock (docs/output-directory.md says what each file holds).

:func:`open_output_dir` gives the directory for a path or URL: a :class:`LocalOutputDir` on this
machine, or a :class:`RemoteOutputDir` on object storage (``s3://bucket/prefix``). Both offer the
methods of :class:`OutputDir`, the only ones the rest of batchstyle uses.

Modules, one job each: ``base`` (the :class:`OutputDir` and :class:`Lock` protocols), ``local``
and ``remote`` (the two directories), ``common`` (what they do alike), ``records`` (the records and
the check of their shape), ``caches`` (input hashes and headers), ``lock`` (the local lock),
``lease`` (the lease on object storage), ``folders`` and ``object_stores`` (folders on object
storage, with the conditional writes of S3, Azure and GCS).
"""

from __future__ import annotations

import os

from ..remote_files import is_url
from .base import Lock, OutputDir
from .caches import HashCache, HeaderCache
from .lease import DEFAULT_TTL, LeaseError
from .local import LocalOutputDir
from .lock import LockError, RunLock
from .records import META, FailureRecord, ItemRecord, PlanItem
from .remote import RemoteOutputDir


def open_output_dir(target: str | os.PathLike, *, lease_ttl: float = DEFAULT_TTL) -> OutputDir:
    """The output directory at ``target``: a :class:`RemoteOutputDir` for an fsspec URL (its lease
    lasts ``lease_ttl`` seconds unless renewed), else a :class:`LocalOutputDir` (also for ``file://``).
    Nothing is created or read until it is used."""
    if is_url(target):
        return RemoteOutputDir(str(target), lease_ttl=lease_ttl)
    return LocalOutputDir(target)


__all__ = ["open_output_dir", "OutputDir", "Lock", "LocalOutputDir", "RemoteOutputDir", "ItemRecord", "FailureRecord",
           "PlanItem", "RunLock", "LockError", "LeaseError", "HashCache", "HeaderCache", "META"]
