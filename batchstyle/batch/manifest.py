"""A manifest (CSV of content/style pairs) turned into validated, expanded items.

Every problem in the whole file is collected, with its line number, before any work starts.
This module does not import torch or Ray.
"""

from __future__ import annotations

import csv
import glob
import os
import posixpath
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from batchstyle.engine.settings import (FIELDS_BY_NAME, SettingsError, StyleSettings, canonical_setting_name,
                                        did_you_mean, settings_from_text)

# Image files a folder or glob row expands to (Pillow reads them all).
INPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
DEFAULT_OUTPUT = "{content}__{style}.png"
BATCH_COLUMNS = ("content", "style", "output", "gpus")  # and every setting, by its field name
PLACEHOLDERS = ("content", "style", "line", "n")


@dataclass(frozen=True)
class Item:
    """One image to make: its manifest line, inputs, resolved settings and where the result goes.

    Planning (:func:`batch.plan.make_plan`) fills in the rest: its id, its route and its cost.
    """

    line: int
    content: Path
    styles: tuple[Path, ...]
    settings: StyleSettings
    output: str  # relative to the output directory, with / separators
    gpus: int | None = None  # 1 or 2 from the manifest, None = decided by size
    content_size: tuple[int, int] = (0, 0)
    id: str = ""
    route: int = 1  # GPUs of the worker it goes to (1 or 2)
    units: int = 0  # pixel-iterations of the whole run (for ETAs)
    group_key: str | None = None  # items with equal keys may be optimised together; None: alone
    pixels: int = 0  # of the final image


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


class ManifestError(ValueError):
    """Everything wrong with a manifest, one ``manifest.csv:LINE: what is wrong`` per line."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path = str(path)
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(f"{self.path}:{p.line}: {p.message}" for p in self.problems))


@dataclass
class _Checker:
    """Checks input files once each (a style is usually shared by many rows)."""

    sizes: dict[Path, tuple[int, int] | str] = field(default_factory=dict)

    def image(self, path: Path) -> tuple[int, int] | str:
        """The image's (width, height), or the text of what is wrong with the file."""
        if path not in self.sizes:
            self.sizes[path] = self._inspect(path)
        return self.sizes[path]

    @staticmethod
    def _inspect(path: Path) -> tuple[int, int] | str:
        if not path.exists():
            return "does not exist"
        if path.is_dir():
            return "is a folder, not an image"
        try:
            with Image.open(path) as im:  # reads the header only
                return im.size
        except PermissionError:
            return "is not readable (permission denied)"
        except (UnidentifiedImageError, OSError) as exc:
            return f"is not a readable image ({exc.__class__.__name__})"


def _logical_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """CSV rows with the physical line each starts on, skipping blank lines and ``#`` comments."""
    lines = text.splitlines(keepends=True)
    starts: list[int] = []

    def kept() -> Iterator[str]:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            starts.append(number)
            yield line

    reader = csv.reader(kept(), skipinitialspace=True)
    consumed = 0
    for row in reader:
        first = starts[consumed]
        consumed = len(starts)
        yield first, row


def _column_key(header: str) -> str | None:
    key = header.strip().lower().replace("-", "_").replace(" ", "_")
    if key in BATCH_COLUMNS:
        return key
    if key == "styles":
        return "style"
    return canonical_setting_name(key)


def _unknown_column(name: str) -> str:
    hint = did_you_mean(name, [*BATCH_COLUMNS, *FIELDS_BY_NAME])
    if hint:
        return f"unknown column {name.strip()!r}{hint}"
    return (f"unknown column {name.strip()!r}; columns are {', '.join(BATCH_COLUMNS)} and engine options "
            f"({', '.join(FIELDS_BY_NAME)})")


def _expand_content(cell: str, base: Path) -> tuple[list[Path], str | None]:
    """A file, a folder (its images, sorted by name) or a glob (its images, sorted)."""
    path = base / cell
    if glob.has_magic(cell):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in INPUT_EXTENSIONS)
        return found, (None if found else f"content pattern {cell!r} matches no image "
                                          f"({', '.join(INPUT_EXTENSIONS)})")
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS
                       and not p.name.startswith("."))
        return found, (None if found else f"content folder {cell!r} holds no image "
                                          f"({', '.join(INPUT_EXTENSIONS)})")
    return [path], None


def _output_path(template: str, content: Path, styles: tuple[Path, ...], line: int, n: int) -> tuple[str, str | None]:
    """The output path for one item, or an error text."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return "", f"output template {template!r} is malformed ({exc})"
    unknown = sorted({n_ for n_ in names if n_ not in PLACEHOLDERS})
    if unknown:
        return "", (f"output template {template!r} uses unknown placeholder(s) {', '.join(unknown)}; "
                    f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    out = template.format(content=content.stem, style="+".join(s.stem for s in styles), line=line, n=n)
    out = out.replace("\\", "/")
    if not out.strip() or out.endswith("/"):
        return "", f"output {template!r} gives an empty file name"
    if out.startswith("/") or (len(out) > 1 and out[1] == ":") or ".." in out.split("/"):
        return "", f"output path {out!r} would leave the output directory; use a relative path inside it"
    out = posixpath.normpath(out)
    if posixpath.splitext(out)[1].lower() not in OUTPUT_EXTENSIONS:
        return "", (f"output {out!r} has an unsupported extension; use one of {', '.join(OUTPUT_EXTENSIONS)}")
    return out, None


def read_manifest(path: str | os.PathLike, defaults: StyleSettings | None = None,
                  output_template: str = DEFAULT_OUTPUT) -> list[Item]:
    """Parse and check a manifest; return its items in order or raise :class:`ManifestError`."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, [Problem(0, "the manifest does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [Problem(0, f"cannot read the manifest ({exc})")]) from None
    rows = _logical_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ManifestError(path, [Problem(1, "the manifest is empty; it needs a header line such as "
                                              "content,style")]) from None
    except csv.Error as exc:
        raise ManifestError(path, [Problem(1, f"not valid CSV ({exc})")]) from None
    reader = _RowReader(path.parent, defaults or StyleSettings(), output_template)
    columns = reader.columns(header_line, header)
    if reader.problems:
        raise ManifestError(path, reader.problems)
    items: list[Item] = []
    line = header_line
    try:
        for line, row in rows:
            items += reader.row(line, columns, row)
    except csv.Error as exc:
        reader.problems.append(Problem(line, f"not valid CSV ({exc})"))
    if reader.problems:
        raise ManifestError(path, reader.problems)
    if not items:
        raise ManifestError(path, [Problem(header_line, "the manifest lists no images")])
    return items


