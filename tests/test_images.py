"""Image loading and saving: what users see in their files (bit depth, colour, orientation, errors)."""

from __future__ import annotations

import io
import os
import struct
import warnings

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin

from batchstyle.engine import files, images
from batchstyle.engine.files import atomic_write, is_temp_name
from batchstyle.engine.images import ImageError, encode_image, format_for, load_image, save_image, srgb_profile

# --- tiny ICC profiles built by hand (Pillow can only create sRGB, LAB and XYZ profiles) -----------

D50 = (0.9642, 1.0, 0.8249)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_)) + ascii_ + bytes(8) + bytes(3) + bytes(67)


def _icc(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 profile: 128-byte header, tag table, 4-byte aligned tag data."""
    table, data = struct.pack(">I", len(tags)), b""
    start = 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + bytes(4) + struct.pack(">I", 0x02100000)
              + device_class + space + pcs + bytes(12) + b"acsp" + bytes(28)
              + b"".join(_s15(v) for v in D50) + bytes(48))
    assert len(header) == 128
    return header + table + data


def wide_gamut_profile() -> bytes:
    """An Adobe-RGB-like matrix/TRC profile: wider primaries than sRGB (greens especially), gamma 2.2."""
    gamma = b"curv" + bytes(4) + struct.pack(">IH", 1, 563) + bytes(2)
    return _icc(b"mntr", b"RGB ", b"XYZ ", [
        (b"desc", _desc("test wide gamut RGB")), (b"wtpt", _xyz(*D50)), (b"cprt", b"text" + bytes(4) + b"none\0"),
        (b"rXYZ", _xyz(0.6097, 0.3111, 0.0195)), (b"gXYZ", _xyz(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", _xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", gamma), (b"gTRC", gamma), (b"bTRC", gamma),
    ])


def _lut8(n_in: int, n_out: int, grid: int, clut: bytes) -> bytes:
    identity = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    ramp = bytes(range(256))
    return (b"mft1" + bytes(4) + bytes([n_in, n_out, grid, 0]) + b"".join(_s15(v) for v in identity)
            + ramp * n_in + clut + ramp * n_out)


def small_gamut_cmyk_profile() -> bytes:
    """A crude CMYK printer profile (Lab PCS) whose inks are dull: saturated screen colours cannot print.

    A2B0 (CMYK -> Lab) maps the 16 ink corners to desaturated colours; B2A0 (Lab -> CMYK) is a naive
    C = 1 - R inversion through sRGB. LittleCMS does the Lab arithmetic for both tables.
    """
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    rgb = np.array([1 - c, 1 - m, 1 - y], float) * (1 - 0.85 * k)
                    corners.append(0.6 * rgb + 0.4 * rgb.mean())
    corner_img = Image.fromarray((np.array(corners) * 255 + 0.5).astype(np.uint8).reshape(1, 16, 3), "RGB")
    a2b = np.asarray(ImageCms.applyTransform(corner_img, ImageCms.buildTransform(srgb, lab, "RGB", "LAB"))).copy()
    a2b[..., 1:] ^= 0x80  # Pillow's LAB bytes hold signed a*, b*; lut8 Lab uses a +128 offset
    g = 9
    nodes = np.meshgrid(*[np.linspace(0, 255, g).round().astype(np.uint8)] * 3, indexing="ij")
    lab_nodes = np.stack([nodes[0], nodes[1] ^ 0x80, nodes[2] ^ 0x80], axis=-1)
    lab_img = Image.frombytes("LAB", (g ** 3, 1), lab_nodes.tobytes())
    rgb = np.asarray(ImageCms.applyTransform(lab_img, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))).reshape(-1, 3)
    cmyk = np.concatenate([255 - rgb, np.zeros((len(rgb), 1), np.uint8)], axis=1)
    return _icc(b"prtr", b"CMYK", b"Lab ", [
        (b"desc", _desc("test dull CMYK")), (b"wtpt", _xyz(*D50)), (b"cprt", b"text" + bytes(4) + b"none\0"),
        (b"A2B0", _lut8(4, 3, 2, a2b.tobytes())), (b"B2A0", _lut8(3, 4, g, cmyk.tobytes())),
    ])


def rgb_image(pixels) -> Image.Image:
    return Image.fromarray(np.array(pixels, dtype=np.uint8), "RGB")


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """No Pillow/decompression/resource warnings may leak out of these loads."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- saving ---------------------------------------------------------------------------------------

def test_tiff_keeps_16_bits_and_the_srgb_profile(tmp_path):
    h, w = 4, 64
    steps = torch.arange(h * w * 3, dtype=torch.float64).reshape(3, h, w) / 65535 + 0.25  # 1/65535 apart
    x = steps.to(torch.float32)
    path = tmp_path / "out.tif"
    save_image(x[None], path)  # [1, 3, H, W] as the optimiser returns it

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        icc = tif.pages[0].tags["InterColorProfile"].value
    expected = np.rint(x.permute(1, 2, 0).double().numpy() * 65535).astype(np.uint16)
    assert data.dtype == np.uint16 and data.shape == (h, w, 3)
    np.testing.assert_array_equal(data, expected)
    assert len(np.unique(data)) == h * w * 3  # 8 bits could not have kept these apart
    assert bytes(icc) == srgb_profile()
    with Image.open(path) as im:  # other programs can open it too
        assert im.size == (w, h)


def test_tiff_from_an_8_bit_image_scales_exactly(tmp_path):
    path = tmp_path / "out.tiff"
    save_image(rgb_image([[[0, 128, 255]]]), path)
    assert tifffile.imread(path).tolist() == [[[0, 128 * 257, 65535]]]


def test_png_is_floor_of_x_times_255_with_srgb_profile(tmp_path):
    x = torch.tensor([0.0, 0.5, 1.0, 1 / 255, 0.999, -0.3, 1.7, 0.2]).reshape(1, 1, 8).expand(3, 2, 8).clone()
    path = tmp_path / "out.png"
    save_image(x, path)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.info["icc_profile"] == srgb_profile()
        values = np.asarray(im)
    assert values[0, :, 0].tolist() == [0, 127, 255, 1, 254, 0, 255, 51]  # clamped, floor(x * 255)
    assert (values == values[:, :, :1]).all()


def test_numpy_input_matches_tensor_input():
    rng = np.random.default_rng(0)
    array = rng.random((5, 6, 3), dtype=np.float32)
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    assert encode_image(array, "png") == encode_image(tensor, "png")


def test_jpeg_is_444_near_lossless_with_srgb_profile(tmp_path, photo):
    source = photo(48, 32)
    path = tmp_path / "out.jpg"
    save_image(source, path)
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.info["icc_profile"] == srgb_profile()
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4, no chroma subsampling
        diff = np.abs(np.asarray(im, dtype=int) - np.asarray(source, dtype=int))
    assert diff.mean() < 4 and diff.max() < 30  # 4:2:0 at the same quality: ~8 and ~120 on this image


def test_webp_has_srgb_profile_and_is_close(tmp_path):
    y, x = np.mgrid[0:24, 0:40] / 40
    source = Image.fromarray((np.stack([x, y, 1 - x * y], axis=-1) * 255).astype(np.uint8), "RGB")
    path = tmp_path / "out.webp"
    save_image(source, path)
    with Image.open(path) as im:
        assert im.format == "WEBP" and im.info["icc_profile"] == srgb_profile()
        diff = np.abs(np.asarray(im.convert("RGB"), dtype=int) - np.asarray(source, dtype=int))
    assert diff.mean() < 2.5 and diff.max() < 12


def test_the_same_image_saved_twice_is_the_same_bytes(tmp_path, photo):
    """Users compare checksums, deduplicate and sync buckets by ETag: nothing in a file may depend on
    when or by which process it was written (the embedded profile once carried the current date)."""
    import subprocess
    import sys
    import time

    photo(20, 12).save(tmp_path / "source.png")
    names = ["a.png", "a.tif", "a.jpg", "a.webp"]
    write = (
        "import sys; from PIL import Image; from batchstyle.engine.images import save_image\n"
        "source = Image.open(sys.argv[1]).convert('RGB')\n"
        "for path in sys.argv[2:]: save_image(source, path)\n"
    )
    for folder in ("first", "second"):  # two processes, as two runs of a batch are
        paths = [str(tmp_path / folder / name) for name in names]
        subprocess.run([sys.executable, "-c", write, str(tmp_path / "source.png"), *paths], check=True)
        time.sleep(1.1)  # past the one-second resolution of any date a writer might stamp
    for name in names:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_the_embedded_profile_is_an_srgb_display_profile():
    ours = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
    assert ours.profile.xcolor_space.strip() == "RGB" and ours.profile.device_class == "mntr"
    # Converting through it to LittleCMS's own sRGB changes no pixel: it is sRGB, whatever its date.
    cube = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    converted = ImageCms.profileToProfile(cube, ours, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert np.abs(np.asarray(converted, dtype=int) - np.asarray(cube, dtype=int)).max() <= 1


def test_saved_files_load_back_unchanged(tmp_path, photo):
    source = photo(20, 12)
    for name in ("a.png", "b.tif"):
        save_image(source, tmp_path / name)
        assert np.array_equal(np.asarray(load_image(tmp_path / name)), np.asarray(source)), name


@pytest.mark.parametrize("name", ["out.gif", "out.bmp", "out", "dir.png/out"])
def test_format_for_rejects_unsupported_extensions(name):
    with pytest.raises(ImageError, match=r"\.png, \.jpg") as err:
        format_for(name)
    assert name in str(err.value)


def test_format_for_is_case_insensitive():
    assert [format_for(n) for n in ("a.PNG", "b.JPG", "c.jpeg", "d.WebP", "e.tif", "f.TIFF")] == [
        "png", "jpeg", "jpeg", "webp", "tiff", "tiff"]


def test_save_rejects_wrong_shapes_before_writing(tmp_path):
    with pytest.raises(TypeError, match=r"\[3, H, W\]"):
        save_image(torch.rand(4, 5, 5), tmp_path / "x.png")
    with pytest.raises(TypeError, match="float"):
        save_image(np.zeros((5, 5, 3), np.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# --- atomic writes --------------------------------------------------------------------------------

def test_atomic_write_creates_parents_and_replaces_whole(tmp_path):
    path = tmp_path / "a" / "b" / "out.png"
    atomic_write(path, b"x" * 1000)
    atomic_write(path, b"short")
    assert path.read_bytes() == b"short"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


def test_atomic_write_writes_a_name_as_long_as_the_file_system_allows(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("é" * ((name_max - 4) // 2) + "x" * (name_max % 2) + ".png")  # two bytes per é
    assert len(os.fsencode(path.name)) == name_max
    atomic_write(path, b"data")
    assert path.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_atomic_write_failure_leaves_neither_final_nor_temp_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        name = os.path.basename(src)
        assert name.startswith(files.TEMP_PREFIX) and is_temp_name(name)  # what the next run cleans up
        assert os.path.getsize(src) == 4  # the data was complete before the rename
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(tmp_path / "out.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_write_uses_normal_permissions(tmp_path):
    path = tmp_path / "out.png"
    atomic_write(path, b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --- loading: colour ------------------------------------------------------------------------------

def test_embedded_wide_gamut_profile_is_converted_to_srgb(tmp_path):
    raw = [[[64, 192, 64], [128, 128, 128], [255, 255, 255]]]
    rgb_image(raw).save(tmp_path / "wide.png", icc_profile=wide_gamut_profile())
    rgb_image(raw).save(tmp_path / "untagged.png")

    wide = np.asarray(load_image(tmp_path / "wide.png"), dtype=int)[0]
    assert np.asarray(load_image(tmp_path / "untagged.png")).tolist() == raw  # untagged = sRGB, untouched
    green, grey, white = wide
    # The same numbers mean a more saturated green in the wider space: sRGB needs more extreme values.
    assert green[1] - green[0] > 192 - 64 + 20 and green[0] < 40
    assert abs(grey - 128).max() <= 4 and grey.max() - grey.min() <= 2  # neutrals stay neutral
    assert white.min() >= 253


def test_srgb_tagged_files_load_unchanged(tmp_path, photo):
    source = photo(16, 16)
    source.save(tmp_path / "tagged.png", icc_profile=srgb_profile())
    assert np.array_equal(np.asarray(load_image(tmp_path / "tagged.png")), np.asarray(source))


def test_broken_embedded_profile_is_ignored_with_a_warning(tmp_path):
    rgb_image([[[10, 20, 30]]]).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 20)
    with pytest.warns(images.ImageWarning, match="bad.png"):
        im = load_image(tmp_path / "bad.png")
    assert im.getpixel((0, 0)) == (10, 20, 30)


def test_soft_proof_pulls_colours_into_the_print_gamut(tmp_path):
    proof = tmp_path / "dull.icc"
    proof.write_bytes(small_gamut_cmyk_profile())
    raw = [[[0, 0, 255], [255, 0, 0], [255, 255, 255]]]
    rgb_image(raw).save(tmp_path / "in.png")

    assert np.asarray(load_image(tmp_path / "in.png")).tolist() == raw
    blue, red, white = np.asarray(load_image(tmp_path / "in.png", proof=proof), dtype=int)[0]
    for colour in (blue, red):
        assert colour.max() - colour.min() < 200  # was 255: the dull inks cannot reach it
    assert blue[2] == blue.max() and red[0] == red.max()  # still blue and red
    assert white.min() >= 245


def test_proof_profile_must_be_cmyk(tmp_path):
    rgb_image([[[1, 2, 3]]]).save(tmp_path / "in.png")
    (tmp_path / "rgb.icc").write_bytes(wide_gamut_profile())
    with pytest.raises(ImageError, match="rgb.icc.*CMYK"):
        load_image(tmp_path / "in.png", proof=tmp_path / "rgb.icc")
    with pytest.raises(ImageError, match="missing.icc: no such file"):
        load_image(tmp_path / "in.png", proof=tmp_path / "missing.icc")


def test_cmyk_jpeg_without_profile_converts(tmp_path):
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    im = load_image(tmp_path / "cmyk.jpg")
    assert im.mode == "RGB" and im.size == (4, 3)
    r, g, b = im.getpixel((1, 1))
    assert r > 240 and g < 15 and b < 15



def test_cmyk_jpeg_with_profile_goes_through_it(tmp_path):
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(
        tmp_path / "cmyk.jpg", quality=100, icc_profile=small_gamut_cmyk_profile())
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((1, 1))
    assert 150 < r < 225 and 15 < g < 70 and 15 < b < 70  # the profile's dull red, not a naive (255, 0, 0)

# --- loading: orientation, alpha, grey, 16 bit ----------------------------------------------------

@pytest.mark.parametrize("orientation, corner", [(6, (5, 0)), (8, (0, 9))])
def test_exif_orientation_is_applied(tmp_path, orientation, corner):
    pixels = np.zeros((6, 10, 3), np.uint8)  # stored landscape, 10 wide, 6 high
    pixels[:2, :2] = (255, 0, 0)  # mark the stored top-left corner red
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=100, subsampling=0)

    im = load_image(tmp_path / "phone.jpg")
    assert im.size == (6, 10)  # portrait, as the phone was held
    r, g, b = im.getpixel(corner)  # 6 = rotate 90 cw: top-left goes top-right; 8 = ccw: bottom-left
    assert r > 200 and g < 60 and b < 60


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = [[[10, 20, 30], [200, 100, 50], [1, 2, 3]]] * 2
    rgba[..., 3] = [[0, 128, 255]] * 2
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    im = load_image(tmp_path / "rgba.png")
    assert im.mode == "RGB"
    assert np.array_equal(np.asarray(im), rgba[..., :3])


def test_grey_alpha_and_palette_transparency(tmp_path):
    Image.fromarray(np.array([[[90, 0], [180, 255]]], np.uint8), "LA").save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png")).tolist() == [[[90, 90, 90], [180, 180, 180]]]

    palette = Image.new("P", (2, 1))
    palette.putpalette([12, 34, 56, 200, 100, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    im = load_image(tmp_path / "p.png")
    assert im.mode == "RGB" and np.asarray(im).tolist() == [[[12, 34, 56], [200, 100, 0]]]


def test_grey_8_and_16_bit(tmp_path):
    Image.fromarray(np.array([[0, 100, 255]], np.uint8), "L").save(tmp_path / "l.png")
    assert np.asarray(load_image(tmp_path / "l.png")).tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]

    Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16)).save(tmp_path / "i16.png")
    with Image.open(tmp_path / "i16.png") as raw:
        assert raw.mode.startswith("I")  # really 16-bit on disk
    values = np.asarray(load_image(tmp_path / "i16.png"), dtype=int)[0]
    assert (values == values[:, :1]).all()  # R = G = B
    assert values[:, 0].tolist()[0:2] == [0, 1] and abs(values[2, 0] - 128) <= 1 and values[3, 0] == 255


def test_16_bit_rgb_tiff_is_scaled_not_clipped(tmp_path):
    tifffile.imwrite(tmp_path / "rgb16.tif", np.array([[[65535, 32768, 1000]]], np.uint16), photometric="rgb")
    r, g, b = load_image(tmp_path / "rgb16.tif").getpixel((0, 0))
    assert r == 255 and abs(g - 128) <= 1 and b in (3, 4)


# --- loading: errors, bytes, limits ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated_files_fail_naming_the_file(tmp_path, photo, name):
    buffer = io.BytesIO()
    photo(64, 48).save(buffer, "JPEG" if name.endswith("jpg") else "PNG")
    data = buffer.getvalue()
    (tmp_path / name).write_bytes(data[: len(data) * 3 // 4])  # headers intact, pixel data cut short
    with pytest.raises(ImageError, match=rf"{name}: cannot read image"):
        load_image(tmp_path / name)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_non_images_empty_and_missing_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="notes.txt: cannot read image"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(ImageError, match="empty.png: cannot read image: the file is empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="missing.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(tmp_path)  # a directory


@pytest.mark.timeout(10)  # opening the pipe for reading would wait for a writer forever
def test_pipes_and_devices_are_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match=r"pipe.jpg: cannot read image: it is a named pipe \(FIFO\), not a regular "
                                         r"file; copy the image into a regular file and name that"):
        load_image(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="/dev/zero: cannot read image: it is a character device, not a regular file"):
        images.image_size("/dev/zero")
    (tmp_path / "link.png").symlink_to("pipe.jpg")
    with pytest.raises(ImageError, match="link.png: cannot read image: it is a named pipe"):
        images.image_size(tmp_path / "link.png")


def test_bytes_input_loads_and_errors_use_the_given_name(tmp_path, photo):
    save_image(photo(20, 10), tmp_path / "a.jpg")
    im = load_image((tmp_path / "a.jpg").read_bytes(), name="x.jpg")
    assert im.mode == "RGB" and im.size == (20, 10)
    with pytest.raises(ImageError, match=r"^x\.jpg: cannot read image"):
        load_image((tmp_path / "a.jpg").read_bytes()[:300], name="x.jpg")
    with pytest.raises(ImageError, match=r"^<bytes>: cannot read image"):
        load_image(b"garbage")


def test_images_beyond_pillows_bomb_limit_load_and_the_limit_is_restored(tmp_path, monkeypatch, photo):
    """Stand-in for a 100+ megapixel print: make Pillow's limit tiny instead of the image huge."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    photo(40, 30).save(tmp_path / "big.png")  # 1200 px > 2 x 100: Pillow alone would refuse it
    photo(40, 30).save(tmp_path / "big.tif")
    for name in ("big.png", "big.tif"):
        assert load_image(tmp_path / name).size == (40, 30)  # and no DecompressionBombWarning (errors here)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_our_own_pixel_limit_refuses_absurd_sizes(tmp_path, monkeypatch, photo):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    photo(40, 30).save(tmp_path / "huge.png")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"huge.png: cannot read image: 40x30 is 0.0012 megapixels, more than "
                                         r"the limit of 0.001; downscale it, or raise the limit"):
        load_image(tmp_path / "huge.png")
    with pytest.raises(ImageError, match="huge.png: .* more than the limit"):
        images.image_size(tmp_path / "huge.png")
    assert load_image(tmp_path / "huge.png", max_pixels=1200).size == (40, 30)  # a caller that means it
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # restored on failure too


def test_a_decompression_bomb_header_is_refused_from_the_header_with_one_line(tmp_path):
    """A PNG whose header claims 60000x60000 pixels: refused before any pixel is decoded, naming the file."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    for read in (images.image_size, load_image):
        with pytest.raises(ImageError) as caught:
            read(bomb)
        assert str(caught.value).startswith(f"{bomb}: cannot read image: 60000x60000 is 3600 megapixels")


def test_image_size_reads_the_header_and_applies_the_exif_orientation(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a 40x30 sensor image shows as 30x40
    photo(40, 30).save(tmp_path / "turned.jpg", exif=exif)
    assert images.image_size(tmp_path / "turned.jpg") == (30, 40) == load_image(tmp_path / "turned.jpg").size


def test_result_is_independent_of_the_file(tmp_path, photo):
    path = tmp_path / "a.png"
    source = photo(8, 8)
    source.save(path)
    im = load_image(path)
    path.unlink()  # fully loaded: nothing lazy left to read
    assert np.array_equal(np.asarray(im.copy()), np.asarray(source))
