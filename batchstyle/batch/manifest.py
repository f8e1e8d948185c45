"""A manifest (CSV of content/style pairs) turned into validated, expanded items.

Every problem in the whole file is collected, with its line number, before any work starts. A
file found by expanding a folder or a glob that cannot be used does not stop the batch: it becomes
an item with a ``problem``, which fails as an image. This module does not import torch or Ray.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from batchstyle.engine.clip_settings import ClipSettings
from batchstyle.engine.files import file_kind
from batchstyle.engine.images import MAX_PIXELS
from batchstyle.engine.layers import LAYER_NAMES, layer_index, min_input_size
from batchstyle.engine.schedule import ladder_note, scale_ladder, style_size_at, too_thin
from batchstyle.engine.settings import (FIELDS_BY_NAME, SettingsError, StyleSettings, canonical_setting_name,
                                        did_you_mean, settings_from_text)
from batchstyle.engine.speed import parse_tile

from .clip_rows import CLIP_ROW_COLUMNS, FALSE, ClipRows, is_clip_row, with_clip
from .inputs import INPUT_EXTENSIONS, InputChecker, resolve
from .items import Item
from .mask_inputs import MaskChecker, RowMasks
from .outputs import DEFAULT_OUTPUT, NAME_MAX, OUTPUT_EXTENSIONS, OutputClaims, name_too_long, output_path
from .remote_files import RemotePath, StorageError, as_path

BATCH_COLUMNS = ("content", "style", "masks", "mask_colors", "output", "gpus", "tile",
                 *CLIP_ROW_COLUMNS)  # and every setting, by name
_ALIASES = {"styles": "style", "mask": "masks"}  # plurals as users may write them


@dataclass(frozen=True)
class Problem:
    line: int  # 0: the file as a whole
    message: str


class ManifestError(ValueError):
    """Everything wrong with a manifest, one ``manifest.csv:LINE: what is wrong`` per line."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path = str(path)
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(f"{self.path}:{p.line}: {p.message}" if p.line else f"{self.path}: {p.message}"
                                   for p in self.problems))


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
    if key in _ALIASES:
        return _ALIASES[key]
    return canonical_setting_name(key)


def _unknown_column(name: str) -> str:
    hint = did_you_mean(name, [*BATCH_COLUMNS, *FIELDS_BY_NAME])
    if hint:
        return f"unknown column {name.strip()!r}{hint}"
    return (f"unknown column {name.strip()!r}; columns are {', '.join(BATCH_COLUMNS)} and engine options "
            f"({', '.join(FIELDS_BY_NAME)})")


def read_manifest(path: str | os.PathLike, defaults: StyleSettings | None = None,
                  output_template: str = DEFAULT_OUTPUT, max_pixels: int = MAX_PIXELS, headers=None,
                  name_max: int | None = NAME_MAX) -> list[Item]:
    """Parse and check a manifest; return its items in order or raise :class:`ManifestError`.

    ``path`` and the files it names may be local or URLs (``s3://bucket/jobs/manifest.csv``);
    relative paths resolve against the manifest's own folder. ``max_pixels`` is the largest input
    image accepted (a header claiming more is refused). ``headers`` (a ``outdir.HeaderCache``)
    remembers what remote images' headers said, so that a resumed run reads none of them again.
    ``name_max`` is the most bytes the output directory's file system allows in one file name
    (``OutputDir.name_max()``; None: no limit): a longer output name is a problem of its line.
    """
    path = as_path(path if isinstance(path, (str, Path, RemotePath)) else os.fspath(path))
    text = _manifest_text(path)
    rows = _logical_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ManifestError(path, [Problem(1, "the manifest is empty; it needs a header line such as "
                                              "content,style")]) from None
    except csv.Error as exc:
        raise ManifestError(path, [Problem(1, f"not valid CSV ({exc})")]) from None
    reader = _RowReader(path.parent, defaults or StyleSettings(), output_template,
                        InputChecker(max_pixels, headers=headers), name_max)
    columns = reader.columns(header_line, header)
    if reader.problems:
        raise ManifestError(path, reader.problems)
    if "://" in text or isinstance(path, RemotePath):  # remote files: list and read their headers in bulk first
        rows, broken = _all_rows(rows, header_line)
        reader.prefetch(columns, rows)
    else:
        broken = None
    items: list[Item] = []
    line = header_line
    try:
        for line, row in rows:
            items += reader.row(line, columns, row)
    except csv.Error as exc:
        reader.problems.append(Problem(line, f"not valid CSV ({exc})"))
    if broken:
        reader.problems.append(broken)
    if reader.problems:
        raise ManifestError(path, reader.problems)
    if not items:
        raise ManifestError(path, [Problem(header_line, "the manifest lists no images")])
    return items


