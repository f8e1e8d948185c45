"""Synthetic images: smooth 'photos', a folder job over them, PNG bytes."""

from __future__ import annotations

import io


def make_photo(w: int, h: int, seed: int = 0):
    """A smooth synthetic RGB 'photo' (gradients plus a few shapes) as a PIL image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([x, y, 1 - x * y], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.uniform(0, 1, 3)
    noise = rng.normal(0, 0.02, base.shape)
    return Image.fromarray(np.clip((base + noise) * 255, 0, 255).astype(np.uint8), "RGB")


def folder_job(root, folder: str, count: int, size: tuple[int, int], style_seed: int, manifest: str,
               comment: str = ""):
    """``count`` photos in ``root/folder``, one style image and a one-row manifest over the folder."""
    (root / folder).mkdir()
    for i in range(count):
        make_photo(*size, i).save(root / folder / f"p{i}.png")
    make_photo(32, 32, style_seed).save(root / "style.png")
    path = root / manifest
    path.write_text(comment + f"content,style\n{folder},style.png\n")
    return root, path


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
