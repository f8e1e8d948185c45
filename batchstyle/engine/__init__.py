"""The shared engine: one content image and one or more style images in, one image out.

Usable as a plain library (no Ray, no click)::

    from batchstyle.engine import stylize, load_image, save_image
    out = stylize(load_image("photo.jpg"), [load_image("painting.jpg")], end_scale=512)
    save_image(out, "out.png")

Names are imported lazily so that ``batchstyle.engine.settings`` stays cheap (no torch).
"""

from importlib import import_module

_EXPORTS = {
    "StyleSettings": "settings",
    "Stylizer": "multiscale", "StyleRun": "multiscale", "BatchRun": "multiscale", "Job": "multiscale",
    "Speed": "speed", "TargetCache": "multiscale", "stylize": "multiscale", "Progress": "events",
    "ScaleFinished": "events", "Checkpoint": "multiscale", "StopStylize": "multiscale", "DeviceError": "multiscale",
    "scale_schedule": "schedule", "size_to_fit": "schedule", "scale_ladder": "schedule", "Scale": "schedule",
    "VGGWeights": "weights", "WeightsError": "weights", "resolve_weights": "weights",
    "load_weights_file": "weights",
    "VGGFeatures": "vgg",
    "load_image": "images", "save_image": "images", "encode_image": "images", "ImageError": "images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
