"""The shared engine: one content image and one or more style images in, one image out.

Usable as a plain library (no Ray, no click)::

    from batchstyle.engine import stylize, load_image, save_image
    out = stylize(load_image("photo.jpg"), [load_image("painting.jpg")], end_scale=512)
    save_image(out, "out.png")

A :class:`Stylizer` holds VGG-19 on its devices; ``stylizer.run(...)`` (one job) or
``stylizer.run_group(jobs)`` gives a :class:`Run`, which optimises through the scale ladder as you
iterate its events. At each scale the run minimises an :class:`Objective`: each image's loss and
its gradient.

Modules, one job each: ``stylizer`` (the model on its devices, ``stylize``), ``run`` (the
multi-scale loop, ``Job``), ``objective`` (the weighted loss terms), ``losses`` (each term's
formula), ``targets`` (content activations, cached style statistics), ``optim`` (averaging, Adam's
warm start), ``inits`` (the first image), ``colors`` (``original_colors``, ``style_colors``),
``checkpoint`` (the file format), ``devices``, ``vgg``, ``weights``, ``images``, ``files`` (atomic
writes), ``pixels``, ``events``, ``speed``, ``schedule``, ``settings``, ``layers``; for clips ``frames``
(each frame's job, ``stylize_clip``), ``flow`` (optical flow, warps, confidences), ``temporal`` (the
temporal loss) and ``clip_settings``.

Names are imported lazily so that ``batchstyle.engine.settings`` stays cheap (no torch).
"""

from importlib import import_module

_EXPORTS = {
    "StyleSettings": "settings",
    "Stylizer": "stylizer", "stylize": "stylizer", "StopStylize": "stylizer",
    "Run": "run", "Job": "run", "Objective": "objective", "TargetCache": "targets",
    "Checkpoint": "checkpoint", "DeviceError": "devices", "Speed": "speed",
    "Progress": "events", "ScaleFinished": "events",
    "scale_schedule": "schedule", "size_to_fit": "schedule", "scale_ladder": "schedule", "Scale": "schedule",
    "VGGWeights": "weights", "WeightsError": "weights", "resolve_weights": "weights",
    "load_weights_file": "weights",
    "VGGFeatures": "vgg",
    "load_image": "images", "save_image": "images", "encode_image": "images", "ImageError": "images",
    "ClipSettings": "clip_settings", "frame_job": "frames", "stylize_clip": "frames", "Temporal": "temporal",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
