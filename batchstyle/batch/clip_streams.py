"""The streams of a video being written, with PyAV: the frames encoded (H.264 or VP9, yuv420p, tagged
BT.709), and the audio of a source clip copied packet for packet or transcoded, interleaved with the
video by time. ``clip_files.encode_video`` checks the arguments and names the file; this module only
writes, and lets FFmpeg's errors (``av.FFmpegError``) through to it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_video", "FORMATS", "COPIED_AUDIO", "even_size"]

FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}  # suffix -> FFmpeg muxer
# The audio codecs copied as they are into each container: for mp4 those browsers play there (its
# muxer also takes PCM and Vorbis, which browsers do not play), for mov those QuickTime plays (its muxer
# refuses Opus); a mkv takes whatever its muxer takes.
COPIED_AUDIO = {".mp4": {"aac", "mp3", "opus", "flac"}, ".webm": {"opus", "vorbis"},
                ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"}}
X264 = {"crf": "18", "preset": "medium"}
VP9 = {"crf": "32", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}  # constant quality
BT709 = 1  # FFmpeg's value of BT.709 for colorspace, primaries and transfer


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size a frame is encoded at: odd sides padded by one pixel (yuv420p halves both sides)."""
    return size[0] + size[0] % 2, size[1] + size[1] % 2


def write_video(images: Iterator[Image.Image], fps: Fraction, path: Path, suffix: str,
                audio_from: Path | None) -> None:
    """``images`` (RGB, one size) as the video ``path`` in the container of ``suffix`` at ``fps``, with
    the audio of ``audio_from`` (copied or transcoded) when it has any."""
    import av

    options = {"movflags": "+faststart"} if suffix in (".mp4", ".mov") else {}
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(av.open(str(path), "w", format=FORMATS[suffix], options=options))
        first = next(images)
        video = _video_stream(container, suffix, fps, first.size)
        audio = None
        if audio_from is not None:
            source = stack.enter_context(av.open(str(audio_from)))
            audio = _AudioTrack.of(container, source, suffix)
        for index, image in enumerate(itertools.chain([first], images)):
            container.mux(video.encode(_video_frame(image, index, fps)))
            if audio is not None:
                audio.mux_until(Fraction(index + 1) / fps)
        container.mux(video.encode(None))
        if audio is not None:
            audio.mux_until(None)


def _video_stream(container, suffix: str, fps: Fraction, size: tuple[int, int]):
    stream = container.add_stream("libvpx-vp9" if suffix == ".webm" else "libx264", rate=fps)
    stream.width, stream.height = even_size(size)
    stream.pix_fmt = "yuv420p"
    stream.options = dict(VP9 if suffix == ".webm" else X264)
    context = stream.codec_context
    context.colorspace = context.color_primaries = context.color_trc = BT709
    context.color_range = 1  # limited ("MPEG") range, what players expect of yuv420p
    return stream


def _video_frame(image: Image.Image, index: int, fps: Fraction):
    import av

    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    pad_w, pad_h = even_size((width, height))
    if (pad_w, pad_h) != (width, height):  # repeat the last column or row
        pixels = np.pad(pixels, ((0, pad_h - height), (0, pad_w - width), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG",
                           dst_color_trc=BT709, dst_color_primaries=BT709)
    frame.pts, frame.time_base = index, Fraction(1) / fps
    return frame


class _AudioTrack:
    """The output's audio stream and the packets for it from the source, muxed in time order with the
    video (``mux_until``). Timestamps keep their distance from the source's video start, so audio and
    video stay in sync as they were."""

    def __init__(self, container, stream, packets: Iterator):
        self.container, self.stream, self.packets = container, stream, packets
        self.pending = None

    @classmethod
    def of(cls, container, source, suffix: str) -> _AudioTrack | None:
        if not source.streams.audio:
            return None
        audio = source.streams.audio[0]
        video = source.streams.video[0] if source.streams.video else None
        start = (video.start_time or 0) * video.time_base if video is not None and video.start_time else Fraction(0)
        name = audio.codec_context.name
        if name in COPIED_AUDIO.get(suffix, container.supported_codecs):
            stream = container.add_stream_from_template(audio)
            return cls(container, stream, _copied(source, audio, stream, start))
        stream = _audio_encoder(container, audio, suffix)
        return cls(container, stream, _transcoded(source, audio, stream, start))

    def mux_until(self, seconds: Fraction | None) -> None:
        """Mux the packets that start before ``seconds`` (all that are left, for None)."""
        while True:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    return
            packet = self.pending
            if seconds is not None and packet.pts is not None and packet.pts * packet.time_base >= seconds:
                return
            self.container.mux(packet)
            self.pending = None


def _copied(source, audio, stream, start: Fraction) -> Iterator:
    """The source's audio packets as they are, for ``stream``, shifted so that the video starts at 0."""
    shift = round(start / audio.time_base)
    for packet in source.demux(audio):
        if packet.dts is None:  # the demuxer's end-of-stream marker
            continue
        packet.dts -= shift
        if packet.pts is not None:
            packet.pts -= shift
        packet.stream = stream
        yield packet


def _audio_encoder(container, audio, suffix: str):
    """AAC (Opus for webm) with the source's channels (Opus: at most two) and rate (Opus: 48 kHz)."""
    context = audio.codec_context
    if suffix == ".webm":
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono" if context.channels == 1 else "stereo"
    else:
        rates = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
        stream = container.add_stream("aac", rate=context.sample_rate if context.sample_rate in rates else 48000)
        stream.layout = context.layout.name
    stream.bit_rate = 64000 * min(context.channels, 2) + 32000 * max(context.channels - 2, 0)
    return stream


def _transcoded(source, audio, stream, start: Fraction) -> Iterator:
    """The source's audio decoded, resampled to what the encoder takes, in its frame size, and encoded."""
    import av

    context = stream.codec_context
    resampler = av.AudioResampler(format=context.format, layout=context.layout, rate=context.sample_rate,
                                  frame_size=context.frame_size or None)
    first = audio.start_time * audio.time_base if audio.start_time is not None else start
    samples = max(0, round((first - start) * context.sample_rate))
    for frame in itertools.chain(source.decode(audio), [None]):
        for piece in resampler.resample(frame):
            piece.pts, piece.time_base = samples, Fraction(1, context.sample_rate)
            samples += piece.samples
            yield from stream.encode(piece)
    yield from stream.encode(None)
