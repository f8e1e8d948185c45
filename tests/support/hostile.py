"""A hostile folder, as real ones are: files Pillow cannot open, a decompression bomb, odd modes
and variants, every EXIF orientation, animations, panoramas, one stem with two extensions, a TIFF
whose tags make Pillow warn, a named pipe (reading it would wait forever). ``build(folder)`` writes it and returns what each file should become."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .photos import make_photo

MADE, FAILS = "made", "fails"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def tiff_with_oversized_tag(width: int = 48, height: int = 36) -> bytes:
    """A valid 8-bit grey TIFF with one extra tag whose data would be larger than the file
    (Pillow warns "Tag data larger than file" and skips it)."""
    pixels = (np.arange(width * height) % 251).astype(np.uint8).tobytes()
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 0), (277, 3, 1, 1), (278, 3, 1, height), (279, 4, 1, len(pixels)),
            (65000, 4, 100000, 8)]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + pixels


def build(folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder``; file name -> MADE or FAILS."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = make_photo(48, 36, 7)
    expect: dict[str, str] = {}

    def save(name: str, image: Image.Image, outcome: str = MADE, **options) -> None:
        image.save(folder / name, **options)
        expect[name] = outcome

    def write(name: str, data: bytes, outcome: str) -> None:
        (folder / name).write_bytes(data)
        expect[name] = outcome

    write("empty.jpg", b"", FAILS)
    write("notes.png", b"this is a text file with the wrong name\n", FAILS)
    jpeg = folder / "whole.jpg"
    photo.save(jpeg, quality=90)
    write("truncated.jpg", jpeg.read_bytes()[: jpeg.stat().st_size // 2], FAILS)
    jpeg.unlink()
    write("bomb.png", bomb_png(), FAILS)
    os.mkfifo(folder / "pipe.png")
    expect["pipe.png"] = FAILS
    save("cmyk.jpg", photo.convert("CMYK"))
    save("deep16.png", Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257))
    save("palette.png", photo.convert("P", palette=Image.ADAPTIVE, colors=16))
    save("grey_alpha.png", photo.convert("LA"))
    save("deep16.tif", Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257))
    save("bilevel.bmp", photo.convert("1"))
    save("alpha.bmp", photo.convert("RGBA"))
    write("odd_tags.tif", tiff_with_oversized_tag(), MADE)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"orientation{orientation}.jpg", photo, exif=exif)
    frames = [photo, make_photo(48, 36, 8)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("animated.webp", frames[0], save_all=True, append_images=frames[1:], duration=100)
    save("panorama.png", make_photo(400, 40, 9))  # 10:1: its ladder starts a scale higher
    save("sliver.png", make_photo(600, 20, 10), FAILS)  # 30:1: too thin even at the end scale
    save("twin.jpg", photo)
    save("twin.webp", photo)  # the same stem: {ext} in the output name keeps them apart
    return expect


__all__ = ["build", "bomb_png", "tiff_with_oversized_tag", "MADE", "FAILS"]
