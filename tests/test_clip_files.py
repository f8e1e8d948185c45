"""Video files: what probe says of each container and of GIFs, decoding to a frame folder (once),
frame folders of numbered images, encoding with the source's audio, and one ClipError line for every
file that cannot be read or written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchstyle.batch import clip_files
from batchstyle.batch.clip_files import (ClipError, ClipInfo, decode_frames, encode_video, is_clip_file, probe,
                                         sequence_frames)
from support.clips import pan_clip
from support.video_files import write_gif, write_video

av = pytest.importorskip("av")
ROOT = Path(__file__).resolve().parents[1]
FPS = Fraction(24)
CONTAINERS = (".mp4", ".mov", ".mkv", ".webm")


@pytest.fixture(scope="module")
def frames(demo_images) -> list[Image.Image]:
    """12 frames of 128x96 panning across a real photo."""
    return pan_clip(Image.open(demo_images / "content" / "coffee.jpg"), frames=12, size=(128, 96)).frames


@pytest.fixture(scope="module")
def sources(tmp_path_factory, frames) -> dict[str, Path]:
    """Each container with half a second of audio (AAC; Opus in the webm), and an mp4 without audio."""
    folder = tmp_path_factory.mktemp("sources")
    made = {suffix: write_video(folder / f"clip{suffix}", frames, FPS, audio_seconds=0.5) for suffix in CONTAINERS}
    made["silent"] = write_video(folder / "silent.mp4", frames, FPS)
    return made


def _seconds(path: Path, kind: str) -> float:
    """How long the first stream of ``kind`` lasts: from its first packet's start to its last's end."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        spans = [(p.pts, p.pts + (p.duration or 0)) for p in container.demux(stream) if p.pts is not None and p.size]
        return float((max(end for _, end in spans) - min(start for start, _ in spans)) * stream.time_base)


def _codec(path: Path, kind: str) -> str | None:
    with av.open(str(path)) as container:
        streams = getattr(container.streams, kind)
        return streams[0].codec_context.name if streams else None


