"""Video files: what a clip is (its frames, rate, size, audio), its frames decoded to a frame folder of
numbered PNGs and read back from any folder of numbered images, and frames encoded into a video with
the source's audio (``encode_video``, whose stream plumbing is in ``clip_streams``).

PyAV (FFmpeg) reads and writes the videos, Pillow the GIFs and the frames. Nothing here is imported
by ``import batchstyle`` or an image-only batch, and ``av`` itself only inside the functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image

from batchstyle.engine.files import atomic_write, temp_name

from . import clip_streams

__all__ = ["VIDEO_SUFFIXES", "FRAME_SUFFIXES", "ClipError", "ClipInfo", "is_clip_file", "probe", "decode_frames",
           "sequence_frames", "encode_video", "frame_name", "gif_durations", "MARKER"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # images a frame folder holds
MARKER = ".decoded.json"  # in a frame folder: the source, its size and mtime, and the frame count
GIF_DEFAULT_MS = 100  # a GIF frame without a duration (or of 0 ms) is shown this long, as browsers do


class ClipError(ValueError):
    """A video file or frame folder that cannot be read or written: one line that names the file and
    says what to do."""


@dataclass(frozen=True)
class ClipInfo:
    frames: int
    fps: Fraction
    size: tuple[int, int]  # (width, height) as displayed: after the rotation the file asks for
    audio: bool
    codec: str  # the video codec's FFmpeg name: "h264", "vp9", "gif" ...


def is_clip_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as a video (``VIDEO_SUFFIXES``); a ``.gif`` only when it has more than
    one frame (Pillow counts them; an unreadable GIF is not a clip, and fails as an image)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        return False
    if suffix != ".gif":
        return True
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError):
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _unreadable(path: Path, exc: BaseException) -> ClipError:
    return ClipError(f"{path}: not a video that can be read ({_one_line(exc)}); check that the file is complete "
                     "(copy or download it again) or export it again as mp4 (H.264)")


@contextlib.contextmanager
def _opened(path: Path, video: bool = True) -> Iterator:
    """The container of ``path`` for reading, with its video stream checked (unless not ``video``);
    FFmpeg's errors as ClipError."""
    import av

    if not path.exists():
        raise ClipError(f"{path}: no such file; name an existing video file")
    if not path.is_file():
        raise ClipError(f"{path}: not a regular file; name a video file (a folder of frames is read as one)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    with container:
        if video and not container.streams.video:
            raise ClipError(f"{path}: holds no video stream (only {_kinds(container)}); name a file with video")
        yield container


def _kinds(container) -> str:
    kinds = sorted({stream.type for stream in container.streams})
    return " and ".join(kinds) or "nothing"


def probe(path: str | os.PathLike) -> ClipInfo:
    """What the clip at ``path`` is. Video files: the rate and codec from the container; the frames
    counted by reading every packet (cheap: nothing is decoded), which also finds a truncated file
    whose header promises more; the first frame decoded for its size and rotation. GIFs: read with
    Pillow; their rate is 1000 / the median frame duration in ms (GIF frames may each have their own)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return _probe_gif(path)
    import av

    with _opened(path) as container:
        stream = container.streams.video[0]
        try:
            counted, first, damaged = _count_packets(container, stream)
        except av.FFmpegError as exc:
            raise _unreadable(path, exc) from None
        if damaged or (stream.frames and counted < stream.frames):
            said = "the file ends inside a packet" if damaged else f"its header says {stream.frames} frames, it holds {counted}"
            raise ClipError(f"{path}: truncated or damaged ({said}); copy or download it again")
        if counted == 0 or first is None:
            raise ClipError(f"{path}: its video stream has no frames that decode; export the clip again")
        fps = stream.average_rate or stream.guessed_rate
        if not fps:
            raise ClipError(f"{path}: its video stream has no frame rate; export it again with a constant rate")
        size = (first.height, first.width) if abs(first.rotation or 0) % 180 == 90 else (first.width, first.height)
        return ClipInfo(counted, Fraction(fps), size, bool(container.streams.audio), stream.codec_context.name)


def _count_packets(container, stream) -> tuple[int, object, bool]:
    """The video packets of ``container`` (one per frame), its first frame (decoded from the first
    packets: a decoder may need a few before it gives one), and whether any packet of any stream is cut
    short (FFmpeg flags those the file ends inside)."""
    count, first, damaged = 0, None, False
    for packet in container.demux():
        damaged = damaged or packet.is_corrupt
        if packet.stream.index != stream.index or packet.size == 0:  # 0: the demuxer's end-of-stream marker
            continue
        count += 1
        if first is None and not packet.is_corrupt:
            first = next(iter(stream.decode(packet)), None)
    if first is None and count:
        first = next(iter(stream.decode(None)), None)
    return count, first, damaged


def _probe_gif(path: Path) -> ClipInfo:
    durations, size = [], (0, 0)
    try:
        with Image.open(path) as image:
            if image.format != "GIF":
                raise ClipError(f"{path}: named .gif but is {image.format or 'no GIF'}; rename it or export it as GIF")
            size = image.size
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                durations.append(image.info.get("duration") or GIF_DEFAULT_MS)
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ClipError):
            raise
        raise ClipError(f"{path}: not a GIF that can be read ({_one_line(exc)}); check that the file is complete "
                        "or export it again") from None
    fps = Fraction(1000) / Fraction(statistics.median(durations)).limit_denominator(1000)
    return ClipInfo(len(durations), fps, size, False, "gif")


def _frames_of(path: Path) -> Iterator[Image.Image]:
    """The frames of the clip at ``path`` as RGB images, in order, one at a time, upright."""
    if path.suffix.lower() == ".gif":
        with Image.open(path) as image:
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                yield image.convert("RGB")
        return
    with _opened(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield _upright(frame.to_image(), frame.rotation or 0)


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """``image`` turned as the file's display matrix asks (degrees counter-clockwise, as FFmpeg gives)."""
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180,
            -90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270}.get(round(rotation))
    return image.transpose(turn) if turn is not None else image


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"source": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def frame_name(index: int) -> str:
    """The name of frame ``index`` (from 1) in a frame folder: ``000001.png``."""
    return f"{index:06d}.png"


