"""Colour control (docs/engine.md, sections original_colors and style_colors).

``original_colors``: the result's luminance under the content's chroma, in YUV, as neural-style's
``-original_colors``. ``style_colors=match``: before the transfer, each style image's pixels go
through the affine map that gives them the content's colour mean and covariance (Gatys et al.,
"Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017, section 5), so the style's
strokes are copied in the photo's palette.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .pixels import tensor_at

_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.14713, -0.28886, 0.436],
                            [0.615, -0.51499, -0.10001]])
_YUV_TO_RGB = torch.linalg.inv(_RGB_TO_YUV)


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YUV.to(image), image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YUV_TO_RGB.to(image), image)


class OriginalColors:
    """Puts a content image's chroma under a stylized image's luminance, at whatever size it comes."""

    def __init__(self, content: Image.Image):
        self.content = content
        self._content_yuv: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if (w, h) not in self._content_yuv:
            self._content_yuv[(w, h)] = rgb_to_yuv(tensor_at(self.content, w, h))
        yuv = self._content_yuv[(w, h)].clone()
        yuv[:, 0] = rgb_to_yuv(image)[:, 0]
        return yuv_to_rgb(yuv).clamp(0, 1)


# The eigenvalues of a style's colour covariance are floored here: a colour direction in which the
# style varies by less than a standard deviation of 0.003 (0.8 of an 8-bit level: a flat or grey
# image) is not stretched as if it held colour. The paintings measured have a smallest eigenvalue of
# 8e-5 to 4e-3, so for them the floor changes nothing and the map is exact.
STYLE_COVARIANCE_FLOOR = 1e-5
DECOMPOSITIONS = ("eig", "cholesky")
_BAND_PIXELS = 1 << 20  # images go through in bands of rows of about this many pixels (bounded memory)

Statistics = tuple[np.ndarray, np.ndarray]  # the mean [3] and covariance [3, 3] of RGB pixels


def _bands(image: Image.Image) -> Iterator[np.ndarray]:
    """An RGB image's pixels in bands of whole rows, top to bottom, each float64 ``[n, 3]`` in [0, 1]."""
    rows = max(1, _BAND_PIXELS // image.width)
    for top in range(0, image.height, rows):
        band = image.crop((0, top, image.width, min(top + rows, image.height)))
        yield np.asarray(band, dtype=np.float64).reshape(-1, 3) / 255


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def color_statistics(image: Image.Image) -> Statistics:
    """The mean and (population) covariance of an image's RGB values in [0, 1], over every pixel, in
    float64: accumulated band by band, so a 150-megapixel photo needs no float copy of itself."""
    count, total, outer = 0, np.zeros(3), np.zeros((3, 3))
    for pixels in _bands(_rgb(image)):
        centred = pixels - 0.5  # moments about mid-grey: less cancellation in E[xx^T] - mean mean^T
        count, total, outer = count + len(pixels), total + centred.sum(0), outer + centred.T @ centred
    mean = total / count
    return mean + 0.5, outer / count - np.outer(mean, mean)


def _symmetric_power(values: np.ndarray, vectors: np.ndarray, power: float) -> np.ndarray:
    return (vectors * values ** power) @ vectors.T


def color_transform(style: Statistics, content: Statistics,
                    decomposition: str = "eig") -> tuple[np.ndarray, np.ndarray]:
    """``A`` and ``b`` of the map ``x' = A x + b`` that gives pixels with the style's statistics the
    content's: ``b = mu_C - A mu_S`` and ``A Sigma_S A^T = Sigma_C``, which many ``A`` satisfy.

    ``eig`` (the default): ``A = Sigma_C^(1/2) Sigma_S^(-1/2)``, symmetric square roots from the
    eigendecompositions (image analogies' colour matching); it does not depend on the order of the
    channels, nor on any rotation of the colour space. ``cholesky``: ``A = L_C L_S^-1``, lower-triangular factors, which treat R, G and B
    in turn. ``Sigma_S``'s eigenvalues are floored at :data:`STYLE_COVARIANCE_FLOOR` for flat styles.
    """
    (mu_s, cov_s), (mu_c, cov_c) = style, content
    values, vectors = np.linalg.eigh(cov_s)
    values = values.clip(min=STYLE_COVARIANCE_FLOOR)
    c_values, c_vectors = np.linalg.eigh(cov_c)
    if decomposition == "eig":
        a = _symmetric_power(c_values.clip(min=0), c_vectors, 0.5) @ _symmetric_power(values, vectors, -0.5)
    elif decomposition == "cholesky":  # a grey photo's covariance is singular: a tiny floor lets it factor
        l_c = np.linalg.cholesky(_symmetric_power(c_values.clip(min=1e-12), c_vectors, 1.0))
        a = l_c @ np.linalg.inv(np.linalg.cholesky(_symmetric_power(values, vectors, 1.0)))
    else:
        raise ValueError(f"decomposition must be one of {', '.join(DECOMPOSITIONS)}, not {decomposition!r}")
    return a, mu_c - a @ mu_s


def match_colors(style: Image.Image, content: Image.Image, decomposition: str = "eig") -> Image.Image:
    """``style_colors=match``: the style image, same size, with the content's colour mean and covariance
    (:func:`color_transform`), clipped to [0, 1] and rounded to 8 bits. Rounding moves the statistics
    by under half a level; clipping more, where the map leaves the RGB cube (for a photo of high
    contrast, a fifth to a third of a painting's pixels: docs/engine.md, section style_colors)."""
    style = _rgb(style)
    a, b = color_transform(color_statistics(style), color_statistics(content), decomposition)
    bands = [np.rint((pixels @ a.T + b).clip(0, 1) * 255).astype(np.uint8) for pixels in _bands(style)]
    return Image.fromarray(np.concatenate(bands).reshape(style.height, style.width, 3), "RGB")


__all__ = ["rgb_to_yuv", "yuv_to_rgb", "OriginalColors", "match_colors", "color_transform", "color_statistics",
           "STYLE_COVARIANCE_FLOOR", "DECOMPOSITIONS"]
