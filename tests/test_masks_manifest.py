"""Masks in a manifest (a style per region): the ``masks`` and ``mask_colors`` columns, every way they
can be wrong (one line each, before anything runs), the notes they give, and what they change of an
item's id and group, locally and in object storage; the example batches plan as they are."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchstyle.batch.manifest import ManifestError, read_manifest
from batchstyle.batch.outdir import HashCache, open_output_dir
from batchstyle.batch.plan import ENGINE_REVISION, item_id, make_plan, planned
from batchstyle.batch.remote_files import RemotePath
from support.masks import segmentation, split_masks

ROOT = Path(__file__).resolve().parents[1]
HEADER = "content,style,masks,mask_colors,output\n"


@pytest.fixture
def job(tmp_path, photo):
    """photos/ (a.png and b.png 40x30, tall.png 30x40), two styles, masks/ (left, right, a segmentation
    in red and blue, one black everywhere) and a helper that writes a manifest."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "masks").mkdir()
    for name, size, seed in (("a.png", (40, 30), 1), ("b.png", (40, 30), 2), ("tall.png", (30, 40), 3)):
        photo(*size, seed).save(tmp_path / "photos" / name)
    photo(32, 32, 4).save(tmp_path / "starry.jpg")
    photo(32, 32, 5).save(tmp_path / "wave.png")
    split_masks(tmp_path / "masks", 40, 30)
    segmentation(tmp_path / "masks" / "seg.png", 40, 30)
    Image.new("L", (40, 30), 0).save(tmp_path / "masks" / "black.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")

    def write(rows: str, header: str = HEADER):
        path = tmp_path / "manifest.csv"
        path.write_text(header + rows)
        return path

    return tmp_path, write


def problems(path) -> list[str]:
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    return str(err.value).splitlines()


def test_masks_resolve_like_styles_and_a_segmentation_takes_css_names_or_hex(job):
    root, write = job
    items = read_manifest(write("photos/a.png,starry.jpg;wave.png,masks/left.png;masks/right.png,,one.png\n"
                                "photos/a.png,starry.jpg;wave.png,masks/seg.png,red;#0000ff,two.png\n"
                                "photos/b.png,starry.jpg,,,three.png\n"))
    assert items[0].masks == (root / "masks" / "left.png", root / "masks" / "right.png")
    assert items[0].mask_colors is None
    assert items[1].masks == (root / "masks" / "seg.png",) and items[1].mask_colors == ((255, 0, 0), (0, 0, 255))
    assert items[2].masks == () and items[2].mask_colors is None and not items[2].problem
    assert not any(item.notes for item in items)
    singular = read_manifest(write("photos/a.png,starry.jpg,masks/left.png\n", "content,style,mask\n"))
    assert singular[0].masks == (root / "masks" / "left.png",)  # one style in its region only


def test_every_problem_with_masks_is_a_line_that_says_what_to_do(job):
    root, write = job
    path = write("photos/a.png,starry.jpg;wave.png,masks/left.png;masks/nothere.png,,1.png\n"      # 2
                 "photos/a.png,starry.jpg,broken.png,,2.png\n"                                     # 3
                 "photos/a.png,starry.jpg;wave.png,masks/left.png,,3.png\n"                        # 4
                 "photos/a.png,starry.jpg,masks/left.png;masks/right.png,,4.png\n"                 # 5
                 "photos/tall.png,starry.jpg;wave.png,masks/left.png;masks/right.png,,5.png\n"     # 6
                 "photos/a.png,starry.jpg,,red,6.png\n"                                            # 7
                 "photos/a.png,starry.jpg;wave.png,masks/left.png;masks/right.png,red;blue,7.png\n"  # 8
                 "photos/a.png,starry.jpg;wave.png,masks/seg.png,red;lime,8.png\n"                 # 9
                 "photos/a.png,starry.jpg,masks/black.png,,9.png\n"                                # 10
                 "photos/a.png,starry.jpg;wave.png;starry.jpg,masks/seg.png,red;blue;lime,10.png\n"  # 11
                 "photos/a.png,starry.jpg;wave.png,masks/seg.png,red,11.png\n"                     # 12
                 "photos/a.png,starry.jpg,masks/seg.png,reddish,12.png\n"                          # 13
                 "photos/a.png,starry.jpg,masks,,13.png\n")                                        # 14
    expected = [
        (2, "mask 'masks/nothere.png' does not exist"),
        (3, "mask 'broken.png' cannot be read"),
        (4, "1 mask(s) for 2 style image(s); give one greyscale mask per style, in the order of the styles"),
        (5, "2 mask(s) for 1 style image(s)"),
        (6, "content image 'photos/tall.png' cannot be made with its masks: mask 'masks/left.png' is 40x30, not the "
            "shape of the content image (30x40); make the mask from the content image, or resize it to 30x40"),
        (7, "mask_colors is given without masks; name the colour-coded segmentation image in masks"),
        (8, "mask_colors goes with one colour-coded segmentation image, but masks names 2 files"),
        (9, "mask 'masks/seg.png' has 600 pixel(s) of colours not listed in mask_colors, such as #0000ff at x=20"),
        (10, "mask 'masks/black.png' is black everywhere, so its style would apply nowhere"),
        (11, "mask 'masks/seg.png' has no pixel of colour #00ff00 (number 3 of mask_colors)"),
        (12, "1 mask colour(s) for 2 style image(s); list one colour per style"),
        (13, "mask colour 'reddish' is not a colour; use a hex code like #ff0000 or a CSS name like red"),
        (14, "mask 'masks' is a folder, not a regular file"),
    ]
    lines = problems(path)
    for line, text in expected:
        assert any(l.startswith(f"{path}:{line}: ") and text in l for l in lines), (line, text, lines)
    assert len(lines) == len(expected), lines


