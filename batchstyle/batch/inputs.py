"""The input files of a batch, looked at once each before anything runs: what a folder or glob row
expands to, each image's size from its header, what is wrong with a file, and the warnings a
library raised while reading it (kept as notes on the file, never printed over the display)."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from batchstyle.engine.images import MAX_PIXELS, ImageError, image_notes, image_size

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
    """Looks at each input file once (a style is usually shared by many rows)."""

    max_pixels: int = MAX_PIXELS
    files: dict[Path, InputFile] = field(default_factory=dict)

    def check(self, path: Path) -> InputFile:
        if path not in self.files:
            self.files[path] = self._inspect(path)
        return self.files[path]

    def _inspect(self, path: Path) -> InputFile:
        if not path.exists():
            return InputFile(problem="does not exist")
        if path.is_dir():
            return InputFile(problem="is a folder, not an image")
        try:
            with image_notes() as notes:
                size = image_size(path, name=path.name, max_pixels=self.max_pixels)
        except ImageError as exc:
            return InputFile(problem=_after_name(str(exc), path.name), notes=tuple(notes))
        return InputFile(size=size, notes=tuple(notes))


def _after_name(message: str, name: str) -> str:
    """``"a.png: cannot read image: x"`` -> ``"cannot be read: x"``, to follow the file's name in a sentence."""
    text = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
    if text.startswith("cannot read image: "):
        text = "cannot be read: " + text[len("cannot read image: "):]
    return text


def expand_content(cell: str, base: Path) -> tuple[list[Path], bool, str | None]:
    """The content files a cell names: ``(files, expanded, problem)``.

    A file is itself; a folder is its images (sorted by name, hidden files left out) and a glob the
    images it matches (sorted). ``expanded`` tells the two apart: a file found by expanding that
    cannot be read fails as an image, while a file named in a cell is probably a typo.
    """
    path = base / cell
    kinds = ", ".join(INPUT_EXTENSIONS)
    if glob.has_magic(cell):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in INPUT_EXTENSIONS)
        return found, True, (None if found else f"content pattern {cell!r} matches no image ({kinds})")
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS
                       and not p.name.startswith("."))
        return found, True, (None if found else f"content folder {cell!r} holds no image ({kinds})")
    return [path], False, None


__all__ = ["InputChecker", "InputFile", "expand_content", "INPUT_EXTENSIONS"]
