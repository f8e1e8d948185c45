"""A full disk, for the tests of what a batch does when nothing more can be written."""

from __future__ import annotations

import os


def fill(disk, leave: int):
    """Fill ``disk`` up, then give back ``leave`` bytes; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:  # full
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))
    return filler
