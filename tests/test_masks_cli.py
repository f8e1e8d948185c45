"""Masks on the command line: ``batchstyle stylize --masks`` (and ``--mask-colors``) with the checks of
a manifest, and ``batchstyle run`` of a masked manifest: the masks reach the workers and the records,
an image of another shape fails alone, and a rerun makes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from batchstyle.cli import main
from support.masks import segmentation, split_masks
from support.processes import batchstyle

TINY = ["-s", "64", "-ms", "45", "-ii", "6", "-i", "3"]  # scales 45 and 64: 6 + 3 iterations


@pytest.fixture
def job(tmp_path, photo):
    """photo.png and odd.png (96x72, 72x96), two styles, left/right masks and a red/blue segmentation."""
    photo(96, 72, 1).save(tmp_path / "photo.png")
    photo(72, 96, 2).save(tmp_path / "odd.png")
    photo(60, 40, 3).save(tmp_path / "s1.png")
    photo(60, 40, 4).save(tmp_path / "s2.png")
    split_masks(tmp_path, 96, 72)
    segmentation(tmp_path / "seg.png", 96, 72)
    Image.new("L", (96, 72), 0).save(tmp_path / "black.png")
    return tmp_path


def stylize(root: Path, *args: str):
    return CliRunner().invoke(main, ["stylize", str(root / "photo.png"), str(root / "s1.png"), str(root / "s2.png"),
                                     "-o", str(root / "out.png"), *args])


@pytest.mark.parametrize("args, expected", [
    (["--mask-colors", "red;blue"], "--mask-colors goes with --masks SEGMENTATION"),
    (["--masks", "{root}/left.png"], "1 mask(s) for 2 style image(s); give one greyscale mask per style"),
    (["--masks", "{root}/left.png;{root}/gone.png"], "mask '{root}/gone.png' does not exist"),
    (["--masks", "{root}/left.png;{root}/black.png"], "mask '{root}/black.png' is black everywhere"),
    (["--masks", "{root}/odd.png;{root}/left.png"], "mask '{root}/odd.png' is 72x96, not the shape of the content "
                                                    "image (96x72)"),
    (["--masks", "{root}/seg.png", "--mask-colors", "red;lime"], "pixel(s) of colours not listed in --mask-colors"),
    (["--masks", "{root}/seg.png", "--mask-colors", "red;reddish"], "mask colour 'reddish' is not a colour"),
    (["--masks", "{root}/left.png;{root}/right.png", "--mask-colors", "red;blue"],
     "--mask-colors goes with one colour-coded segmentation image, but --masks names 2 files"),
])
def test_stylize_refuses_masks_that_do_not_fit_with_one_clear_line(job, args, expected):
    result = stylize(job, *(a.format(root=job) for a in args))
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert said.startswith("error: ") and expected.format(root=job) in said, result.stderr
    assert not (job / "out.png").exists()


@pytest.mark.weights
def test_stylize_with_masks_or_a_segmentation_makes_the_image(job, weights_file):
    made = []
    for args in (["--masks", f"{job}/left.png;{job}/right.png"], ["--masks", f"{job}/seg.png", "--mask-colors",
                                                                   "red;#0000ff"]):
        result = stylize(job, *args, *TINY, "--weights", str(weights_file), "-q")
        assert result.exit_code == 0, result.output
        with Image.open(job / "out.png") as im:
            assert im.size == (64, 48)
            made.append(im.tobytes())
    assert made[0] == made[1]  # the same regions, given either way


MANIFEST = ("content,style,masks,mask_colors,output\n"
            "photo.png,s1.png;s2.png,left.png;right.png,,split.png\n"
            "photo.png,s1.png;s2.png,seg.png,red;blue,segmented.png\n")


def records(out: Path) -> dict[str, dict]:
    return {r["output"]: r for r in (json.loads(p.read_text()) for p in (out / ".batchstyle" / "done").glob("*.json"))}


@pytest.mark.ray
def test_a_masked_batch_ships_its_masks_and_an_image_of_another_shape_fails_alone(job):
    (job / "photos").mkdir()
    for name in ("photo.png", "odd.png"):
        (job / "photos" / name).write_bytes((job / name).read_bytes())
    manifest = job / "manifest.csv"
    manifest.write_text(MANIFEST + "photos/,s1.png;s2.png,left.png;right.png,,folder/{content}.png\n")
    result = batchstyle("run", str(manifest), "--plain", fake="iters=2,scales=1")
    assert result.returncode == 1, result.stdout + result.stderr  # odd.png cannot be made with these masks
    assert "odd.png cannot be made with its masks: mask 'left.png' is 96x72" in result.stdout
    done = records(job / "output")
    assert set(done) == {"split.png", "segmented.png", "folder/photo.png"}
    assert done["split.png"]["masks"] == [str(job / "left.png"), str(job / "right.png")]
    assert done["segmented.png"]["masks"] == [str(job / "seg.png")]
    assert done["segmented.png"]["mask_colors"] == ["#ff0000", "#0000ff"]
    assert done["folder/photo.png"]["mask_colors"] == []


@pytest.mark.ray
@pytest.mark.weights
def test_a_real_run_of_a_masked_manifest_makes_its_images_and_a_rerun_makes_nothing(job, weights_file):
    manifest = job / "manifest.csv"
    manifest.write_text(MANIFEST)
    args = ["run", str(manifest), "--weights", str(weights_file), "--plain", *TINY, "--group-size", "2"]
    env = {"BATCHSTYLE_WEIGHTS": "", "BATCHSTYLE_CACHE_DIR": str(job / "empty-cache")}
    first = batchstyle(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("in a group of 2)") == 2  # two masked regions each: optimised together
    pixels = []
    for name in ("split.png", "segmented.png"):
        with Image.open(job / "output" / name) as im:
            assert im.size == (64, 48)
            pixels.append(im.tobytes())
    assert pixels[0] == pixels[1]  # the same two regions, given as masks or as a segmentation
    before = records(job / "output")
    again = batchstyle(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 already done (skipped)" in again.stdout
    assert records(job / "output") == before  # nothing was made again
