"""A batch's clips before and after their frames are made: video files decoded to frames (once, kept
in the cache), and each clip's video encoded from its frames once they are all done, again whenever
a frame changed (a clip record in ``.batchstyle/clips/`` keeps the frame ids it was made from)."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .items import Item
from .outdir import OutputDir
from .outdir.records import META

CLIPS = f"{META}/clips"


@dataclass
class ClipOutcome:
    """What finishing the clips did: the videos written, those left for a later run, and any that failed."""

    written: list[str] = field(default_factory=list)
    waiting: dict[str, tuple[int, int]] = field(default_factory=dict)  # video -> (frames done, frames)
    failed: dict[str, str] = field(default_factory=dict)  # video -> why


def decode_clips(todo: list[Item], say: Callable[[str], None]) -> None:
    """Decode each video file that has frames to make into its frames folder (a no-op where a
    complete decode is there already). Raises ClipError when a file no longer decodes."""
    from .clip_files import decode_frames

    folders = {}
    for item in todo:
        frame = item.frame
        if frame is not None and frame.video_file is not None:
            folders.setdefault(item.content.parent, (frame.video_file, frame.count))
    for folder, (video_file, count) in folders.items():
        started = time.time()
        decode_frames(video_file, folder)
        if time.time() - started > 1:
            say(f"decoded {video_file.name} ({count} frames) in {time.time() - started:.0f} s")


def _clips(items: list[Item]) -> dict[str, list[Item]]:
    """Each clip with a video: its frame items in order."""
    clips: dict[str, list[Item]] = {}
    for item in items:
        if item.frame is not None and item.frame.video:
            clips.setdefault(item.frame.video, []).append(item)
    return {video: sorted(frames, key=lambda i: i.frame.index) for video, frames in clips.items()}


def clip_record_name(video: str) -> str:
    return f"{CLIPS}/{hashlib.sha256(video.encode()).hexdigest()[:24]}.json"


def finish_clips(items: list[Item], out: OutputDir) -> ClipOutcome:
    """Encode the video of every clip whose frames are all done, unless it was already made from these
    very frames. A clip with frames still missing waits for the run that makes them."""
    outcome = ClipOutcome()
    clips = _clips(items)
    if not clips:
        return outcome
    done = out.done_ids()
    for video, frames in clips.items():
        made = sum(1 for item in frames if item.id in done)
        if made < len(frames):
            outcome.waiting[video] = (made, len(frames))
            continue
        ids = [item.id for item in frames]
        if video_current(out, video, ids):
            continue
        try:
            _encode(out, video, frames)
        except (OSError, ValueError) as exc:  # ClipError is a ValueError
            outcome.failed[video] = str(exc)
            continue
        out.write_file(clip_record_name(video), json.dumps({"video": video, "frames": ids}, indent=1).encode())
        outcome.written.append(video)
    return outcome


def video_current(out: OutputDir, video: str, ids: list[str]) -> bool:
    """Whether ``video`` is there and was made from the frames ``ids``."""
    try:
        record = json.loads(out.read_file(clip_record_name(video)) or b"null")
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("frames") == ids and out.stamp(video) is not None


def _encode(out: OutputDir, video: str, frames: list[Item]) -> None:
    """The clip's frames (as written in the output directory) encoded into ``video``, with the source's audio."""
    from .clip_files import encode_video

    images = []
    for item in frames:
        data = out.read_file(item.output)
        if data is None:
            raise FileNotFoundError(f"frame {item.output} is gone; run the batch again to make it anew")
        images.append(data)
    first = frames[0].frame
    with tempfile.TemporaryDirectory(prefix="batchstyle-clip-") as folder:
        path = Path(folder) / Path(video).name
        encode_video(images, first.fps, path, audio_from=first.audio_from)
        out.write_file(video, path.read_bytes())


__all__ = ["ClipOutcome", "decode_clips", "finish_clips", "clip_record_name", "video_current", "CLIPS"]