def _manifest_text(path: Path | RemotePath) -> str:
    """The manifest's text, or the :class:`ManifestError` that says why it cannot be read. A local
    manifest that is not a regular file (a named pipe, a device) is never opened."""
    try:
        kind = file_kind(path) if isinstance(path, Path) else None
        if kind:
            todo = "name the manifest file in it" if kind == "a folder" else "save the manifest to a file and name that"
            raise ManifestError(path, [Problem(0, f"the manifest is {kind}, not a regular file; {todo}")])
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, [Problem(0, "the manifest does not exist")]) from None
    except StorageError as exc:
        raise ManifestError(path, [Problem(0, "the manifest does not exist" if exc.problem == "does not exist"
                                           else exc.problem)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [Problem(0, f"cannot read the manifest ({exc})")]) from None


def _all_rows(rows: Iterator[tuple[int, list[str]]], line: int) -> tuple[list[tuple[int, list[str]]], Problem | None]:
    """Every row up to the first that is not valid CSV (and that problem, with its line)."""
    done: list[tuple[int, list[str]]] = []
    try:
        for line, row in rows:
            done.append((line, row))
    except csv.Error as exc:
        return done, Problem(done[-1][0] if done else line, f"not valid CSV ({exc})")
    return done, None


class _RowReader:
    """Reads the rows of one manifest, collecting every problem with its line."""

    def __init__(self, base: Path, defaults: StyleSettings, template: str, checker: InputChecker,
                 name_max: int | None = NAME_MAX, clip_defaults: ClipSettings = ClipSettings()):
        self.base, self.defaults, self.template, self.checker = base, defaults, template, checker
        self.name_max = name_max
        self.problems: list[Problem] = []
        self.claims = OutputClaims()
        self.masks = MaskChecker(checker)
        self.clips = ClipRows(self.claims, name_max)
        self.clip_defaults = clip_defaults

    def columns(self, line: int, header: list[str]) -> list[str | None]:
        columns = [_column_key(name) for name in header]
        if not any(columns):
            self.problems.append(Problem(line, f"this does not look like a manifest: its first line should be a "
                                               f"header naming the columns, such as content,style (it is "
                                               f"{','.join(header)[:60]!r})"))
            return columns
        for name, key in zip(header, columns):
            if key is None:
                self.problems.append(Problem(line, _unknown_column(name)))
        for key in {k for k in columns if k is not None and columns.count(k) > 1}:
            name = header[columns.index(key)]
            self.problems.append(Problem(line, f"column {name.strip()!r} appears twice"))
        for required in ("content", "style"):
            if required not in columns:
                self.problems.append(Problem(line, f"the header has no {required!r} column"))
        return columns

    def prefetch(self, columns: list[str | None], rows: list[tuple[int, list[str]]]) -> None:
        """List the remote folders and read the headers of every remote file the rows name, at once.

        Problems are left for :meth:`row` to report in order."""
        paths = []
        for _, row in rows:
            cells = {col: cell.strip() for col, cell in zip(columns, row) if col is not None}
            try:
                for name in (s.strip() for s in cells.get("style", "").split(";") if s.strip()):
                    paths.append(resolve(self.base, name))
                paths += self.masks.paths(self.base, cells.get("masks", ""))
                if cells.get("content"):
                    paths += self.checker.expand(cells["content"], self.base)[0]
            except StorageError:
                continue
        self.checker.prefetch(paths)

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
        styles = self._styles(cells.get("style", ""), self._style_weights(cells, settings), problem)
        masks = self.masks.row(self.base, cells, len(styles), problem)
        items = list(self._items(line, cells, settings, gpus, styles, masks, problem))
        tile = self._tile(cells.get("tile", ""), problem)
        if tile is not None:  # how the engine runs, not what it makes: not part of the item's id
            items = [replace(item, tile=tile) for item in items]
        return items if len(self.problems) == before else []

    def _settings(self, cells: dict[str, str], problem) -> StyleSettings:
        """The row's cells over the command line's defaults."""
        try:
            return settings_from_text({c: v for c, v in cells.items() if c not in BATCH_COLUMNS and v}, self.defaults)
        except SettingsError as exc:
            for message in exc.problems:
                problem(message)
            return self.defaults

    def _style_weights(self, cells: dict[str, str], settings: StyleSettings) -> tuple[float, ...] | None:
        """The row's style weights, even when another of its settings is wrong."""
        if not cells.get("style_weights"):
            return settings.style_weights
        try:
            return FIELDS_BY_NAME["style_weights"].value(cells["style_weights"])
        except ValueError:  # reported with the settings
            return None

    @staticmethod
    def _gpus(cell: str, problem) -> int | None:
        if cell and cell not in ("1", "2"):
            problem(f"gpus must be 1 or 2, not {cell!r}")
        return int(cell) if cell in ("1", "2") else None

    @staticmethod
    def _tile(cell: str, problem) -> str | int | None:
        if not cell:
            return None
        try:
            return parse_tile(cell)
        except ValueError as exc:
            problem(str(exc))
            return None

    def _styles(self, cell: str, weights: tuple[float, ...] | None, problem) -> tuple[Path, ...]:
        names = [s.strip() for s in cell.split(";") if s.strip()]
        if not names:
            problem("style is empty; give one or more style images separated by ';'")
        for name in names:
            found = self.checker.check(resolve(self.base, name))
            if found.problem:
                problem(f"style image {name!r} {found.problem}")
        if weights is not None and names and len(weights) != len(names):
            problem(f"{len(weights)} style weights for {len(names)} style image(s); give one weight per style, "
                    f"separated by ';'")
        return tuple(self.checker.resolved(resolve(self.base, name)) for name in names)

    def _items(self, line: int, cells: dict[str, str], settings: StyleSettings, gpus: int | None,
               styles: tuple[Path, ...], masks: RowMasks | None, problem) -> Iterator[Item]:
        """The items of the images the content cell names (with the row's styles and masks), each with
        its output claimed."""
        cell = cells.get("content", "")
        if not cell:
            problem("content is empty; give an image, a folder, a pattern such as photos/*.jpg, or a clip")
            return
        if is_clip_row(cells, resolve(self.base, cell)):
            yield from self._clip(line, cells, resolve(self.base, cell), settings, styles, gpus, problem)
            return
        for column in (c for c in CLIP_ROW_COLUMNS if cells.get(c) and not (c == "sequence" and cells[c].lower()
                                                                              in FALSE)):
            problem(f"{column} applies to clips only (a video file, or a frame folder with sequence=true); "
                    f"leave it empty for {cell!r}")
        try:
            contents, expanded, error = self.checker.expand(cell, self.base)
        except StorageError as exc:
            contents, expanded, error = [], False, f"content {cell!r}: {exc.problem}"
        if error:
            problem(error)
            return
        template = cells.get("output") or self.template
        for n, content in enumerate(contents, 1):
            trouble = self._content_problem(content, settings, styles, masks)
            label = f"{cell} -> {content.name}" if expanded else cell
            if trouble and not expanded:  # named in a cell: probably a typo, the manifest is wrong
                problem(f"content image {label!r} {trouble}")
                continue
            output, error = output_path(template, content, styles, line, n)
            if error:
                problem(error)
                return
            too_long = name_too_long(output, self.name_max)
            if too_long:
                problem(too_long)
                continue
            taken = self.claims.claim(output, line, content, template)
            if taken:
                problem(taken)
                continue
            item = self._item(line, self.checker.resolved(content), styles, settings, output, gpus, trouble)
            yield self._masked(item, masks) if masks else item

    def _clip(self, line: int, cells: dict[str, str], content, settings: StyleSettings, styles: tuple[Path, ...],
              gpus: int | None, problem) -> Iterator[Item]:
        """A clip row's one item (planning makes it one item per frame)."""
        source = self.clips.source(line, cells, content, styles, self.clip_defaults, problem)
        if source is None:
            return
        trouble = too_thin(source.size, settings) or next(
            (f"cannot be made with style image {style.name!r}, which {small}" for style in styles
             for small in [_style_too_small(self.checker.check(style).size, source.size, settings)] if small), None)
        if trouble:
            problem(f"clip {cells['content']!r}: its frames ({source.size[0]}x{source.size[1]}) {trouble}")
            return
        yield with_clip(Item(line, content, styles, settings, source.frames_dir, gpus), source)

    def _content_problem(self, content: Path, settings: StyleSettings, styles: tuple[Path, ...],
                         masks: RowMasks | None = None) -> str:
        """Why this content image cannot be made with these settings, styles and masks ("" when it can)."""
        found = self.checker.check(content)
        if found.problem:
            return found.problem
        thin = too_thin(found.size, settings)
        if thin:
            return thin
        for style in styles:
            small = _style_too_small(self.checker.check(style).size, found.size, settings)
            if small:
                return f"cannot be made with style image {style.name!r}, which {small}"
        shape = self.masks.shape_problem(masks, found.size)
        return f"cannot be made with its masks: {shape}" if shape else ""

    def _item(self, line: int, content: Path, styles: tuple[Path, ...], settings: StyleSettings, output: str,
              gpus: int | None, trouble: str) -> Item:
        found = self.checker.check(content)
        notes = [f"{content.name}: {note}" for note in found.notes]
        notes += [f"{style.name}: {note}" for style in styles for note in self.checker.check(style).notes]
        if trouble:
            return Item(line, content, styles, settings, output, gpus, problem=f"{content.name} {trouble}",
                        notes=tuple(notes))
        shorter = ladder_note(found.size, settings)
        if shorter:
            notes.append(f"{content.name} {shorter}")
        return Item(line, content, styles, settings, output, gpus, found.size, notes=tuple(notes))

    def _masked(self, item: Item, masks: RowMasks) -> Item:
        """The item with the row's masks, and a note for each region too small for a layer at a scale."""
        notes = self.masks.notes(masks, item.content_size, item.settings) if not item.problem else []
        return replace(item, masks=masks.paths, mask_colors=masks.colors,
                       notes=(*item.notes, *(f"{item.content.name}: {note}" for note in notes)))


def _style_too_small(style_size: tuple[int, int] | None, content_size: tuple[int, int],
                     settings: StyleSettings) -> str | None:
    """Why a style image is too small for the deepest style layer at some scale, or None."""
    if style_size is None:
        return None
    deepest = max(layer_index(n) for n in settings.style_layers)
    need = min_input_size(deepest)
    for scale in scale_ladder(content_size, settings):
        w, h = style_size_at(style_size, scale.long_side, settings)
        if min(w, h) < need:
            return (f"is {w}x{h} at scale {scale.long_side}, too small for layer {LAYER_NAMES[deepest]} "
                    f"(at least {need} px on the short side); use a larger style image, style_scale or style_size")
    return None


__all__ = ["Problem", "ManifestError", "read_manifest", "DEFAULT_OUTPUT", "INPUT_EXTENSIONS",
           "OUTPUT_EXTENSIONS"]
