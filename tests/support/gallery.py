"""An output directory with a gallery to look at, and what the gallery's data files say."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from PIL import Image

from batchstyle.batch.outdir import FailureRecord, ItemRecord, OutputDir, PlanItem, open_output_dir
from batchstyle.web.gallery import Gallery

from .photos import make_photo

PREFIX = b"(window.batchstyleGallery=window.batchstyleGallery||{shards:{}})"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_of(script: Path):
    """The JSON a data script assigns (``...summary=`` or ``...shards[k]=``)."""
    text = script.read_bytes()
    assert text.startswith(PREFIX)
    rest = text[len(PREFIX):]
    return json.loads(rest[rest.index(b"=") + 1:].rstrip(b";\n"))


def page_data(out: OutputDir) -> tuple[dict, list[dict]]:
    folder = out.meta / "gallery"
    summary = data_of(folder / "summary.js")
    rows = [row for k in range(len(summary["shards"])) for row in data_of(folder / f"shard-{k:05d}.js")]
    return summary, rows


def record(entry: PlanItem, inputs: Path) -> ItemRecord:
    settings = {"end_scale": 256, "content_weight": 10, "style_weights": None, "seed": 0}
    return ItemRecord(id=entry.id, output=entry.output, line=entry.line, content=entry.content, styles=entry.styles,
                      settings=settings, weights="w", worker="node GPU 0", seconds=12.5, finished=time.time())


def failure(entry: PlanItem, error: str) -> FailureRecord:
    return FailureRecord(id=entry.id, output=entry.output, line=entry.line, content=entry.content, error=error,
                         kind="error", attempts=1, time=time.time(), worker="node GPU 0", detail="Traceback ...")


def follow(out: OutputDir, shard_size: int = 100) -> Gallery:
    gallery = Gallery(out, shard_size=shard_size).start()
    out.watch(gallery)
    return gallery


def planned_batch(tmp_path: Path, photo) -> tuple[OutputDir, list[PlanItem], Path]:
    """An output directory planned for six photos in one style: two done before, one failed, three pending."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        photo(80, 60, i).save(inputs / f"p{i}.png")
    photo(50, 50, 99).save(inputs / "style.png")
    out = open_output_dir(tmp_path / "out")
    out.create()
    plan = [PlanItem(f"id{i}", f"p{i}__style.png", 2, str(inputs / f"p{i}.png"), [str(inputs / "style.png")],
                      {"end_scale": 256, "content_weight": 10}) for i in range(6)]
    out.write_plan(plan, {})
    for i in (0, 1):
        out.write_result(record(plan[i], inputs), png(photo(80, 60, 50 + i)))
    out.write_failure(failure(plan[2], "p2.png: cannot be read"))
    return out, plan, inputs


def clip_plan(out: OutputDir, inputs: Path, name: str, frames: int, video: str, source: str) -> list[PlanItem]:
    """The plan items of one clip's frames: ``name__style_frames/00000k.png``, its video ``video``
    ("" for frames only), its content frames in ``inputs/name/`` (``source``: its video file, or "")."""
    folder = inputs / name
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for k in range(1, frames + 1):
        content = folder / f"{k:06d}.png"
        make_photo(64, 48, k).save(content)
        items.append(PlanItem(f"{name}{k}", f"{name}__style_frames/{k:06d}.png", 3, str(content),
                              [str(inputs / "style.png")], {"end_scale": 256}, clip=f"{name}__style_frames",
                              frame=k, frames=frames, video=video, source=source))
    return items


def frame_record(entry: PlanItem, inputs: Path) -> ItemRecord:
    return ItemRecord(**{**record(entry, inputs).__dict__, "clip": entry.clip, "frame": entry.frame,
                         "frames": entry.frames, "video": entry.video, "source": entry.source})


def write_frame(out: OutputDir, entry: PlanItem, inputs: Path) -> None:
    """Frame ``entry`` made: its output (a photo with the frame's seed, shifted) and its record."""
    out.write_result(frame_record(entry, inputs), png(make_photo(64, 48, 40 + entry.frame)))


def write_video(out: OutputDir, frames: list[PlanItem], fps: int = 6) -> None:
    """The clip of ``frames`` (all made) encoded as the batch does, with the clip record that says so."""
    from fractions import Fraction

    from batchstyle.batch.clip_files import encode_video
    from batchstyle.batch.clip_outputs import clip_record_name

    video = frames[0].video
    encode_video([out.root / f.output for f in frames], Fraction(fps), out.root / video)
    out.write_file(clip_record_name(video), json.dumps({"video": video, "frames": [f.id for f in frames]}).encode())


def clip_batch(root: Path, suffix: str = ".mp4", frames: int = 6) -> tuple[OutputDir, dict[str, list[PlanItem]], Path]:
    """An output directory planned for a still photo, a clip from a video file in the output directory
    (``sources/pan`` + ``suffix``) with every frame made and its video ``pan__style`` + ``suffix``
    written, and a frame folder of 3 frames, 2 made, without a video. The plan by name: "still",
    "pan", "seq"."""
    from fractions import Fraction

    from batchstyle.batch.clip_files import encode_video

    inputs = root / "in"
    inputs.mkdir()
    make_photo(80, 60, 1).save(inputs / "still.png")
    make_photo(50, 50, 99).save(inputs / "style.png")
    out = open_output_dir(root / "out")
    out.create()
    source = out.root / "sources" / f"pan{suffix}"
    source.parent.mkdir()
    pan = clip_plan(out, inputs, "pan", frames, f"pan__style{suffix}", str(source))
    encode_video([Path(f.content) for f in pan], Fraction(6), source)
    seq = clip_plan(out, inputs, "seq", 3, "", "")
    still = PlanItem("still", "still__style.png", 2, str(inputs / "still.png"), [str(inputs / "style.png")],
                     {"end_scale": 256})
    out.write_plan([still, *pan, *seq], {})
    out.write_result(record(still, inputs), png(make_photo(80, 60, 2)))
    for entry in [*pan, *seq[:2]]:
        write_frame(out, entry, inputs)
    write_video(out, pan)
    return out, {"still": [still], "pan": pan, "seq": seq}, inputs
