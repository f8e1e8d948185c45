"""A fast stand-in for the engine behind a worker, for scheduler and CLI tests and the dispatch
benchmark: ``BatchOptions(backend=Fake("iters=20,sleep=0.01"))`` or ``support/fake_batchstyle.py``.

Options ``iters=20,sleep=0.01,scales=2,die_marker=DIR,log=DIR,tiles_fit=PX``. It decodes the content
and the masks (so a bad file fails as with the engine) and returns the content, shrunk, as the
"stylized" image. Items of one call run in lockstep, as a group does. Content file names steer it: ``fail`` raises an error,
``oom`` runs out of memory on fewer than two GPUs (or in a group), unless ``tiles_fit`` is given and
the item comes with tiles of at most that many px (it then reports the tile it ran out with, 1024 px
when untiled, as the engine does), ``die`` kills this worker's process the
first time (remembered in ``die_marker``) and ``hang`` stops responding the first time. With
``log``, every start of an item leaves a file ``<id>.<group size>.<random>`` there (tests count them).
Asked for live previews (``run --web``), it sends the image fading in from grey.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

from batchstyle.batch.engine_backend import bytes_of
from batchstyle.batch.mask_inputs import job_masks
from batchstyle.batch.messages import ItemCheckpoint, ItemFailure, ItemInputs, ItemPreview, ItemResult, failure_of
from batchstyle.engine.events import Progress
from batchstyle.engine.images import encode_image, format_for, load_image


def fake_image(image, item_id: str):
    """The content, shrunk and tinted with a colour of the item's id: another id, another image."""
    from PIL import Image

    image = image.copy()
    image.thumbnail((64, 64))
    colour = tuple(int(item_id[k:k + 2], 16) for k in (0, 2, 4))
    return Image.blend(image, Image.new("RGB", image.size, colour), 0.25)


class Fake:
    """A backend factory: what ``BatchOptions.backend`` and ``main(obj={"backend": ...})`` take."""

    identity = "fake"  # stands in for the weights' identity in item ids

    def __init__(self, spec: str = ""):
        self.spec = spec

    def __call__(self, weights: Any, weights_identity: str, gpus: int, threads: int | None, speed: Any):
        return FakeBackend(self.spec, gpus)