def test_a_photo_of_another_shape_in_a_folder_row_fails_as_an_image_and_the_others_go_on(job):
    root, write = job
    items = read_manifest(write("photos/,starry.jpg;wave.png,masks/left.png;masks/right.png,,\n"))
    by_name = {item.content.name: item for item in items}
    assert set(by_name) == {"a.png", "b.png", "tall.png"}
    assert not by_name["a.png"].problem and not by_name["b.png"].problem
    assert by_name["tall.png"].problem == ("tall.png cannot be made with its masks: mask 'masks/left.png' is 40x30, "
                                           "not the shape of the content image (30x40); make the mask from the "
                                           "content image, or resize it to 30x40 (and 1 more of the row's masks)")
    assert all(item.masks == (root / "masks" / "left.png", root / "masks" / "right.png") for item in items)


def test_a_region_too_small_for_a_layer_is_a_note_and_the_image_is_made(job):
    root, write = job
    dot = np.zeros((30, 40), np.uint8)
    dot[14:16, 19:21] = 255
    Image.fromarray(dot, "L").save(root / "masks" / "dot.png")
    Image.fromarray(255 - dot, "L").save(root / "masks" / "rest.png")
    [item] = read_manifest(write("photos/a.png,starry.jpg;wave.png,masks/dot.png;masks/rest.png,,\n"))
    assert not item.problem
    [note] = item.notes
    assert note.startswith("a.png: masks/dot.png: its region covers less than one position of relu")
    assert note.endswith("that style is left out of those layers there")


