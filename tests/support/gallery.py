"""An output directory with a gallery to look at, and what the gallery's data files say."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from PIL import Image

from batchstyle.batch.outdir import FailureRecord, ItemRecord, OutputDir, PlanItem, open_output_dir
from batchstyle.web.gallery import Gallery

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