class FakeBackend:
    def __init__(self, spec: str, gpus: int):
        options = dict(part.split("=", 1) for part in spec.split(",") if part)
        self.iters = int(options.get("iters", 10))
        self.sleep = float(options.get("sleep", 0.0))
        self.scales = int(options.get("scales", 2))
        self.die_marker = options.get("die_marker")
        self.log = options.get("log")
        self.tiles_fit = int(options.get("tiles_fit", 0))
        self.gpus = gpus
        self.devices = [f"fake:{i}" for i in range(max(gpus, 1))]
        self.device_kind = "cuda" if gpus else "cpu"
        self.memory_bytes = 80 << 30 if gpus else 0
        self.precision = "fp32"

    def run(self, inputs: list[ItemInputs]) -> Iterator[tuple[str, Any]]:
        started = time.time()
        live = []
        for one in inputs:
            try:
                live.append((one, self._decode(one)))
            except Exception as exc:  # noqa: BLE001 - as the engine: a bad input fails its own item
                yield one.item.id, failure_of(exc, one.item)
        if self.log:
            for one, _ in live:
                open(os.path.join(self.log, f"{one.item.id}.{len(live)}.{os.urandom(4).hex()}"), "w").close()
        names = " ".join(one.item.content.name.lower() for one, _ in live)
        tile = next((one.tile for one, _ in live if isinstance(one.tile, int)), None)
        tiled = bool(self.tiles_fit) and tile is not None and tile <= self.tiles_fit
        if "oom" in names and (self.gpus < 2 or len(live) > 1) and not tiled:
            used = (tile or 1024) if self.tiles_fit else 0
            for one, _ in live:
                yield one.item.id, ItemFailure("oom", "out of GPU memory on fake:0 (fake)", group_size=len(live),
                                               tile_used=used)
            return
        start = min({int(o.checkpoint.decode().split(":")[1]) + 1 if o.checkpoint else 0 for o, _ in live}, default=0)
        yield from self._iterate(live, start, names, started)
        for one, image in live:
            image = fake_image(image, one.item.id)
            yield one.item.id, ItemResult(encode_image(image, format_for(one.item.output)), time.time() - started,
                                          self.iters * self.scales, 0.0, 0, start - 1 if one.checkpoint else None,
                                          group_size=len(live))

    @staticmethod
    def _decode(one: ItemInputs):
        """The content as the engine decodes it (colour management, orientation, odd modes)."""
        image = load_image(one.content, name=one.item.content.name, max_pixels=one.max_pixels)
        for style in one.styles:
            bytes_of(style)
        if one.item.masks:  # as the engine takes them, one per style: a mask that did not arrive fails the item
            masks = job_masks(one.masks, [m.name for m in one.item.masks], one.item.mask_colors)
            if len(masks) != len(one.item.styles):
                raise ValueError(f"{one.item.content.name}: {len(masks)} masks for {len(one.item.styles)} styles")
        frame = one.item.frame
        if frame is not None:  # a later frame of a clip: the earlier frames it starts from came with it
            if len(one.earlier) != len(frame.earlier):
                raise ValueError(f"frame {frame.index}: {len(one.earlier)} earlier frames for {frame.earlier}")
            for seen, made in one.earlier:
                load_image(seen, name="earlier frame"), load_image(made, name="earlier output")
        if "fail" in one.item.content.name.lower():
            raise ValueError(f"{one.item.content.name}: fake failure for tests")
        return image

    def _iterate(self, live: list, start: int, names: str, started: float) -> Iterator[tuple[str, Any]]:
        previewed: dict[str, float] = {}
        for scale in range(start, self.scales):
            for i in range(1, self.iters + 1):
                self._maybe_die(live, names, scale, i)
                time.sleep(self.sleep)
                now = time.time()
                for one, image in live:
                    ran = ((scale - start) * self.iters + i) * image.width * image.height
                    progress = Progress(scale, self.scales, image.width, image.height, i, self.iters,
                                        1.0 / (scale * self.iters + i), now - started, 0, now, units=ran)
                    yield one.item.id, progress
                    if one.preview_interval and now - previewed.get(one.item.id, 0.0) >= one.preview_interval:
                        previewed[one.item.id] = now
                        yield one.item.id, self._preview(image, progress)
            if scale < self.scales - 1:
                for one, _ in live:
                    yield one.item.id, ItemCheckpoint(f"fake:{scale}".encode())

    def _preview(self, image, progress: Progress) -> ItemPreview:
        """The image fading in from grey as the run goes on, as a live preview."""
        from PIL import Image

        done = (progress.scale_index * self.iters + progress.iteration) / (self.scales * self.iters)
        small = Image.blend(Image.new("RGB", image.size, (128, 128, 128)), image, done)
        small.thumbnail((256, 256))
        return ItemPreview(encode_image(small, "jpeg"), small.width, small.height, image.width, image.height,
                           progress.scale_index, progress.iteration)

    def _maybe_die(self, live: list, names: str, scale: int, i: int) -> None:
        doomed = [o for o, _ in live if "die" in o.item.content.name.lower() or "hang" in o.item.content.name.lower()]
        if self.die_marker and scale == self.scales - 1 and i == self.iters // 2 and doomed:
            marker = os.path.join(self.die_marker, doomed[0].item.id)
            if not os.path.exists(marker):
                open(marker, "w").close()
                if "hang" in names:
                    time.sleep(3600)  # stuck, as a hung device would leave it
                os.kill(os.getpid(), 9)  # a real, abrupt process death mid-item
