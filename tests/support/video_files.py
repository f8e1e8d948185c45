"""Video files made here for the tests: a clip's frames as an mp4, mov, mkv or webm (H.264 or VP9),
with an optional sine tone as its audio (AAC, or Opus in a webm), or as an animated GIF. Written with
PyAV and Pillow directly, not with batchstyle's writer, so that a reader's test does not depend on
the code it checks.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


def write_video(path: Path, frames: list[Image.Image], fps: Fraction | int, audio_seconds: float | None = None,
                rotation: int = 0) -> Path:
    """``frames`` (RGB, even sizes) as the video of ``path`` (its suffix picks the container) at ``fps``;
    with ``audio_seconds``, a 440 Hz tone of that length in a second stream (AAC at 44.1 kHz, or Opus at
    48 kHz for a webm); ``rotation`` (degrees) is written as the stream's display rotation."""
    import av

    path, fps = Path(path), Fraction(fps)
    webm = path.suffix == ".webm"
    with av.open(str(path), "w", format=FORMATS[path.suffix]) as out:
        video = out.add_stream("libvpx-vp9" if webm else "libx264", rate=fps)
        video.width, video.height = frames[0].size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "20"} if not webm else {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if rotation:
            video.set_display_rotation(rotation)
        audio = _audio_stream(out, webm) if audio_seconds else None
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image.convert("RGB"))
            frame.pts, frame.time_base = index, 1 / fps
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None:
            _write_tone(out, audio, audio_seconds)
    return path


def _audio_stream(out, webm: bool):
    audio = out.add_stream("libopus" if webm else "aac", rate=48000 if webm else 44100)
    audio.layout = "stereo"
    return audio


def _write_tone(out, audio, seconds: float) -> None:
    import av

    rate = audio.codec_context.sample_rate
    size = audio.codec_context.frame_size or 1024
    total = round(seconds * rate)
    fmt = audio.codec_context.format.name
    for start in range(0, total, size):
        n = min(size, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        tone = 0.2 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
        planes = np.stack([tone, tone]) if fmt.endswith("p") else np.stack([tone, tone], 1).reshape(1, -1)
        data = planes if fmt.startswith("flt") else (planes * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(audio.encode(frame))
    out.mux(audio.encode())


def write_gif(path: Path, frames: list[Image.Image], fps: Fraction | int | None = None,
              durations_ms: list[int] | None = None) -> Path:
    """``frames`` as an animated GIF that loops, each shown ``1000 / fps`` ms (GIF keeps hundredths of
    a second), or for its own entry of ``durations_ms``."""
    durations = durations_ms or [round(1000 / float(fps))] * len(frames)
    frames = [image.convert("RGB") for image in frames]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return Path(path)


__all__ = ["write_video", "write_gif"]
