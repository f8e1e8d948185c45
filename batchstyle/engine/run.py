"""A run: one optimisation of a group of one or more jobs through the scale ladder (docs/engine.md, sections Scales to One run).

Iterate a :class:`Run` to optimise: one :class:`Progress` event per job and iteration, one
:class:`ScaleFinished` (carrying that job's :class:`Checkpoint`) per job and scale; every event
names its job by ``item``, its index in the group. Stop iterating whenever you like:
:meth:`Run.image` always gives a job's current averaged image.

Per scale the loop resizes the images, restarts their average, warm-starts the optimiser and steps
it through one closure that calls the scale's :class:`Objective`. The loop knows nothing of
layers, targets or tiles.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from PIL import Image
from torch.nn import functional as F

from .checkpoint import Checkpoint, fingerprint
from .colors import OriginalColors, match_colors
from .devices import peak_gpu_bytes, release_cached_memory, reset_peak_memory
from .events import Progress, ScaleFinished
from .images import image_digest, to_uint8
from .inits import initial_image
from .layers import LAYER_NAMES, layer_index, min_input_size
from .masks import MaskError, count_problems, empty_problems, greyscale, guides_at, layer_strides, shape_problems
from .memory import image_equivalents, tile_core
from .objective import Objective, group_terms
from .optim import AdamMoments
from .pixels import tensor_at
from .schedule import Scale, scale_ladder, style_size_at
from .settings import StyleSettings, group_key
from .speed import parse_tile
from .stage import Stage
from .targets import Targets
from .temporal import Temporal, frame_extras
from .tiled_objective import TiledObjective
from .tile_grid import Tile, alignment, largest_core, margin_for, tile_grid
from .vgg import VGGFeatures

if TYPE_CHECKING:
    from .stylizer import Stylizer


@dataclass
class Job:
    """What one image needs: a content image, style images, settings and, to resume, a checkpoint.

    ``masks``: where each style applies, one greyscale image per style in their order (see
    :mod:`masks`); None: the styles blend over the whole image. For a frame of a clip
    (:func:`frames.frame_job`): ``start``, the image the run starts from instead of ``settings.init``
    (resized to the first scale), and ``temporal``, earlier stylized frames warped onto this one, held
    to with ``temporal_weight`` (:mod:`temporal`). All three go into the checkpoint fingerprint."""

    content: Image.Image
    styles: Sequence[Image.Image]
    settings: StyleSettings = field(default_factory=StyleSettings)
    checkpoint: Checkpoint | None = None
    masks: Sequence[Image.Image] | None = None
    start: Image.Image | None = None
    temporal: Sequence[Temporal] = ()
    temporal_weight: float = 0.0


class _JobState:
    """What a run derives from a job: RGB images, greyscale masks, style digests and blend, fingerprint,
    random stream, and the job's latest checkpoint (the one it resumes from, then each finished scale's)."""

    def __init__(self, job: Job, weights_identity: str):
        if not job.styles:
            raise ValueError("at least one style image is needed")
        self.settings = job.settings
        self.content = job.content.convert("RGB")
        self.styles = [s.convert("RGB") for s in job.styles]
        self.style_digests = [image_digest(s) for s in self.styles]
        self.blend = job.settings.blend_weights(len(self.styles))
        self.masks = checked_masks(job.masks, self.content.size, len(self.styles))
        self.start = None if job.start is None else job.start.convert("RGB")
        self.temporal, self.temporal_weight = tuple(job.temporal), float(job.temporal_weight)
        self.fingerprint = fingerprint(self.settings, weights_identity, [self.content, *self.styles], self.masks,
                                       frame_extras(self.start, self.temporal, self.temporal_weight))
        if job.checkpoint is not None and job.checkpoint.fingerprint != self.fingerprint:
            raise ValueError("the checkpoint belongs to other images, settings or weights; start afresh")
        self.checkpoint = job.checkpoint
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        if job.checkpoint is not None:
            self.generator.set_state(job.checkpoint.rng_state)
        self.colors = OriginalColors(self.content) if self.settings.original_colors else None
        if self.settings.style_colors == "match":
            self._match_style_colors()

    def _match_style_colors(self) -> None:
        """``style_colors=match``: from here on (targets, ``init=style_stats``) the styles have the content's
        colour statistics, and new digests, so the target cache keeps them apart from the files'. The
        fingerprint stays the input files' (``Checkpoint.fits`` computes it from them)."""
        self.styles = [match_colors(style, self.content) for style in self.styles]
        self.style_digests = [image_digest(style) for style in self.styles]

    def initial_image(self, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        if self.start is not None:
            return tensor_at(self.start, *size)
        return initial_image(self.settings, self.content, self.styles, self.blend, size, generator)

    @property
    def regions(self) -> int:
        """The number of masked regions (0 without masks): jobs of a group have the same."""
        return len(self.masks) if self.masks else 0

    def guides(self, size: tuple[int, int], layers: Sequence[str], model: VGGFeatures) -> list[torch.Tensor]:
        """The regions' guides ``[1, R, h, w]`` at each of ``layers`` for the content at ``size``, each on
        its layer's device."""
        arrays = guides_at(self.masks, size, [stride for _, stride in layer_strides(layers)])
        return [torch.from_numpy(a)[None].to(model.device_of(name)) for a, name in zip(arrays, layers)]

    def check_fits(self, ladder: Sequence[Scale]) -> None:
        """Fail now, not after an hour, if an image is too small for the deepest layer at some scale.

        The ladder leaves out the scales at which the content is too thin, so only its end scale can be."""
        s = self.settings
        full = max(layer_index(n) for n in s.content_layers + s.style_layers)
        deepest_style = max(layer_index(n) for n in s.style_layers)
        content_need, need = min_input_size(full), min_input_size(deepest_style)
        for scale in ladder:
            if min(scale.size) < content_need:
                raise ValueError(f"the content image is {scale.width}x{scale.height} at scale {scale.long_side}, "
                                 f"but layer {LAYER_NAMES[full]} needs at least {content_need}x{content_need}; "
                                 f"raise end_scale or crop the image")
            for k, style in enumerate(self.styles, 1):
                sw, sh = style_size_at(style.size, scale.long_side, s)
                if min(sw, sh) < need:
                    raise ValueError(f"style image {k} is {sw}x{sh} at scale {scale.long_side}, but layer "
                                     f"{LAYER_NAMES[deepest_style]} needs at least {need}x{need}; use a larger "
                                     f"style image, style_scale or style_size")


def checked_masks(masks: Sequence[Image.Image] | None, content_size: tuple[int, int],
                  styles: int) -> list[Image.Image] | None:
    """The masks in greyscale, or :class:`MaskError` if their number or shape does not fit, or one is empty."""
    if not masks:
        return None
    grey = [greyscale(mask) for mask in masks]
    problems = (count_problems(len(grey), None, styles) or shape_problems(content_size, [m.size for m in grey])
                or empty_problems(grey))
    if problems:
        raise MaskError("; ".join(problems))
    return grey


def _check_group(jobs: Sequence[_JobState], ladder: Sequence[Scale]) -> None:
    """Jobs optimised together share the content size at every scale, the loop settings and the start."""
    key = group_key(jobs[0].settings, [scale.size for scale in ladder], jobs[0].regions)
    for k, job in enumerate(jobs[1:], 2):
        other = group_key(job.settings, [scale.size for scale in scale_ladder(job.content.size, job.settings)],
                          job.regions)
        if key is None or other != key:
            raise ValueError(f"job {k} cannot share a group with job 1: jobs optimised together need Adam, the "
                             "same content size at every scale, the same loop settings and as many masks")
    if len({None if job.checkpoint is None else job.checkpoint.scale_index for job in jobs}) > 1:
        raise ValueError("the jobs of a group must all resume from the same scale or all start afresh")


class Run:
    """One optimisation of a group of one or more jobs. Iterate it for events.

    All jobs share the content size at every scale and the loop settings (see
    :func:`settings.group_key`); their weights, styles, seeds and inits may differ. Each job has its
    own loss, Adam moments, average and random stream, so its result is the one it would get alone
    (up to float rounding of the convolutions over the group). Progress and checkpoints are per job.
    """

    def __init__(self, stylizer: "Stylizer", jobs: Sequence[Job], tile: str | int | None = None):
        if not jobs:
            raise ValueError("a group needs at least one job")
        self.stylizer = stylizer
        self.tile = stylizer.speed.tile if tile is None else parse_tile(tile)
        self._jobs = [_JobState(job, stylizer.weights.identity) for job in jobs]
        self.settings = self._jobs[0].settings
        self.ladder = scale_ladder(self._jobs[0].content.size, self.settings)
        _check_group(self._jobs, self.ladder)
        for job in self._jobs:
            job.check_fits(self.ladder)
        s = self.settings
        self.layers = tuple(dict.fromkeys(s.content_layers + s.style_layers))
        indices = [layer_index(name) for name in self.layers]
        self.margin, self.align = margin_for(indices), alignment(indices)
        self.model = stylizer.features(self.layers, s.pooling)
        self.forward = stylizer.iteration_forward(self.model)
        self.targets = Targets(self.model, stylizer.target_cache, stylizer.autocast, stylizer.memory_format,
                               stylizer.speed.precision)
        self._stage: Stage | None = None
        self._events: Iterator | None = None
        self._plan: tuple[int, list[Tile] | None] = (0, None)  # the current scale and its tiles
        self._scale_runs: list[list[int]] = [[] for _ in self._jobs]  # per job: the iterations of each scale ended
        self._first_scale = 0  # the scale this run starts at (after the checkpoint it resumes from)

    @property
    def total_iterations(self) -> int:
        return sum(scale.iterations for scale in self.ladder)

    def scales_run(self, index: int = 0) -> list[tuple[Scale, int]]:
        """Each scale job ``index`` has ended in this run, with the iterations it ran there (fewer than
        the scale's where a schedule ended it early; none of the scales before the checkpoint it resumed
        from)."""
        return list(zip(self.ladder[self._first_scale:], self._scale_runs[index]))

    def iterations_run(self, index: int = 0) -> int:
        """The iterations job ``index`` ran in the scales it has ended in this run."""
        return sum(self._scale_runs[index])

    def units_run(self, index: int = 0) -> int:
        """The pixel-iterations job ``index`` ran in the scales it has ended in this run."""
        return sum(scale.width * scale.height * iterations for scale, iterations in self.scales_run(index))

    def share_run(self, index: int = 0) -> float:
        """The pixel-iterations job ``index`` ran, as a share of the most its scales could run (1 for
        the fixed schedule)."""
        cap = sum(scale.units for scale in self.ladder[self._first_scale:])
        return self.units_run(index) / cap if cap else 1.0

    def __iter__(self) -> Iterator[Progress | ScaleFinished]:
        if self._events is None:
            self._events = self._optimise()
        return self._events

    def checkpoint_of(self, index: int) -> Checkpoint | None:
        """Job ``index``'s checkpoint at the end of the last finished scale (or the one it resumed from)."""
        return self._jobs[index].checkpoint

    def image(self, index: int = 0) -> torch.Tensor:
        """Job ``index``'s current averaged image, ``[3, H, W]`` in [0, 1] on the CPU."""
        current = self._current()[index:index + 1]
        out = current.detach().clamp(0, 1).to("cpu", torch.float32).contiguous()
        colors = self._jobs[index].colors
        return (colors(out) if colors is not None else out)[0]

    def pil(self, index: int = 0) -> Image.Image:
        return Image.fromarray(to_uint8(self.image(index)), "RGB")

    def evaluate(self) -> list[float]:
        """Each job's loss for its current averaged image at the current scale, in float32."""
        if self._stage is None:
            raise RuntimeError("evaluate() needs a run that has optimised at least one iteration")
        x = self._stage.image().detach().to(self.model.devices[0])
        return self._stage.whole.evaluate(x.contiguous(memory_format=self.stylizer.memory_format)).tolist()

    def objective(self, k: int) -> Objective:
        """What the loop minimises at scale ``k``: each job's weighted loss against its targets there,
        evaluated tile by tile where the ``tile`` option asks for it (:meth:`tiles`)."""
        scale, first = self.ladder[k], self.model.devices[0]
        tiles = self.tiles(scale.size, image_equivalents(len(self._jobs), self._jobs[0].regions))
        self._plan = (k, tiles)
        content = torch.cat([tensor_at(job.content, *scale.size) for job in self._jobs]).to(first)
        content = self.targets.content(content.contiguous(memory_format=self.stylizer.memory_format),
                                       self.settings.content_layers, tiles)
        styles = [[self._style_target(image, digest, scale.long_side, job.settings)
                   for image, digest in zip(job.styles, job.style_digests)] for job in self._jobs]
        guides = None if not self._jobs[0].masks else [job.guides(scale.size, self.settings.style_layers, self.model)
                                                        for job in self._jobs]
        terms = group_terms(self._jobs, content, styles, self.model, guides, scale.size)
        if tiles is None:
            return Objective(self.model, terms, self.layers, forward=self.forward, autocast=self.stylizer.autocast)
        return TiledObjective(self.model, terms, self.layers, tiles, forward=self.forward,
                              autocast=self.stylizer.autocast)

    def tiles(self, size: tuple[int, int], images: float = 1) -> list[Tile] | None:
        """The tiles for ``images`` images of ``size`` (width, height), or None for the whole image
        (masked images count as more than one: :func:`memory.image_equivalents`)."""
        width, height = size
        core = tile_core(self.tile, width, height, images, self.stylizer.speed.precision, self.model.devices,
                         self.margin, self.align)
        tiles = None if core is None else tile_grid(height, width, core, self.margin, self.align)
        return tiles if tiles is not None and len(tiles) > 1 else None

    def _style_target(self, image: Image.Image, digest: str, long_side: int, settings: StyleSettings) -> list:
        size = style_size_at(image.size, long_side, settings)
        return self.targets.style(image, digest, size, settings, self.tiles(size))

    @property
    def current_tiles(self) -> list[Tile] | None:
        """The tiles of the scale being prepared or optimised, or None while it runs whole."""
        return self._plan[1]

    @property
    def tile_in_use(self) -> int:
        """The longest tile core of the current scale, or its long side when it runs whole, in px."""
        k, tiles = self._plan
        return largest_core(tiles) if tiles else self.ladder[k].long_side

    def _current(self) -> torch.Tensor:
        if self._stage is not None:
            return self._stage.image()
        if self._jobs[0].checkpoint is not None:
            return torch.cat([job.checkpoint.image for job in self._jobs])
        return self._initial_images(fresh=True)  # not started: what it will start from

    def _initial_images(self, fresh: bool = False) -> torch.Tensor:
        """The images at the first scale, drawn from the jobs' random streams (or from fresh ones)."""
        return torch.cat([job.initial_image(self.ladder[0].size, torch.Generator().manual_seed(job.settings.seed)
                                            if fresh else job.generator) for job in self._jobs])

    def _start(self) -> tuple[int, torch.Tensor, list[AdamMoments] | None]:
        """The first scale to optimise, the images to start it from, and each job's Adam moments to warm-start with."""
        first = self.model.devices[0]
        resumed = [job.checkpoint for job in self._jobs]
        if resumed[0] is None:
            return 0, self._initial_images().to(first), None
        images = torch.cat([c.image for c in resumed]).to(first)
        moments = None if resumed[0].adam is None else [c.adam for c in resumed]
        return resumed[0].scale_index + 1, images, moments

    def _begin_scale(self, k: int, images: torch.Tensor, moments: list[AdamMoments] | None) -> Stage:
        """The previous scale's images resized (bicubic, clamped) to scale ``k``, with its objective and optimiser."""
        devices, (w, h) = self.model.devices, self.ladder[k].size
        self._stage = None  # let the previous scale's targets and optimiser go first
        release_cached_memory(devices)
        x = F.interpolate(images.detach(), (h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        x = x.contiguous(memory_format=self.stylizer.memory_format)
        self._stage = Stage(x, self.objective(k), [job.settings for job in self._jobs], moments,
                            self.ladder[k].iterations, last=k == len(self.ladder) - 1)
        release_cached_memory(devices)
        return self._stage

    def _finish_scale(self, k: int, stage: Stage) -> tuple[torch.Tensor, list[AdamMoments] | None]:
        """Each job's checkpoint at the end of scale ``k``; the images and moments the next scale starts from."""
        images, moments = stage.finish()
        for j, job in enumerate(self._jobs):
            job.checkpoint = Checkpoint(k, len(self.ladder), images[j:j + 1].to("cpu", copy=True).contiguous(),
                                        None if moments is None else moments[j].on_cpu(), job.generator.get_state(),
                                        job.fingerprint)
        return images, moments

    def _optimise(self) -> Iterator[Progress | ScaleFinished]:
        devices, n = self.model.devices, len(self.ladder)
        reset_peak_memory(devices)
        start, images, moments = self._start()
        self._first_scale = start
        t0 = time.time()
        for k in range(start, n):
            scale = self.ladder[k]
            stage = self._begin_scale(k, images, moments)
            yield from self._iterations(k, stage, t0)
            images, moments = self._finish_scale(k, stage)
            for j, job in enumerate(self._jobs):
                yield ScaleFinished(k, n, scale.width, scale.height, job.checkpoint, j)

    def _iterations(self, k: int, stage: Stage, t0: float) -> Iterator[Progress]:
        """Scale ``k``'s iterations: one :class:`Progress` per going job and step. A job's last one at
        the scale has ``iteration == iterations``: where its schedule ended it early, that is where it
        stopped, not the cap."""
        scale, n, devices = self.ladder[k], len(self.ladder), self.model.devices
        loss_every = self.stylizer.speed.loss_every
        values = [math.nan] * len(self._jobs)
        before = [self.units_run(j) for j in range(len(self._jobs))]  # pixel-iterations of the earlier scales
        i = 0
        while stage.going:
            i += 1
            going = list(stage.going)
            losses = stage.step()
            ended = stage.pace(i)
            if i == 1 or ended or i % loss_every == 0:
                for m, value in zip(going, losses.detach().float().tolist()):
                    values[m] = value
            now, peak = time.time(), peak_gpu_bytes(devices)
            for j in going:
                if j in ended:
                    self._scale_runs[j].append(i)
                yield Progress(k, n, scale.width, scale.height, i, i if j in ended else scale.iterations, values[j],
                               now - t0, peak, now, j, before[j] + i * scale.width * scale.height)

__all__ = ["Run", "Job"]
