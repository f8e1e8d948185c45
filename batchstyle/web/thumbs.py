"""Thumbnails for the gallery: small JPEGs in ``.batchstyle/thumbs/``, named by the hash of the image's bytes.

A style shared by 10,000 rows has one thumbnail. ``index.json`` there remembers, per file, its
stamp (:func:`batch.remote_files.file_stamp`: size and modification time, or a remote store's content
tag), hash and pixel size, so that a rerun neither rereads nor decodes unchanged files;
a file that cannot be reached any more (a relative path seen from elsewhere) keeps its last
thumbnail. Only the driver makes thumbnails: it reads the inputs and writes the outputs anyway.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from batchstyle.engine.images import load_image

THUMB_SIDE = 256  # longest side in pixels
THUMB_QUALITY = 82
MAX_SOURCE_PIXELS = 200_000_000  # larger images get no thumbnail: decoding one would hold GBs in the driver


@dataclass(frozen=True)
class Thumb:
    """A thumbnail file (in the thumbs folder) and the true size of the image it shows."""

    name: str
    width: int
    height: int


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """A JPEG of ``image`` at most ``THUMB_SIDE`` pixels on its longest side."""
    small = image.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, "JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


def _pixels(data: bytes) -> int:
    """The pixel count an image's header claims (0 when Pillow cannot say; the decoder then decides)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                return probe.width * probe.height
    except Image.DecompressionBombError:
        return sys.maxsize
    except Exception:  # noqa: BLE001 - unknown formats, broken headers: the decoder decides
        return 0


class Thumbnails:
    """The thumbnails folder of one output directory (local or remote: every read and write goes
    through the :class:`~batch.outdir.OutputDir`). Not thread-safe: one thread uses it."""

    def __init__(self, out, rel: str):
        self.out, self.rel = out, rel
        try:
            index = json.loads(out.read_file(f"{rel}/index.json") or b"{}")
        except ValueError:
            index = {}
        # anything but {key: [size, time, hash, width, height]} is no index: those thumbnails are made again
        self.index: dict[str, list] = {key: entry for key, entry in (index if isinstance(index, dict) else {}).items()
                                       if isinstance(entry, list) and len(entry) == 5 and isinstance(entry[2], str)}
        self.sizes = {entry[2]: (entry[3], entry[4]) for entry in self.index.values()}
        self.existing = out.file_names(rel)
        self.changed = False

    def of_file(self, key: str, path, stamp: tuple | None, make: bool = True) -> Thumb | None:
        """The thumbnail of the file at ``path`` (remembered under ``key``), whose ``stamp`` (from
        :func:`batch.remote_files.file_stamp`) says whether it changed; None if it cannot be read, or, with
        ``make`` false, if it would have to be made."""
        entry = self.index.get(key)
        known = entry is not None and len(entry) == 5 and self._file_name(entry[2]) in self.existing
        if stamp is None:  # cannot be reached from here: its last thumbnail
            return Thumb(self._file_name(entry[2]), entry[3], entry[4]) if known else None
        if known and tuple(entry[:2]) == tuple(stamp):
            return Thumb(self._file_name(entry[2]), entry[3], entry[4])
        if not make or (isinstance(path, Path) and not path.is_file()):  # a pipe or a device is never opened
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        thumb = self.of_bytes(data, path.name)
        if thumb is not None:
            self.remember(key, stamp, thumb)
        return thumb

    def of_bytes(self, data: bytes, name: str) -> Thumb | None:
        """The thumbnail of an encoded image, made unless one of the same bytes exists; None if undecodable."""
        digest = hashlib.sha256(data).hexdigest()[:24]
        file_name = self._file_name(digest)
        if file_name in self.existing and digest in self.sizes:
            return Thumb(file_name, *self.sizes[digest])
        if _pixels(data) > MAX_SOURCE_PIXELS:
            return None
        try:
            image = load_image(data, name=name)
        except Exception:  # noqa: BLE001 - an image that cannot be read has no thumbnail; the gallery goes on
            return None
        self.out.write_file(f"{self.rel}/{file_name}", thumbnail_jpeg(image))
        self.existing.add(file_name)
        self.sizes[digest] = image.size
        return Thumb(file_name, *image.size)

    def remember(self, key: str, stamp: tuple | None, thumb: Thumb) -> None:
        """Note that the file with ``stamp`` (e.g. just written) has ``thumb``, so a rerun need not read it."""
        if stamp is not None:
            self.index[key] = [*stamp, thumb.name.split(".")[0], thumb.width, thumb.height]
            self.changed = True

    def save(self) -> None:
        if self.changed:
            self.out.write_file(f"{self.rel}/index.json", json.dumps(self.index, separators=(",", ":")).encode())
            self.changed = False

    @staticmethod
    def _file_name(digest: str) -> str:
        return f"{digest}.jpg"


__all__ = ["Thumb", "Thumbnails", "thumbnail_jpeg", "THUMB_SIDE"]
