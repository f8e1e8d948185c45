"""Loading and saving images: colour-managed, orientation-aware, never half-written.

Loading turns whatever a user throws at us (phone JPEGs with EXIF rotation, Adobe RGB or CMYK
files with embedded ICC profiles, 16-bit PNG/TIFF, palette or alpha images) into one predictable
thing: a fully decoded 8-bit sRGB :class:`PIL.Image.Image`. The optimiser works in sRGB, so any
other colour space must be converted here, once, rather than silently mis-read.

Saving writes 8-bit PNG/JPEG/WebP or 16-bit TIFF, always with the sRGB profile embedded so other
programs show the colours we meant. Encoding (:func:`encode_image`) is separate from writing
(:func:`files.atomic_write`) because workers on other machines return encoded bytes and the driver
writes them; writing goes through a temporary file so an interrupted run never leaves a truncated
image under the final name (which a resumed run would take for finished work).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import struct
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from .files import atomic_write, file_kind, not_regular

__all__ = [
    "ImageError", "ImageWarning", "MAX_PIXELS", "load_image", "image_size", "image_notes", "srgb_profile",
    "encode_image", "save_image", "format_for", "image_digest", "SUPPORTED_EXTENSIONS",
]

#: Output formats by file extension.
SUPPORTED_EXTENSIONS: Mapping[str, str] = MappingProxyType({
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff",
})

_FORMATS = ("png", "jpeg", "webp", "tiff")

#: Largest image :func:`load_image` accepts by default, in pixels: 250 megapixels, room for a 150 MP
#: medium-format photo or a stitched panorama (750 MB as 8-bit RGB, several GB while it is converted).
#: Pillow's own default (about 89 MP warns, 179 MP fails, with a traceback) is too small for such
#: files; this limit still refuses headers that claim absurd sizes (decompression bombs). Callers
#: that mean it pass a larger ``max_pixels``.
MAX_PIXELS = 250_000_000

# Pillow's decompression-bomb limit is one process-wide setting (Image.MAX_IMAGE_PIXELS) with no
# per-call override, so load_image lifts it only while it opens and decodes a file and applies
# MAX_PIXELS itself. This lock keeps concurrent loads from restoring each other's value wrongly.
_PILLOW_LIMIT_LOCK = threading.Lock()

_JPEG_QUALITY = 95
_WEBP_QUALITY = 95
_TIFF_DPI = 72
_EXIF_ORIENTATION = 0x0112

# What Pillow raises for damaged or truncated data (it is not consistent across formats).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class ImageError(ValueError):
    """An image cannot be read or written; the message names the file and what is wrong."""


class ImageWarning(UserWarning):
    """Something in an image file was unusable and ignored (e.g. a broken embedded ICC profile)."""


# --- profiles -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """The sRGB ICC profile we embed in every output and treat as "already sRGB" on input.

    A fixed file (``srgb.icc`` beside this module: LittleCMS's built-in sRGB, with its creation date
    set once to 2026-12-02) rather than one built at write time, which would carry the current date:
    the same pixels give the same bytes on every day and with every LittleCMS, and :func:`load_image`
    recognises our own files by these bytes and skips a needless conversion.
    """
    return resources.files(__package__).joinpath("srgb.icc").read_bytes()


@functools.lru_cache(maxsize=1)
def _srgb_cms_profile() -> ImageCms.ImageCmsProfile:
    """Parsed form of :func:`srgb_profile`, for building transforms."""
    return ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))


def _proof_profile(proof: str | os.PathLike) -> ImageCms.ImageCmsProfile:
    """Open a soft-proofing profile, insisting on a CMYK (print) profile so the user's mistake is named."""
    path = os.fspath(proof)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file")
    try:
        profile = ImageCms.getOpenProfile(path)
    except (ImageCms.PyCMSError, OSError) as exc:
        raise ImageError(f"{path}: cannot read ICC profile: {exc}") from exc
    space = profile.profile.xcolor_space.strip()
    if space != "CMYK":
        raise ImageError(f"{path}: proofing needs a CMYK printer profile, but this profile is {space}")
    return profile


# --- loading --------------------------------------------------------------------------------------

