"""Live previews from the worker's engine (batch/engine_backend.py): small, bounded, and only when asked."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from batchstyle.batch.engine_backend import PREVIEW_SIDE, EngineBackend, live_preview
from batchstyle.batch.items import Item
from batchstyle.batch.messages import ItemInputs, ItemPreview, ItemResult
from batchstyle.engine.events import Progress
from batchstyle.engine.settings import StyleSettings


def progress(width: int, height: int) -> Progress:
    return Progress(2, 4, width, height, 17, 500, 1.5, 3.0, 0, 0.0)


def test_a_preview_is_a_small_jpeg_of_the_image_with_its_true_size():
    torch = pytest.importorskip("torch")
    image = torch.rand(3, 400, 600)
    preview = live_preview(image, progress(600, 400))
    with Image.open(io.BytesIO(preview.image)) as im:
        assert im.format == "JPEG" and im.size == (PREVIEW_SIDE, 171) == (preview.width, preview.height)
    assert (preview.of_width, preview.of_height, preview.version) == (600, 400, "2.17")
    assert len(preview.image) < 3 * PREVIEW_SIDE * 171  # even of noise: less than its raw pixels
    small = live_preview(torch.rand(3, 48, 64), progress(64, 48))
    assert (small.width, small.height) == (64, 48)  # never enlarged


def png_bytes(photo, w, h, seed) -> bytes:
    buffer = io.BytesIO()
    photo(w, h, seed).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_engine_sends_previews_only_when_asked(random_weights, photo):
    backend = EngineBackend(random_weights.to_numpy(), "random", 0, 2, None)
    settings = StyleSettings(end_scale=40, min_scale=32, initial_iterations=3, iterations=2)
    item = Item(line=2, content=Path("c.png"), styles=(Path("s.png"),), settings=settings, output="c.png",
                content_size=(40, 30), id="item")

    def run(interval: float) -> list:
        inputs = ItemInputs(item, png_bytes(photo, 40, 30, 1), [png_bytes(photo, 32, 32, 2)],
                            preview_interval=interval)
        events = [event for _, event in backend.run([inputs])]
        assert isinstance(events[-1], ItemResult)
        return events

    assert not [e for e in run(0.0) if isinstance(e, ItemPreview)]  # no --web: no previews at all
    events = run(1e-6)
    previews = [e for e in events if isinstance(e, ItemPreview)]
    steps = [e for e in events if isinstance(e, Progress)]
    assert len(previews) == len(steps)  # due after every step with this interval
    assert previews[-1].version == f"{steps[-1].scale_index}.{steps[-1].iteration}"
    assert (previews[-1].of_width, previews[-1].of_height) == (steps[-1].width, steps[-1].height)
