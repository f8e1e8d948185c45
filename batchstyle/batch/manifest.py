"""A manifest (CSV of content/style pairs) turned into validated, expanded items.

Every problem in the whole file is collected, with its line number, before any work starts.
This module does not import torch or Ray.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import posixpath
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from batchstyle.engine.settings import StyleSettings, canonical_setting_name, parse_setting, setting_names

# Image files a folder or glob row expands to (Pillow reads them all).
INPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
DEFAULT_OUTPUT = "{content}__{style}.png"
BATCH_COLUMNS = ("content", "style", "style_weights", "output", "gpus")
PLACEHOLDERS = ("content", "style", "line", "n")


@dataclass(frozen=True)
class Item:
    """One image to make: inputs, resolved settings and where the result goes."""

    line: int
    content: Path
    styles: tuple[Path, ...]
    settings: StyleSettings
    output: str  # relative to the output directory, with / separators
    gpus: int | None = None  # 1 or 2 from the manifest, None = decided by size
    content_size: tuple[int, int] = (0, 0)


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
    defaults = defaults or StyleSettings()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, [Problem(0, "the manifest does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [Problem(0, f"cannot read the manifest ({exc})")]) from None
    base = path.parent
    problems: list[Problem] = []
    items: list[Item] = []
    checker = _Checker()
    rows = _logical_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ManifestError(path, [Problem(1, "the manifest is empty; it needs a header line such as "
                                              "content,style")]) from None
    except csv.Error as exc:
        raise ManifestError(path, [Problem(1, f"not valid CSV ({exc})")]) from None
    columns: list[str | None] = []
    for name in header:
        key = _column_key(name)
        if key is None:
            problems.append(Problem(header_line, f"unknown column {name.strip()!r}; columns are "
                                                 f"{', '.join(BATCH_COLUMNS)} and engine options "
                                                 f"({', '.join(setting_names())})"))
        elif key in columns:
            problems.append(Problem(header_line, f"column {name.strip()!r} appears twice"))
        columns.append(key)
    for required in ("content", "style"):
        if required not in columns:
            problems.append(Problem(header_line, f"the header has no {required!r} column"))
    if problems:
        raise ManifestError(path, problems)

    owners: dict[str, tuple[int, Path]] = {}
    try:
        for line, row in rows:
            if len(row) > len(columns):
                problems.append(Problem(line, f"{len(row)} cells but the header has {len(columns)} columns "
                                              f"(quote cells that contain commas)"))
                continue
            cells = {col: cell.strip() for col, cell in zip(columns, row) if col is not None}
            items += _read_row(line, cells, base, defaults, output_template, checker, owners, problems)
    except csv.Error as exc:
        problems.append(Problem(line if "line" in locals() else header_line, f"not valid CSV ({exc})"))
    if problems:
        raise ManifestError(path, problems)
    if not items:
        raise ManifestError(path, [Problem(header_line, "the manifest lists no images")])
    return items


def _read_row(line: int, cells: dict[str, str], base: Path, defaults: StyleSettings, template: str,
              checker: _Checker, owners: dict[str, tuple[int, Path]], problems: list[Problem]) -> list[Item]:
    bad = len(problems)

    def problem(message: str) -> None:
        problems.append(Problem(line, message))

    # settings: the row's cells over the command line's defaults
    changes: dict[str, object] = {}
    for column, cell in cells.items():
        if column in BATCH_COLUMNS or not cell:
            continue
        try:
            value = parse_setting(column, cell)
        except ValueError as exc:
            problem(str(exc))
            continue
        if column in ("content_layers", "style_layers"):
            changes[column], changes[column[:-1] + "_weights"] = value
        else:
            changes[column] = value
    if cells.get("style_weights"):
        try:
            changes["style_weights"] = parse_setting("style_weights", cells["style_weights"].replace(";", " "))
        except ValueError as exc:
            problem(str(exc))
    settings = defaults
    if len(problems) == bad:
        try:
            settings = defaults.replace(**changes)
        except ValueError as exc:
            problem(str(exc))

    gpus = None
    if cells.get("gpus"):
        if cells["gpus"] in ("1", "2"):
            gpus = int(cells["gpus"])
        else:
            problem(f"gpus must be 1 or 2, not {cells['gpus']!r}")

    style_cells = [s.strip() for s in cells.get("style", "").split(";") if s.strip()]
    if not style_cells:
        problem("style is empty; give one or more style images separated by ';'")
    styles = []
    for cell in style_cells:
        style = base / cell
        result = checker.image(style)
        if isinstance(result, str):
            problem(f"style image {cell!r} {result}")
        styles.append(style)
    weights = settings.style_weights
    if weights is not None and style_cells and len(weights) != len(style_cells):
        problem(f"{len(weights)} style weights for {len(style_cells)} style image(s); give one weight per style, "
                f"separated by ';'")

    content_cell = cells.get("content", "")
    if not content_cell:
        problem("content is empty; give an image, a folder or a pattern such as photos/*.jpg")
        return []
    contents, error = _expand_content(content_cell, base)
    if error:
        problem(error)
        return []
    items = []
    for n, content in enumerate(contents, 1):
        size = checker.image(content)
        label = content_cell if len(contents) == 1 else f"{content_cell} -> {content.name}"
        if isinstance(size, str):
            problem(f"content image {label!r} {size}")
            continue
        output, error = _output_path(cells.get("output") or template, content, tuple(styles), line, n)
        if error:
            problem(error)
            break
        key = output.lower()  # outputs differing only by case collide on macOS and Windows
        if key in owners:
            other_line, other = owners[key]
            where = "this row" if other_line == line else f"line {other_line}"
            problem(f"output {output!r} is also written by {where} ({other.name}); give each row its own "
                    f"output, e.g. {{content}}__{{style}}.png")
            continue
        owners[key] = (line, content)
        items.append(Item(line, content, tuple(styles), settings, output, gpus, size))
    return items if len(problems) == bad else []


def manifest_text(rows: list[dict[str, str]]) -> str:
    """Write rows as manifest CSV (used by tests and tools that generate manifests)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


__all__ = ["Item", "Problem", "ManifestError", "read_manifest", "manifest_text", "DEFAULT_OUTPUT",
           "INPUT_EXTENSIONS", "OUTPUT_EXTENSIONS"]
