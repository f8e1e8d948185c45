"""Clips in a batch: a clip row (a video file, or a folder of numbered frames with ``sequence=true``)
becomes one item per frame. Frames are made in chains: each frame of a chain after its first starts
from the earlier frames' outputs (docs/batches.md, section Clips), so a frame waits until they are
done; the chains of a clip (its segments of ``segment_frames`` frames) are independent and run in
parallel. No torch and no video library here: the planner, ``status`` and ``--help`` stay cheap.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from batchstyle.engine.clip_settings import ClipSettings, frame_settings
from batchstyle.engine.files import cache_dir
from batchstyle.engine.schedule import scale_ladder

from .clip_files import frame_name
from .items import Item

DEFAULT_SEGMENT_FRAMES = 0  # frames per chain; 0: each clip is one chain (see docs/batches.md, section Clips)


@dataclass(frozen=True)
class ClipSource:
    """What a clip row found: its frames, their rate and size, and where its outputs go."""

    path: Path  # the video file, or the frame folder
    frames: int
    fps: Fraction
    size: tuple[int, int]
    audio: bool
    frames_dir: str  # the folder of its output frames, relative to the output directory
    video: str = ""  # the encoded clip, relative to the output directory ("" for frames only)
    sequence: tuple[Path, ...] = ()  # a frame folder's files in order; () for a video file
    clip: ClipSettings = ClipSettings()
    segment_frames: int = DEFAULT_SEGMENT_FRAMES


@dataclass(frozen=True)
class FrameRef:
    """Where a frame item stands in its clip: its number (from 1), its chain and the earlier frames
    of that chain whose outputs it starts from (nearest first, as ``ClipSettings.long_term``)."""

    clip: str  # the clip's key: its frames folder in the output directory
    index: int
    count: int
    chain: int
    earlier: tuple[int, ...]
    settings: ClipSettings
    video_file: Path | None = None  # the clip's video file (its bytes and the frame number identify the frame)
    video: str = ""  # the clip's encoded output, if any
    fps: Fraction = Fraction(0)
    audio_from: Path | None = None

    @property
    def first(self) -> bool:
        """The first frame of its chain: the full scale ladder, no temporal loss."""
        return not self.earlier


def frame_output(frames_dir: str, index: int) -> str:
    return posixpath.join(frames_dir, frame_name(index))


def chain_of(index: int, segment_frames: int) -> tuple[int, int]:
    """The chain of frame ``index`` (from 1) and that chain's first frame."""
    if segment_frames <= 0:
        return 0, 1
    chain = (index - 1) // segment_frames
    return chain, chain * segment_frames + 1


def earlier_frames(index: int, start: int, long_term: tuple[int, ...]) -> tuple[int, ...]:
    """The earlier frames of the same chain that frame ``index`` looks back to."""
    return tuple(index - j for j in long_term if index - j >= start)


def decoded_frames_dir(video: Path, digest: str) -> Path:
    """Where a video file's frames are decoded to, in the user's cache (kept between runs; safe to delete)."""
    return cache_dir() / "frames" / f"{video.stem[:40]}-{digest[:16]}"


def frame_items(item: Item, decoded: Path | None = None) -> list[Item]:
    """A clip row's item as one item per frame. ``decoded``: where the video file's frames are (or will
    be) decoded; a frame folder's items read its own files."""
    clip = item.clip
    assert clip is not None
    items = []
    for index in range(1, clip.frames + 1):
        chain, start = chain_of(index, clip.segment_frames)
        earlier = earlier_frames(index, start, clip.clip.long_term)
        content = clip.sequence[index - 1] if clip.sequence else decoded / frame_name(index)
        ref = FrameRef(clip.frames_dir, index, clip.frames, chain, earlier, clip.clip,
                       None if clip.sequence else clip.path, clip.video, clip.fps,
                       clip.path if clip.audio and not clip.sequence else None)
        items.append(replace(item, content=content, output=frame_output(clip.frames_dir, index), clip=None,
                             frame=ref, content_size=clip.size))
    return items


def frame_units(item: Item) -> int:
    """The pixel-iterations of a frame item: its own ladder (the full one for a chain's first frame,
    the end scale alone after it)."""
    settings = item.settings
    if item.frame is not None and not item.frame.first:
        settings = frame_settings(settings, item.frame.settings, item.content_size)
    return sum(scale.units for scale in scale_ladder(item.content_size, settings))


__all__ = ["ClipSource", "FrameRef", "frame_items", "frame_output", "frame_units", "chain_of", "earlier_frames",
           "decoded_frames_dir", "DEFAULT_SEGMENT_FRAMES"]