class _RowReader:
    """Reads the rows of one manifest, collecting every problem with its line."""

    def __init__(self, base: Path, defaults: StyleSettings, template: str):
        self.base, self.defaults, self.template = base, defaults, template
        self.problems: list[Problem] = []
        self.checker = _Checker()
        self.owners: dict[str, tuple[int, Path]] = {}  # output (lower case) -> the line and content making it

    def columns(self, line: int, header: list[str]) -> list[str | None]:
        columns: list[str | None] = []
        for name in header:
            key = _column_key(name)
            if key is None:
                self.problems.append(Problem(line, _unknown_column(name)))
            elif key in columns:
                self.problems.append(Problem(line, f"column {name.strip()!r} appears twice"))
            columns.append(key)
        for required in ("content", "style"):
            if required not in columns:
                self.problems.append(Problem(line, f"the header has no {required!r} column"))
        return columns

    def row(self, line: int, columns: list[str | None], row: list[str]) -> list[Item]:
        """The row's items, or none when anything in it is wrong (its problems are recorded)."""
        if len(row) > len(columns):
            self.problems.append(Problem(line, f"{len(row)} cells but the header has {len(columns)} columns "
                                               f"(quote cells that contain commas)"))
            return []
        cells = {col: cell.strip() for col, cell in zip(columns, row) if col is not None}
        before = len(self.problems)
        problem = lambda message: self.problems.append(Problem(line, message))  # noqa: E731
        settings = self._settings(cells, problem)
        gpus = self._gpus(cells.get("gpus", ""), problem)
        styles = self._styles(cells.get("style", ""), settings, problem)
        items = [Item(line, content, styles, settings, output, gpus, size)
                 for content, size, output in self._contents(line, cells, styles, problem)]
        return items if len(self.problems) == before else []

    def _settings(self, cells: dict[str, str], problem) -> StyleSettings:
        """The row's cells over the command line's defaults."""
        try:
            return settings_from_text({c: v for c, v in cells.items() if c not in BATCH_COLUMNS and v}, self.defaults)
        except SettingsError as exc:
            for message in exc.problems:
                problem(message)
            return self.defaults

    @staticmethod
    def _gpus(cell: str, problem) -> int | None:
        if cell and cell not in ("1", "2"):
            problem(f"gpus must be 1 or 2, not {cell!r}")
        return int(cell) if cell in ("1", "2") else None

    def _styles(self, cell: str, settings: StyleSettings, problem) -> tuple[Path, ...]:
        names = [s.strip() for s in cell.split(";") if s.strip()]
        if not names:
            problem("style is empty; give one or more style images separated by ';'")
        for name in names:
            result = self.checker.image(self.base / name)
            if isinstance(result, str):
                problem(f"style image {name!r} {result}")
        weights = settings.style_weights
        if weights is not None and names and len(weights) != len(names):
            problem(f"{len(weights)} style weights for {len(names)} style image(s); give one weight per style, "
                    f"separated by ';'")
        return tuple(self.base / name for name in names)

    def _contents(self, line: int, cells: dict[str, str], styles: tuple[Path, ...], problem):
        """(content path, size, output) of each image the content cell names."""
        cell = cells.get("content", "")
        if not cell:
            problem("content is empty; give an image, a folder or a pattern such as photos/*.jpg")
            return
        contents, error = _expand_content(cell, self.base)
        if error:
            problem(error)
            return
        for n, content in enumerate(contents, 1):
            size = self.checker.image(content)
            if isinstance(size, str):
                label = cell if len(contents) == 1 else f"{cell} -> {content.name}"
                problem(f"content image {label!r} {size}")
                continue
            output, error = _output_path(cells.get("output") or self.template, content, styles, line, n)
            if error:
                problem(error)
                return
            if self._claim(output, line, content, problem):
                yield content, size, output

    def _claim(self, output: str, line: int, content: Path, problem) -> bool:
        """Whether this row may write ``output``: two items never write one file."""
        key = output.lower()  # outputs differing only by case collide on macOS and Windows
        if key in self.owners:
            other_line, other = self.owners[key]
            where = "this row" if other_line == line else f"line {other_line}"
            problem(f"output {output!r} is also written by {where} ({other.name}); give each row its own "
                    f"output, e.g. {{content}}__{{style}}.png")
            return False
        self.owners[key] = (line, content)
        return True


__all__ = ["Item", "Problem", "ManifestError", "read_manifest", "DEFAULT_OUTPUT",
           "INPUT_EXTENSIONS", "OUTPUT_EXTENSIONS"]