def load_image(
    source: str | os.PathLike | bytes,
    name: str | None = None,
    proof: str | os.PathLike | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Read an image file (path or encoded bytes) as a fully loaded 8-bit sRGB RGB image.

    ``name`` labels error messages when ``source`` is bytes (which arrive from other machines).
    Embedded ICC profiles are honoured (untagged files are taken as sRGB), EXIF orientation is
    applied, alpha is dropped (not composited: the optimiser should see the stored colours), and
    16-bit or float data is scaled, not clipped. ``proof`` optionally names a CMYK ICC profile: the
    image then goes through that printer's gamut (source -> CMYK -> sRGB) so the stylized result
    only uses colours the print can show. ``max_pixels`` (default :data:`MAX_PIXELS`) refuses larger
    images before decoding them. Raises :class:`ImageError` for anything unreadable.
    """
    name = _name_of(source, name)
    proof_profile = _proof_profile(proof) if proof is not None else None
    with _opened(source, name, max_pixels or MAX_PIXELS) as im:
        icc = im.info.get("icc_profile")
        im = _upright(im)
        im = _to_8bit(im, name)
        return _to_srgb(im, icc, proof_profile, name)


def image_size(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int | None = None) -> tuple[int, int]:
    """An image file's ``(width, height)`` as it will load (EXIF orientation applied), from its header only.

    Raises :class:`ImageError` naming the file for anything :func:`load_image` would refuse at the
    header: no image, an unreadable or empty file, more than ``max_pixels``.
    """
    name = _name_of(source, name)
    with _binary_file(source, name) as fp:
        im = _open_header(fp, name, max_pixels or MAX_PIXELS)
        with im:
            try:
                turned = im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
            except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
                turned = False
            return (im.height, im.width) if turned else im.size


@contextlib.contextmanager
def image_notes() -> Iterator[list[str]]:
    """Collect the warnings that reading images raises (a broken profile, odd TIFF tags) as one-line
    notes, each once, instead of letting them print. The list is filled when the block ends."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield notes
        finally:
            for warning in caught:
                text = " ".join(str(warning.message).split())
                if text not in notes:
                    notes.append(text)


def _name_of(source: str | os.PathLike | bytes, name: str | None) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name or "<bytes>"
    return name or os.fspath(source)


@contextlib.contextmanager
def _opened(source: str | os.PathLike | bytes, name: str, max_pixels: int) -> Iterator[Image.Image]:
    """Open and fully decode ``source``, turning every way that can fail into an :class:`ImageError`.

    Decoding happens here (``load()``), not lazily later, so a truncated file fails with its name
    instead of deep inside the optimiser. Pillow's LOAD_TRUNCATED_IMAGES is deliberately left alone.
    """
    with _binary_file(source, name) as fp:
        im = _open_header(fp, name, max_pixels)
        try:
            with _pillow_pixel_limit_lifted():
                im.load()
        except _DECODE_ERRORS as exc:
            im.close()
            raise ImageError(f"{name}: cannot read image: {exc}") from exc
        try:
            yield im
        finally:
            im.close()


def _open_header(fp: BinaryIO, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """Pillow's open (the header only), with our pixel limit instead of Pillow's and errors that name the file."""
    with _pillow_pixel_limit_lifted():
        try:
            im = Image.open(fp)
        except Image.UnidentifiedImageError as exc:
            raise ImageError(f"{name}: cannot read image: not an image file, or a format Pillow cannot read") from exc
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{name}: cannot read image: {exc}") from exc
    pixels = im.width * im.height
    if pixels > max_pixels:
        im.close()
        raise ImageError(f"{name}: cannot read image: {im.width}x{im.height} is {pixels / 1e6:.4g} megapixels, "
                         f"more than the limit of {max_pixels / 1e6:.4g}; downscale it, or raise the limit if you "
                         f"mean it")
    return im


@contextlib.contextmanager
def _binary_file(source: str | os.PathLike | bytes, name: str) -> Iterator[BinaryIO]:
    """A readable binary stream for a path or for bytes, with missing, empty and special files named
    clearly (a named pipe or a device is never opened: reading one could wait forever or never end)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"{name}: cannot read image: the data is empty")
        yield io.BytesIO(source)
        return
    try:
        kind = file_kind(source)
        if kind:
            raise ImageError(f"{name}: cannot read image: it {not_regular(kind)}")
        fp = open(source, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read image: {exc.strerror or exc}") from exc
    with fp:
        if os.fstat(fp.fileno()).st_size == 0:
            raise ImageError(f"{name}: cannot read image: the file is empty")
        yield fp


@contextlib.contextmanager
def _pillow_pixel_limit_lifted() -> Iterator[None]:
    """Switch off Pillow's decompression-bomb limit while one of our loads runs; MAX_PIXELS applies instead.

    Why a temporary global change: Pillow only has the process-wide Image.MAX_IMAGE_PIXELS (warning
    above ~89 MP, error above ~179 MP), checked both when opening and, for TIFF, when decoding; there
    is no per-call allowance. Permanently raising it would change every other Pillow user in the
    process. So we lift it for the duration of one open+decode, under a lock, and restore the caller's
    value afterwards. The price: loads in one process are serialised, and another thread calling
    Pillow directly during that window skips Pillow's check.
    """
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation so phone photos are not processed sideways.

    A damaged EXIF block is ignored rather than fatal: the pixels are still fine.
    """
    try:
        if im.getexif().get(_EXIF_ORIENTATION, 1) == 1:
            return im  # nothing to do; exif_transpose would still copy the whole image
        return ImageOps.exif_transpose(im) or im
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return im


def _to_8bit(im: Image.Image, name: str) -> Image.Image:
    """Reduce any Pillow mode to 8-bit L, RGB or CMYK (the modes ICC transforms take), dropping alpha.

    Alpha is dropped, not composited onto a background: the colours stored under transparent pixels
    are what the user's image holds, and compositing would invent a background colour. 16-bit and
    32-bit integer grey is scaled (Pillow's own convert clips everything above 255 to white); float
    grey is taken as 0..1, the convention of float TIFFs.
    """
    mode = im.mode
    if mode in ("L", "RGB", "CMYK"):
        return im
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64))
        return Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), "L")
    if mode in ("LA", "La"):
        return im.getchannel("L")
    try:
        return im.convert("RGB")  # RGBA, RGBX, P, PA, 1, YCbCr, HSV, ...
    except ValueError as exc:
        raise ImageError(f"{name}: cannot read image: unsupported colour mode {mode}") from exc