def unmasked_id(item, hashes, weights: str) -> str:
    """The id an item without masks had before masks existed (plan.item_id's payload of then)."""
    payload = {"content": hashes.digest(item.content), "styles": [hashes.digest(s) for s in item.styles],
               "settings": item.settings.to_dict(), "weights": weights, "output": item.output, "engine": ENGINE_REVISION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def test_masks_are_part_of_an_id_only_where_there_are_some(job):
    root, write = job
    rows = ("photos/a.png,starry.jpg;wave.png,,,a.png\n"
            "photos/a.png,starry.jpg;wave.png,masks/left.png;masks/right.png,,a.png\n"
            "photos/a.png,starry.jpg;wave.png,masks/seg.png,red;blue,a.png\n"
            "photos/a.png,starry.jpg;wave.png,masks/seg.png,blue;red,a.png\n")
    ids = []
    for row in rows.splitlines(keepends=True):
        [item] = read_manifest(write(row))
        ids.append(item_id(item, HashCache(None), "w"))
    [plain] = read_manifest(write(rows.splitlines(keepends=True)[0]))
    assert ids[0] == unmasked_id(plain, HashCache(None), "w")  # no masks: today's id, bit for bit
    assert len(set(ids)) == 4  # masks, a segmentation and its colours each make another image
    split_masks(root / "masks", 40, 30, at=0.6)  # the same names, other bytes
    [moved] = read_manifest(write(rows.splitlines(keepends=True)[1]))
    assert item_id(moved, HashCache(None), "w") != ids[1]


def test_only_images_with_as_many_masked_regions_are_grouped_and_the_plan_keeps_the_masks(job):
    root, write = job
    items = read_manifest(write("photos/a.png,starry.jpg;wave.png,,,1.png\n"
                                "photos/b.png,starry.jpg;wave.png,masks/left.png;masks/right.png,,2.png\n"
                                "photos/a.png,starry.jpg;wave.png,masks/seg.png,red;blue,3.png\n"))
    keys = [planned(item, HashCache(None), "w", None).group_key for item in items]
    assert keys[0] is not None and keys[0] != keys[1] and keys[1] == keys[2]
    out = open_output_dir(root / "out")
    plan = make_plan(items, out, "w")
    saved = {entry.output: entry for entry in out.plan()}
    assert saved["1.png"].masks == [] and saved["1.png"].mask_colors == []
    assert saved["2.png"].masks == [str(root / "masks" / "left.png"), str(root / "masks" / "right.png")]
    assert saved["3.png"].masks == [str(root / "masks" / "seg.png")]
    assert saved["3.png"].mask_colors == ["#ff0000", "#0000ff"]
    assert len(plan.todo) == 3


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_masks_in_object_storage_are_checked_and_identified_by_their_tags(s3, tmp_path, photo):
    client, name = s3.client(), f"m-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="jobs/a.png", Body=png(photo(40, 30, 1)))
    client.put_object(Bucket=name, Key="jobs/style.png", Body=png(photo(32, 32, 2)))
    left, right = split_masks(tmp_path, 40, 30)
    client.put_object(Bucket=name, Key="jobs/left.png", Body=left.read_bytes())
    client.put_object(Bucket=name, Key="jobs/right.png", Body=right.read_bytes())
    client.put_object(Bucket=name, Key="jobs/small.png", Body=png(Image.new("L", (10, 10), 255)))
    client.put_object(Bucket=name, Key="jobs/m.csv", Body=b"content,style,masks\na.png,style.png;style.png,left.png;right.png\n")
    [item] = read_manifest(f"s3://{name}/jobs/m.csv")
    assert item.masks == (RemotePath(f"s3://{name}/jobs/left.png"), RemotePath(f"s3://{name}/jobs/right.png"))
    assert all(mask.tag for mask in item.masks)  # the id uses the store's content tag
    first = item_id(item, HashCache(None), "w")
    client.put_object(Bucket=name, Key="jobs/left.png", Body=png(Image.new("L", (40, 30), 255)))
    assert item_id(read_manifest(f"s3://{name}/jobs/m.csv")[0], HashCache(None), "w") != first
    client.put_object(Bucket=name, Key="jobs/m.csv",
                      Body=b"content,style,masks,output\na.png,style.png,small.png,1.png\na.png,style.png,gone.png,2.png\n")
    lines = problems(f"s3://{name}/jobs/m.csv")
    assert any(":2: content image 'a.png' cannot be made with its masks: mask 'small.png' is 10x10" in l for l in lines)
    assert any(":3: mask 'gone.png' does not exist" in l for l in lines) and len(lines) == 2


@pytest.mark.parametrize("job_name, images", [("demo", 5), ("masks", 2)])
def test_the_example_batches_plan_as_they_are(job_name, images, tmp_path):
    root = ROOT / "jobs" / job_name
    items = read_manifest(root / "manifest.csv")
    assert len(items) == images and not any(item.problem or item.notes for item in items)
    plan = make_plan(items, open_output_dir(tmp_path / "out"), "w")
    assert len(plan.todo) == images and len({item.id for item in plan.todo}) == images
    if job_name == "masks":
        assert [len(item.masks) for item in items] == [2, 1] and items[1].mask_colors == ((255, 0, 0), (0, 0, 255))
        assert all(mask.parent == root / "masks" for item in items for mask in item.masks)


def test_the_masks_examples_masks_are_what_its_script_makes(tmp_path):
    script = ROOT / "jobs" / "masks" / "make_masks.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=60)
    committed = sorted((ROOT / "jobs" / "masks" / "masks").glob("*.png"))
    assert [p.name for p in committed] == sorted(p.name for p in tmp_path.glob("*.png"))
    for path in committed:
        with Image.open(path) as kept, Image.open(tmp_path / path.name) as made:
            assert kept.mode == made.mode and np.array_equal(np.asarray(kept), np.asarray(made)), path.name


def test_masks_load_as_the_engine_takes_them(tmp_path):
    from batchstyle.batch.mask_inputs import job_masks, load_mask
    from batchstyle.engine.masks import greyscale

    deep = Image.fromarray(np.full((3, 4), 65535 // 2, np.uint16))  # 16-bit grey: scaled, not clipped to white
    assert np.asarray(load_mask(png(deep), "deep")).max() == 127
    rgba = Image.new("RGBA", (4, 3), (255, 255, 255, 0))  # white, but transparent: no region
    assert greyscale(load_mask(png(rgba), "rgba")).getextrema() == (0, 0)
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: it loads upright, as the content does
    Image.new("L", (4, 3), 255).save(turned, "JPEG", exif=exif)
    assert load_mask(turned.getvalue(), "turned").size == (3, 4)
    seg = segmentation(tmp_path / "seg.png", 4, 2)
    left, right = job_masks([seg.read_bytes()], ["seg.png"], [(255, 0, 0), (0, 0, 255)])
    assert np.asarray(left).tolist() == [[255, 255, 0, 0]] * 2 and np.asarray(right).tolist() == [[0, 0, 255, 255]] * 2
    with pytest.raises(ValueError, match="mask 'x.png' cannot be read"):
        load_mask(b"not an image", "mask 'x.png'")