def decode_frames(path: str | os.PathLike, folder: str | os.PathLike) -> list[Path]:
    """Every frame of the clip at ``path`` as an RGB PNG ``folder/000001.png``, ... in order, each
    written atomically, one frame in memory at a time. The marker file written last (``MARKER``: the
    source's path, size and mtime and the count) says the folder holds a complete decode: a second call
    returns the paths without decoding. Frames a previous, longer decode left there are removed."""
    import av

    path, folder = Path(path), Path(folder)
    existing = _complete_decode(path, folder)
    if existing is not None:
        return existing
    expected = probe(path).frames
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / MARKER).unlink()
    written: list[Path] = []
    try:
        for image in _frames_of(path):
            target = folder / frame_name(len(written) + 1)
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=1)
            atomic_write(target, buffer.getvalue())
            written.append(target)
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise ClipError(f"{path}: frame {len(written) + 1} cannot be decoded ({_one_line(exc)}); check that the "
                        "file is complete (copy or download it again)") from None
    if len(written) < expected:
        raise ClipError(f"{path}: only {len(written)} of its {expected} frames decode; the file is damaged or "
                        "truncated (copy or download it again)")
    _remove_beyond(folder, len(written))
    atomic_write(folder / MARKER, json.dumps({**_stamp(path), "frames": len(written)}).encode())
    return written


def _complete_decode(path: Path, folder: Path) -> list[Path] | None:
    """The frames of ``folder`` if its marker says they are a complete decode of ``path`` as it is now."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        current = _stamp(path)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or any(marker.get(key) != value for key, value in current.items()):
        return None
    frames = [folder / frame_name(index) for index in range(1, int(marker.get("frames", 0)) + 1)]
    return frames if frames and all(frame.is_file() for frame in frames) else None


def _remove_beyond(folder: Path, count: int) -> None:
    for entry in folder.iterdir():
        if re.fullmatch(r"\d{6}\.png", entry.name) and int(entry.name[:6]) > count:
            with contextlib.suppress(OSError):
                entry.unlink()


def sequence_frames(folder: str | os.PathLike) -> list[Path]:
    """The frames of a folder of numbered images (``frame_0001.png``, ``12.jpg`` ...: ``FRAME_SUFFIXES``,
    hidden files left out), in the numeric order of the last number in each name; gaps are allowed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipError(f"{folder}: not a folder; name a folder of numbered frames (frame_0001.png, ...)")
    images = sorted(entry for entry in folder.iterdir()
                    if entry.suffix.lower() in FRAME_SUFFIXES and not entry.name.startswith(".") and entry.is_file())
    if not images:
        raise ClipError(f"{folder}: holds no images ({', '.join(FRAME_SUFFIXES)}); put the clip's frames in it")
    numbered: dict[int, Path] = {}
    unnumbered = []
    for image in images:
        numbers = re.findall(r"\d+", image.stem)
        if not numbers:
            unnumbered.append(image.name)
            continue
        number = int(numbers[-1])
        if number in numbered:
            raise ClipError(f"{folder}: {numbered[number].name} and {image.name} both have the number {number}; "
                            "give each frame its own number")
        numbered[number] = image
    if unnumbered:
        raise ClipError(f"{folder}: {', '.join(unnumbered[:3])}{' ...' if len(unnumbered) > 3 else ''} "
                        "have no number in their name; number every frame (frame_0001.png, ...) or move them out")
    return [numbered[number] for number in sorted(numbered)]


