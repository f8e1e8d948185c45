"""The real engine behind a worker: VGG-19 loaded once on the worker's devices, items made one
group at a time. A backend is any object with ``devices``, ``device_kind``, ``memory_bytes``,
``precision`` and ``run(inputs) -> iterator of (item id, event)``; the worker makes it with the call
``factory(weights, weights_identity, gpus, threads, speed)``."""

from __future__ import annotations

import time
from typing import Any, Iterator

import ray

from batchstyle.engine.events import Progress
from batchstyle.engine.images import format_for

from .mask_inputs import job_masks
from .messages import ItemCheckpoint, ItemFailure, ItemInputs, ItemPreview, ItemResult, failure_of

PREVIEW_SIDE = 256  # longest side of a live preview, in pixels


def bytes_of(value: Any) -> bytes:
    """Style bytes sent inline or through Ray's object store."""
    return value if isinstance(value, bytes) else ray.get(value)


def _load(data: bytes, name: str, max_pixels: int | None, notes: list[str]):
    """An input image, with the warnings its decoding raised kept as notes (``name: what``)."""
    from batchstyle.engine.images import image_notes, load_image

    with image_notes() as raised:
        image = load_image(data, name=name, max_pixels=max_pixels)
    notes += [f"{name}: {note}" for note in raised]
    return image