def _mean_error(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_probe_gives_each_containers_frames_rate_size_and_audio(sources, suffix):
    """mkv and webm headers carry no frame count: the packets are counted."""
    codec = "vp9" if suffix == ".webm" else "h264"
    assert probe(sources[suffix]) == ClipInfo(12, Fraction(24), (128, 96), True, codec)


def test_probe_says_when_there_is_no_audio(sources):
    assert probe(sources["silent"]).audio is False


def test_probe_of_a_gif_takes_the_median_frame_duration(tmp_path, frames):
    steady = write_gif(tmp_path / "steady.gif", frames, 20)  # 50 ms a frame
    assert probe(steady) == ClipInfo(12, Fraction(20), (128, 96), False, "gif")
    uneven = write_gif(tmp_path / "uneven.gif", frames[:5], durations_ms=[40, 40, 100, 40, 500])
    assert probe(uneven).fps == Fraction(25) and probe(uneven).frames == 5


def test_a_gif_is_a_clip_only_with_more_than_one_frame(tmp_path, frames, sources):
    assert is_clip_file(write_gif(tmp_path / "moving.gif", frames[:2], 10))
    assert not is_clip_file(write_gif(tmp_path / "still.gif", frames[:1], 10))
    assert is_clip_file(sources[".mkv"]) and is_clip_file(tmp_path / "SHOT.MOV")
    assert not is_clip_file(tmp_path / "photo.png")


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_decode_writes_every_frame_close_to_the_source(sources, frames, tmp_path, suffix):
    written = decode_frames(sources[suffix], tmp_path / "frames")
    assert [path.name for path in written] == [f"{index:06d}.png" for index in range(1, 13)]
    decoded = [Image.open(path) for path in written]
    assert all(image.mode == "RGB" and image.size == (128, 96) for image in decoded)
    errors = [_mean_error(image, source) for image, source in zip(decoded, frames)]
    assert max(errors) < 8  # 8-bit levels; lossy, but the same pictures in the same order
    assert _mean_error(decoded[3], frames[6]) > max(errors)  # the pan moves: the order is checked


def test_a_gif_decodes_to_its_frames(tmp_path, frames):
    written = decode_frames(write_gif(tmp_path / "clip.gif", frames[:4], 10), tmp_path / "frames")
    assert len(written) == 4
    assert max(_mean_error(Image.open(p), f) for p, f in zip(written, frames)) < 12  # 256-colour palettes


def test_a_second_decode_reuses_the_folder_until_the_source_changes(sources, tmp_path, monkeypatch, frames):
    source = tmp_path / "clip.mp4"
    source.write_bytes(sources[".mp4"].read_bytes())
    first = decode_frames(source, tmp_path / "frames")

    def no_decoding(path):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(clip_files, "_frames_of", no_decoding)
        assert decode_frames(source, tmp_path / "frames") == first
    write_video(source, frames[:5], FPS)  # another clip under the same name: fewer frames
    again = decode_frames(source, tmp_path / "frames")
    assert len(again) == 5 and sorted(p.name for p in (tmp_path / "frames").glob("*.png")) == [p.name for p in again]


def test_decode_turns_frames_as_the_file_asks(tmp_path, frames):
    """A phone's portrait clip is stored landscape with a display rotation (here 90 degrees
    counter-clockwise): probe and the frames are upright."""
    rotated = write_video(tmp_path / "portrait.mp4", frames[:3], FPS, rotation=90)
    assert probe(rotated).size == (96, 128)
    first = Image.open(decode_frames(rotated, tmp_path / "frames")[0])
    assert first.size == (96, 128)
    assert _mean_error(first, frames[0].transpose(Image.Transpose.ROTATE_90)) < 8


def test_sequence_frames_orders_by_the_last_number_in_the_name(tmp_path, frames):
    for name in ("take2_frame_10.png", "take2_frame_9.jpg", "take2_frame_100.png", "take2_frame_1.png", ".hidden_3.png"):
        frames[0].save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    names = [path.name for path in sequence_frames(tmp_path)]
    assert names == ["take2_frame_1.png", "take2_frame_9.jpg", "take2_frame_10.png", "take2_frame_100.png"]


def _one_line_naming(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_sequence_frames_refuses_folders_it_cannot_order(tmp_path, frames):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClipError) as error:
        sequence_frames(empty)
    assert "no images" in _one_line_naming(error, empty)
    unnumbered = tmp_path / "unnumbered"
    unnumbered.mkdir()
    frames[0].save(unnumbered / "frame_1.png")
    frames[0].save(unnumbered / "cover.png")
    with pytest.raises(ClipError) as error:
        sequence_frames(unnumbered)
    assert "cover.png" in _one_line_naming(error, unnumbered)
    twice = tmp_path / "twice"
    twice.mkdir()
    frames[0].save(twice / "frame_01.png")
    frames[0].save(twice / "frame_1.jpg")
    with pytest.raises(ClipError) as error:
        sequence_frames(twice)
    assert "frame_01.png" in _one_line_naming(error, twice) and "frame_1.jpg" in str(error.value)
    with pytest.raises(ClipError):
        sequence_frames(tmp_path / "missing")


@pytest.mark.parametrize("suffix", [*CONTAINERS, ".gif"])
def test_encode_then_probe(tmp_path, frames, suffix):
    out = tmp_path / f"out{suffix}"
    encode_video([_png(image) for image in frames], FPS, out)
    info = probe(out)
    assert (info.frames, info.size, info.audio) == (12, (128, 96), False)
    # GIF counts hundredths of a second: 24 fps is 40 and 50 ms frames, 25 fps by their median
    assert info.fps == (Fraction(25) if suffix == ".gif" else FPS)
    assert _seconds(out, "video") == pytest.approx(0.5, abs=0.011)
    assert os.listdir(tmp_path) == [out.name]  # no temporary file left beside it


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("source, suffix, codec", [
    (".mp4", ".mkv", "aac"), (".mov", ".mp4", "aac"), (".webm", ".mp4", "opus"), (".mkv", ".mov", "aac"),
    (".mp4", ".webm", "opus"), (".webm", ".mov", "aac"),
])
def test_the_sources_audio_is_kept(sources, tmp_path, source, suffix, codec):
    """Copied where the container takes the codec (the same codec), else transcoded (AAC, Opus in webm)."""
    frames = decode_frames(sources[source], tmp_path / "frames")
    out = tmp_path / f"out{suffix}"
    encode_video(frames, FPS, out, audio_from=sources[source])
    assert probe(out).audio and _codec(out, "audio") == codec
    assert _seconds(out, "audio") == pytest.approx(_seconds(sources[source], "audio"), abs=1 / 24)
    assert _seconds(out, "video") == pytest.approx(0.5, abs=0.011)


def test_no_audio_where_the_source_has_none_or_the_output_is_a_gif(sources, tmp_path, frames):
    pngs = [_png(image) for image in frames]
    encode_video(pngs, FPS, tmp_path / "out.mp4", audio_from=sources["silent"])
    encode_video(pngs, FPS, tmp_path / "out.gif", audio_from=sources[".mp4"])
    assert _codec(tmp_path / "out.mp4", "audio") is None and not probe(tmp_path / "out.gif").audio


def test_the_audio_may_come_from_a_file_without_video(tmp_path, frames):
    song = _audio_only(tmp_path / "song.mp4")
    encode_video([_png(image) for image in frames], FPS, tmp_path / "out.mkv", audio_from=song)
    assert _codec(tmp_path / "out.mkv", "audio") == "aac"
    assert _seconds(tmp_path / "out.mkv", "audio") == pytest.approx(_seconds(song, "audio"), abs=1 / 24)


def test_the_mp4_plays_in_a_browser(tmp_path, frames):
    """H.264 in yuv420p, and the index (moov) before the data, so that playback starts at once."""
    out = tmp_path / "out.mp4"
    encode_video([_png(image) for image in frames], FPS, out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    data = out.read_bytes()
    assert 0 < data.index(b"moov") < data.index(b"mdat")


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path, frames):
    odd = [image.crop((0, 0, 127, 95)) for image in frames[:4]]
    out = tmp_path / "odd.mp4"
    encode_video([_png(image) for image in odd], FPS, out)
    assert probe(out).size == (128, 96)
    first = np.asarray(Image.open(decode_frames(out, tmp_path / "frames")[0]), np.float64)
    assert np.abs(first[:95, :127] - np.asarray(odd[0], np.float64)).mean() < 8
    assert np.abs(first[:95, 127] - first[:95, 126]).mean() < 8  # the padded column repeats its neighbour


def _broken(tmp_path: Path, frames) -> dict[str, Path]:
    """Files that are no clip. The truncated one has its index first (+faststart), so that it opens."""
    encode_video([_png(image) for image in frames], FPS, tmp_path / "whole.mp4")
    data = (tmp_path / "whole.mp4").read_bytes()
    made = {"random bytes": (tmp_path / "noise.mp4", os.urandom(4000)), "text": (tmp_path / "notes.mp4", b"hello\n"),
            "empty": (tmp_path / "empty.mkv", b""), "truncated": (tmp_path / "cut.mp4", data[: len(data) * 6 // 10]),
            "a still GIF that is not": (tmp_path / "fake.gif", b"GIF89a" + os.urandom(100))}
    for path, content in made.values():
        path.write_bytes(content)
    return {why: path for why, (path, _) in made.items()}


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        for index in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, index * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _no_frames(path: Path) -> Path:
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    return path


def test_every_unreadable_file_is_one_clip_error_line_naming_it(tmp_path, frames):
    cases = {**_broken(tmp_path, frames), "audio only": _audio_only(tmp_path / "song.mp4"),
             "no frames": _no_frames(tmp_path / "nothing.mkv"), "missing": tmp_path / "missing.mov"}
    for why, path in cases.items():
        for read in (probe, lambda p: decode_frames(p, tmp_path / "frames")):
            with pytest.raises(ClipError) as error:
                read(path)
            _one_line_naming(error, path)
    with pytest.raises(ClipError, match="truncated"):
        probe(cases["truncated"])
    with pytest.raises(ClipError, match="no video stream"):
        probe(cases["audio only"])


def test_encode_refuses_what_it_cannot_write_and_leaves_nothing(tmp_path, frames):
    good = [_png(image) for image in frames[:4]]
    cases = {"frames of two sizes": (good + [_png(frames[0].resize((64, 48)))], "out.mp4", "same size"),
             "a frame that is no image": (good + [b"not a png"], "out.webm", "frame 5"),
             "no frames": ([], "out.mp4", "no frames"), "an unknown container": (good, "out.avi", ".avi")}
    for why, (given, name, said) in cases.items():
        with pytest.raises(ClipError, match=said) as error:
            encode_video(given, FPS, tmp_path / name)
        _one_line_naming(error, tmp_path / name)
    noise = tmp_path / "sources" / "noise.mp4"
    noise.parent.mkdir()
    noise.write_bytes(os.urandom(4000))
    with pytest.raises(ClipError) as error:
        encode_video(good, FPS, tmp_path / "out.mp4", audio_from=noise)
    _one_line_naming(error, noise)
    assert os.listdir(tmp_path) == ["sources"]  # no video, half or whole, and no temporary file


def test_clip_files_import_pyav_only_when_used():
    """``import batchstyle``, ``--help`` and image-only batches never load FFmpeg."""
    code = ("import sys, batchstyle, batchstyle.batch.clip_files, batchstyle.batch.make; "
            "assert 'av' not in sys.modules, 'av imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
