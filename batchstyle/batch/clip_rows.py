"""The clip rows of a manifest: a video file (or an animated GIF) named in ``content``, or a folder of
numbered frames with ``sequence`` = ``true``. Each becomes one item holding a :class:`ClipSource`;
planning makes it one item per frame (:mod:`batch.clips`)."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

from batchstyle.engine.clip_settings import CLIP_COLUMNS, ClipSettings, parse_clip_settings

from .clips import DEFAULT_SEGMENT_FRAMES, ClipSource
from .outputs import OutputClaims, name_too_long, output_path
from .remote_files import RemotePath

CLIP_ROW_COLUMNS = ("sequence", "fps", "segment_frames", *CLIP_COLUMNS)
CLIP_OUTPUT = "{content}__{style}.mp4"  # a video file's default output; its frames go beside it
SEQUENCE_OUTPUT = "{content}__{style}"  # a frame folder's default: frames only
SEQUENCE_FPS = Fraction(24)  # a frame folder's rate, where the row gives no fps
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0", "")


def is_clip_row(cells: dict[str, str], content: Path | RemotePath | None) -> bool:
    """Whether the row is a clip: ``sequence`` says so, or its content is a video file or an animated GIF."""
    from .clip_files import VIDEO_SUFFIXES, is_clip_file

    if cells.get("sequence", "").lower() not in FALSE:  # true, or a mistake its reader reports
        return True
    if content is None or content.suffix.lower() not in VIDEO_SUFFIXES:
        return False
    if content.suffix.lower() != ".gif":
        return True
    return isinstance(content, Path) and content.is_file() and is_clip_file(content)


class ClipRows:
    """Reads a manifest's clip rows: the clip's frames, rate and size, its outputs and its settings."""

    def __init__(self, claims: OutputClaims, name_max: int | None):
        self.claims, self.name_max = claims, name_max

    def source(self, line: int, cells: dict[str, str], content: Path | RemotePath, styles: tuple[Path, ...],
               defaults: ClipSettings, problem: Callable[[str], None]) -> ClipSource | None:
        """The row's clip, or None (its problems reported)."""
        found: list[str] = []
        source = self._read(line, cells, content, styles, defaults, found.append)
        for message in found:
            problem(message)
        return None if found else source

    def _read(self, line: int, cells: dict[str, str], content: Path | RemotePath, styles: tuple[Path, ...],
              defaults: ClipSettings, trouble: Callable[[str], None]) -> ClipSource | None:
        from .clip_files import ClipError, probe, sequence_frames

        sequence = cells.get("sequence", "").lower()
        if sequence not in TRUE + FALSE:
            trouble(f"sequence must be true or false, not {cells['sequence']!r}")
            return None
        clip, segment = self._settings(cells, defaults, trouble)
        if cells.get("masks"):
            trouble("masks apply to still images; a clip row cannot have masks yet (make the frames one by one "
                    "with a folder row to mask them)")
        if isinstance(content, RemotePath):
            trouble(f"clip {content.url!r} is on object storage; clips must be local files for now (copy it "
                    f"here first)")
            return None
        try:
            if sequence in TRUE:
                frames = tuple(sequence_frames(content))
                info = None
            else:
                frames, info = (), probe(content)
        except ClipError as exc:
            trouble(str(exc))
            return None
        fps = self._fps(cells, info, trouble)
        size, count, audio = self._shape(frames, info, trouble)
        outputs = self._outputs(line, cells, content, styles, bool(frames), trouble)
        if outputs is None or size is None:
            return None
        frames_dir, video = outputs
        return ClipSource(content, count, fps, size, audio, frames_dir, video, frames, clip, segment)

    @staticmethod
    def _settings(cells: dict[str, str], defaults: ClipSettings, trouble) -> tuple[ClipSettings, int]:
        try:
            clip = parse_clip_settings(cells, defaults)
        except ValueError as exc:
            trouble(str(exc))
            clip = defaults
        cell = cells.get("segment_frames", "")
        if not cell:
            return clip, DEFAULT_SEGMENT_FRAMES
        if not cell.isdigit():
            trouble(f"segment_frames must be a whole number of frames (0: the whole clip in one chain), not {cell!r}")
            return clip, DEFAULT_SEGMENT_FRAMES
        return clip, int(cell)

    @staticmethod
    def _fps(cells: dict[str, str], info, trouble) -> Fraction:
        cell = cells.get("fps", "")
        if not cell:
            return info.fps if info is not None else SEQUENCE_FPS
        try:
            fps = Fraction(cell)
        except (ValueError, ZeroDivisionError):
            fps = Fraction(0)
        if fps <= 0:
            trouble(f"fps must be a positive number of frames per second (24, 29.97, 30000/1001), not {cell!r}")
            return SEQUENCE_FPS
        return fps

    @staticmethod
    def _shape(frames: tuple[Path, ...], info, trouble) -> tuple[tuple[int, int] | None, int, bool]:
        """The frames' size, their count and whether there is audio; a folder's frames must share a size."""
        if info is not None:
            return info.size, info.frames, info.audio
        from PIL import Image

        sizes = {}
        for frame in frames:
            try:
                with Image.open(frame) as image:
                    sizes.setdefault(image.size, frame)
            except OSError as exc:
                trouble(f"frame {frame.name!r} cannot be read ({exc}); replace or remove it")
                return None, 0, False
        if len(sizes) > 1:
            (a, first), (b, other) = list(sizes.items())[:2]
            trouble(f"the frames differ in size: {first.name} is {a[0]}x{a[1]} but {other.name} is {b[0]}x{b[1]}; "
                    f"a clip's frames must share one size")
            return None, 0, False
        return next(iter(sizes)), len(frames), False

    def _outputs(self, line: int, cells: dict[str, str], content: Path, styles: tuple[Path, ...], sequence: bool,
                 trouble) -> tuple[str, str] | None:
        """The clip's frames folder and its video ("" for none): the output cell names the video (or, for
        a frame folder, a name without a video extension: frames only)."""
        from .clip_files import VIDEO_SUFFIXES

        template = cells.get("output") or (SEQUENCE_OUTPUT if sequence else CLIP_OUTPUT)
        stem, ext = posixpath.splitext(template)
        video = ext.lower() in VIDEO_SUFFIXES
        if ext and not video and not sequence:
            trouble(f"output {template!r} of a clip must be a video file ({', '.join(VIDEO_SUFFIXES)})")
            return None
        named, error = output_path((stem if video or not ext else template) + ".png", content, styles, line, 1)
        if error:
            trouble(error)
            return None
        base = named[:-len(".png")]
        frames_dir, video_name = base + "_frames", base + ext.lower() if video else ""
        for output in filter(None, (frames_dir, video_name)):
            taken = name_too_long(output, self.name_max) or self.claims.claim(output, line, content, template)
            if taken:
                trouble(taken)
                return None
        return frames_dir, video_name


def with_clip(item, source: ClipSource):
    """The row's item as a clip item (its output: the frames folder)."""
    return replace(item, clip=source, output=source.frames_dir, content_size=source.size)


__all__ = ["ClipRows", "is_clip_row", "with_clip", "CLIP_ROW_COLUMNS", "CLIP_OUTPUT", "SEQUENCE_FPS"]