def _frame_image(frame: Path | bytes, index: int, out: Path) -> Image.Image:
    try:
        with Image.open(io.BytesIO(frame) if isinstance(frame, (bytes, bytearray)) else frame) as image:
            return image.convert("RGB")
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        name = f"frame {index + 1}" + ("" if isinstance(frame, (bytes, bytearray)) else f" ({frame})")
        raise ClipError(f"{out}: {name} is not an image that can be read ({_one_line(exc)}); "
                        "make that frame again") from None


def _frame_images(frames: Sequence[Path | bytes], out: Path) -> Iterator[Image.Image]:
    """The frames as RGB images, one at a time, each checked to have the first one's size."""
    size = None
    for index, frame in enumerate(frames):
        image = _frame_image(frame, index, out)
        size = size or image.size
        if image.size != size:
            raise ClipError(f"{out}: frame {index + 1} is {image.width}x{image.height}, the first is "
                            f"{size[0]}x{size[1]}; make every frame of a clip the same size")
        yield image


def encode_video(frames: Sequence[Path | bytes], fps: Fraction, out: Path, audio_from: Path | None = None) -> None:
    """``frames`` (image files or encoded images, one size) as the video ``out`` at ``fps``; the
    container from its suffix: mp4, mov, mkv (H.264, yuv420p, +faststart for mp4 and mov), webm (VP9),
    gif (Pillow). Odd sizes are padded to even by repeating the last column or row (yuv420p needs even
    sizes). The audio of ``audio_from``, if it has any, is copied packet for packet where ``out``'s
    container takes its codec, else transcoded (AAC; Opus for webm); a GIF has none. Written to a
    temporary name beside ``out`` and renamed, so ``out`` only ever holds a complete video."""
    import av

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ClipError(f"{out}: cannot write a video named {suffix or 'without a suffix'}; name it "
                        f"{', '.join(VIDEO_SUFFIXES)}")
    if not frames:
        raise ClipError(f"{out}: no frames to encode; give it at least one frame")
    fps = Fraction(fps)
    if fps <= 0:
        raise ClipError(f"{out}: a frame rate of {fps} fps; give a positive frame rate")
    if audio_from is not None and suffix != ".gif":
        with _opened(Path(audio_from), video=False):  # one that cannot be read fails before any encoding
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(temp_name())
    try:
        if suffix == ".gif":
            _write_gif(_frame_images(frames, out), len(frames), fps, temp)
        else:
            source = Path(audio_from) if audio_from is not None else None
            clip_streams.write_video(_frame_images(frames, out), fps, temp, suffix, source)
        _fsync(temp)
        os.replace(temp, out)
    except av.FFmpegError as exc:
        raise ClipError(f"{out}: cannot be written ({_one_line(exc)}); check the disk and the frames") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def gif_durations(count: int, fps: Fraction) -> list[int]:
    """Each frame's duration in ms for a GIF at ``fps``: GIF counts hundredths of a second, so they are
    rounded where the running total stays closest to ``count / fps`` (24 fps: 40, 40, 50, 40 ...), and at
    least 20 ms (browsers slow shorter frames to 100 ms; a clip above 50 fps plays slower)."""
    ends = [round(Fraction(100 * (index + 1)) / fps) for index in range(count)]
    return [max(2, end - start) * 10 for start, end in zip([0] + ends, ends)]


def _write_gif(images: Iterator[Image.Image], count: int, fps: Fraction, temp: Path) -> None:
    """The frames as an animated GIF that loops, each with its own 256 colours (Pillow's fast octree:
    25 times faster than its default median cut at 512 px, about 0.7 levels more mean error). Pillow
    keeps every frame, palettised, until the file is written; identical neighbours become one frame shown
    as long as both."""
    palettised = (image.quantize(256, method=Image.Quantize.FASTOCTREE) for image in images)
    first = next(palettised)
    first.save(temp, "GIF", save_all=True, append_images=palettised, duration=gif_durations(count, fps), loop=0)