def _to_srgb(
    im: Image.Image, icc: bytes | None, proof: ImageCms.ImageCmsProfile | None, name: str
) -> Image.Image:
    """Convert an 8-bit L/RGB/CMYK image to sRGB RGB, through its embedded profile and the proof profile.

    Untagged images are assumed to be sRGB (what browsers do). Our own sRGB profile is recognised by
    its bytes and skips the transform, so our outputs re-load bit-exactly. A profile that LittleCMS
    cannot use (broken, or made for another colour space than the pixels) is ignored with a warning:
    the image is still useful, only its colours are less exact.
    """
    source = _embedded_profile(im, icc, name)
    if source is None and proof is None:
        return im.convert("RGB")
    if source is None:
        im, source = im.convert("RGB"), _srgb_cms_profile()
    intent = ImageCms.Intent.PERCEPTUAL
    if proof is not None:
        # Into the printer's gamut the way a print shop would (perceptual), then show what the print
        # looks like on screen (relative colorimetric: paper white becomes screen white).
        try:
            im = ImageCms.profileToProfile(im, source, proof, renderingIntent=intent, outputMode="CMYK")
        except ImageCms.PyCMSError as exc:
            raise ImageError(f"{name}: cannot soft-proof with the given profile: {exc}") from exc
        source, intent = proof, ImageCms.Intent.RELATIVE_COLORIMETRIC
    return ImageCms.profileToProfile(im, source, _srgb_cms_profile(), renderingIntent=intent, outputMode="RGB")