class EngineBackend:
    """The engine on this worker's devices, with style targets cached across items."""

    def __init__(self, weights: dict, weights_identity: str, gpus: int, threads: int | None,
                 speed: dict | None = None):
        import torch

        from batchstyle.engine.stylizer import Stylizer
        from batchstyle.engine.speed import Speed
        from batchstyle.engine.weights import VGGWeights

        if threads:
            torch.set_num_threads(threads)
        if gpus and torch.cuda.is_available():
            devices = [f"cuda:{i}" for i in range(min(gpus, torch.cuda.device_count()))]
        else:  # a CPU node, or GPUs that exist only as Ray resources (tests)
            devices = ["cpu"] * max(gpus, 1)
        self.stylizer = Stylizer(VGGWeights.from_numpy(weights, source="driver", identity=weights_identity),
                                 devices, speed=Speed.from_dict(speed))
        self.devices = [str(d) for d in self.stylizer.devices]
        first = self.stylizer.devices[0]
        self.device_kind = first.type
        self.memory_bytes = torch.cuda.get_device_properties(first).total_memory if first.type == "cuda" else 0
        self.precision = self.stylizer.speed.precision

    def run(self, inputs: list[ItemInputs]) -> Iterator[tuple[str, Any]]:
        """Make the items' images, optimised together where they resume from the same point.

        Yields ``(item id, event)``. An item whose inputs cannot be read fails alone; the others go on.
        """
        groups: dict[tuple, list[tuple[ItemInputs, Any]]] = {}
        self.notes: dict[str, list[str]] = {}
        for one in inputs:
            try:
                job = self._job(one)
            except Exception as exc:  # noqa: BLE001 - a bad input fails its own item only
                yield one.item.id, failure_of(exc, one.item)
                continue
            start = None if job.checkpoint is None else job.checkpoint.scale_index
            groups.setdefault((start, one.tile), []).append((one, job))
        for (_, tile), group in groups.items():
            yield from self._run_group(group, tile)

    def _job(self, one: ItemInputs):
        from batchstyle.engine.checkpoint import Checkpoint
        from batchstyle.engine.run import Job

        item, notes = one.item, self.notes.setdefault(one.item.id, [])
        content = _load(one.content, item.content.name, one.max_pixels, notes)
        styles = [_load(bytes_of(s), p.name, one.max_pixels, notes) for s, p in zip(one.styles, item.styles)]
        masks = job_masks(one.masks, [m.name for m in item.masks], item.mask_colors) if item.masks else None
        if item.frame is not None and not item.frame.first:  # one scale from the earlier frames: no checkpoints
            return self._frame_job(one, content, styles, notes)
        checkpoint = None
        if one.checkpoint:
            try:
                checkpoint = Checkpoint.from_bytes(one.checkpoint, name=f"checkpoint of {item.output}")
            except ValueError:  # unreadable: start afresh
                checkpoint = None
            if checkpoint and not checkpoint.fits(item.settings, self.stylizer.weights.identity, content, styles,
                                                  masks=masks):
                checkpoint = None  # for other inputs, masks, settings or weights: start afresh
        return Job(content, styles, item.settings, checkpoint, masks=masks)

    def _frame_job(self, one: ItemInputs, content, styles, notes: list[str]):
        """A later frame of a clip: it starts from the earlier frames' outputs, warped by the flow."""
        from batchstyle.engine.frames import frame_job

        frame = one.item.frame
        if len(one.earlier) != len(frame.earlier):
            raise ValueError(f"frame {frame.index} of {frame.clip} came without the earlier frames it starts from "
                             f"({len(one.earlier)} of {len(frame.earlier)})")
        earlier = [(_load(seen, f"frame {k}", one.max_pixels, notes), _load(made, f"output of frame {k}", None, notes))
                   for (seen, made), k in zip(one.earlier, frame.earlier)]
        return frame_job(content, styles, one.item.settings, frame.settings, earlier)

    def _run_group(self, group: list[tuple[ItemInputs, Any]], tile: str | int | None) -> Iterator[tuple[str, Any]]:
        from batchstyle.engine.devices import is_out_of_memory
        from batchstyle.engine.images import encode_image

        started = time.time()
        items = [one.item for one, _ in group]
        run = self.stylizer.run_group([job for _, job in group], tile=tile)
        last: dict[int, Progress] = {}
        previews_sent: dict[int, float] = {}
        out_of_memory = False
        try:
            for event in run:
                index, item_id = event.item, items[event.item].id
                if isinstance(event, Progress):
                    last[index] = event
                    yield item_id, event
                    preview = _preview_due(run, index, group[index][0].preview_interval, event, previews_sent)
                    if preview is not None:
                        yield item_id, preview
                elif event.scale_index < event.scale_count - 1:
                    yield item_id, ItemCheckpoint(event.checkpoint.to_bytes())
        except Exception as exc:  # noqa: BLE001 - out of memory is a failure of the items; anything else goes on up
            if not is_out_of_memory(exc):
                raise
            out_of_memory = True
        if out_of_memory:  # free memory outside the except block: its traceback pins tensors
            tile_used, how = run.tile_in_use, "with tiles of" if run.current_tiles else "whole, at"
            del run
            yield from self._out_of_memory(items, tile_used, f"{how} {tile_used} px")
            return
        seconds = time.time() - started
        for index, item in enumerate(items):
            start, final = group[index][1].checkpoint, last.get(index)
            before = 0 if start is None else sum(s.iterations for s in run.ladder[:start.scale_index + 1])
            yield item.id, ItemResult(encode_image(run.image(index), format_for(item.output)), seconds,
                                      before + run.iterations_run(index), final.loss if final else None,
                                      final.gpu_peak_bytes if final else 0,
                                      None if start is None else start.scale_index, group_size=len(items),
                                      notes=self.notes.get(item.id, []), share=run.share_run(index))

    def _out_of_memory(self, items: list, tile_used: int, how: str) -> Iterator[tuple[str, Any]]:
        """Each item's failure, saying which tile ran out (the scheduler retries with smaller ones)."""
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        together = f" (a group of {len(items)})" if len(items) > 1 else ""
        where = "GPU memory" if self.device_kind == "cuda" else "memory"
        for item in items:
            yield item.id, ItemFailure("oom", f"out of {where} on {', '.join(self.devices)} {how}{together}",
                                       group_size=len(items), tile_used=tile_used)


def _preview_due(run, index: int, interval: float, progress: Progress, sent: dict[int, float]) -> ItemPreview | None:
    """Item ``index``'s live preview when one is due (every ``interval`` seconds, the first at once)."""
    now = time.monotonic()
    if not interval or now - sent.get(index, -interval) < interval:
        return None
    sent[index] = now
    return live_preview(run.image(index), progress)


def live_preview(image, progress: Progress) -> ItemPreview:
    """A small JPEG (at most ``PREVIEW_SIDE`` px long) of ``image``, a ``[3, H, W]`` float tensor on the CPU."""
    import torch.nn.functional as F

    from batchstyle.engine.images import encode_image

    height, width = image.shape[-2:]
    scale = min(1.0, PREVIEW_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return ItemPreview(encode_image(image, "jpeg"), image.shape[-1], image.shape[-2], width, height,
                       progress.scale_index, progress.iteration)


__all__ = ["EngineBackend", "bytes_of", "live_preview", "PREVIEW_SIDE"]