def _embedded_profile(im: Image.Image, icc: bytes | None, name: str) -> ImageCms.ImageCmsProfile | None:
    """The usable embedded profile, or None when the image is untagged, already sRGB, or the profile is unusable."""
    if not icc or icc == srgb_profile():
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # Building the transform proves the profile fits the pixels (an RGB profile on a grey image does not).
        ImageCms.buildTransform(profile, _srgb_cms_profile(), im.mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        warnings.warn(
            f"{name}: ignoring its embedded ICC profile ({exc}); assuming sRGB", ImageWarning, stacklevel=4
        )
        return None
    return profile


# --- saving ---------------------------------------------------------------------------------------

def format_for(path_or_name: str | os.PathLike) -> str:
    """The output format ("png", "jpeg", "webp" or "tiff") implied by a file name's extension.

    Checked before any work is done, so a typo in an output name fails at once, not after an hour.
    """
    suffix = Path(path_or_name).suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS:
        return SUPPORTED_EXTENSIONS[suffix]
    supported = ", ".join(SUPPORTED_EXTENSIONS)
    what = f"unsupported image format {suffix!r}" if suffix else "no file extension to choose the image format"
    raise ImageError(f"{os.fspath(path_or_name)}: {what}; use one of {supported}")


def save_image(image: Any, path: str | os.PathLike) -> None:
    """Encode ``image`` in the format its extension names and write it atomically (see :func:`encode_image`)."""
    atomic_write(path, encode_image(image, format_for(path)))


def encode_image(image: Any, fmt: str) -> bytes:
    """Encode an image as PNG, JPEG, WebP (8-bit) or TIFF (16 bits per channel), sRGB profile embedded.

    ``image`` is a PIL image, a float tensor ``[3, H, W]`` / ``[1, 3, H, W]`` or a float array
    ``H x W x 3``, with values in [0, 1] (others are clamped). 8-bit values are ``floor(x * 255)``,
    as torchvision's ``to_pil_image`` does, so results match the reference implementation; TIFF
    keeps ``round(x * 65535)``, the precision the optimiser actually produced.
    """
    if fmt not in _FORMATS:
        raise ImageError(f"unsupported image format {fmt!r}; use one of {', '.join(_FORMATS)}")
    if fmt == "tiff":
        return _encode_tiff(_to_uint16(image))
    options: dict[str, Any] = {"icc_profile": srgb_profile()}
    if fmt == "jpeg":
        options.update(quality=_JPEG_QUALITY, subsampling=0)  # 4:4:4: stylized detail lives in the colour
    elif fmt == "webp":
        options.update(quality=_WEBP_QUALITY)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buffer, fmt.upper(), **options)
    return buffer.getvalue()


def _encode_tiff(pixels: np.ndarray) -> bytes:
    """16-bit RGB TIFF, zlib-compressed (lossless, and roughly halves these large files), sRGB-tagged."""
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, pixels, photometric="rgb", compression="zlib", resolution=(_TIFF_DPI, _TIFF_DPI),
        iccprofile=srgb_profile(), metadata=None, software="batchstyle",
    )
    return buffer.getvalue()


def _is_tensor(image: Any) -> bool:
    """A torch tensor? (torch is only looked at when the caller has already imported it.)"""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def _float_pixels(image: Any) -> np.ndarray:
    """The ``H x W x 3`` float pixels of a tensor or array, validated, clamped to [0, 1], NaN as 0.

    Tensors become arrays of the same precision, so float32 arithmetic below matches torch's.
    """
    if _is_tensor(image):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3 or not t.is_floating_point():
            raise TypeError(
                f"expected a float tensor of shape [3, H, W] or [1, 3, H, W], got {t.dtype} {list(image.shape)}"
            )
        torch = sys.modules["torch"]
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"expected a float array of shape H x W x 3, got {image.dtype} {image.shape}")
        a = image if image.dtype in (np.float32, np.float64) else image.astype(np.float32)
        return np.clip(np.nan_to_num(a, nan=0.0), 0, 1)
    raise TypeError(f"expected a PIL image, float tensor or float array, got {type(image).__name__}")


def to_uint8(image: Any) -> np.ndarray:
    """8-bit ``H x W x 3`` pixels: ``floor(x * 255)`` in the input's own float precision, like torchvision."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    x = _float_pixels(image)
    return np.ascontiguousarray(np.floor(x * x.dtype.type(255)).astype(np.uint8))


def _to_uint16(image: Any) -> np.ndarray:
    """16-bit ``H x W x 3`` pixels: ``round(x * 65535)``; 8-bit PIL images are scaled exactly (x 257)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).astype(np.uint16) * 257
    x = _float_pixels(image)
    return np.rint(np.asarray(x, dtype=np.float64) * 65535).astype(np.uint16)


def image_digest(image: Image.Image) -> str:
    """A hash of a PIL image's mode, size and pixels."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
