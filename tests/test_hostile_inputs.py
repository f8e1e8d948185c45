"""A folder row over a hostile folder runs to the end: every file is made or named in a clear
error, nothing prints a traceback or a raw warning, and the command says so with exit code 1."""

from __future__ import annotations

import json
import os
import re

import pytest

from support import hostile
from support.photos import make_photo
from support.processes import FAKE, batchstyle

pytestmark = pytest.mark.ray


def outcomes(out) -> tuple[dict, dict]:
    meta = out / ".batchstyle"
    done = {json.loads(p.read_text())["content"]: json.loads(p.read_text()) for p in (meta / "done").glob("*.json")}
    failed = {json.loads(p.read_text())["content"]: json.loads(p.read_text()) for p in (meta / "failed").glob("*.json")}
    return done, failed


@pytest.mark.timeout(200)  # a read blocked on the pipe fails the test instead of hanging it
def test_a_folder_of_hostile_files_runs_to_the_end(tmp_path):
    expect = hostile.build(tmp_path / "photos")
    make_photo(64, 48, 1).save(tmp_path / "style.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("content,style,output\nphotos,style.png,{content}_{ext}__{style}.png\n")
    out = tmp_path / "out"
    result = batchstyle("run", manifest, "-o", out, "--plain", "-s", "256", "-ms", "128", fake=FAKE, timeout=180)
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    assert "Traceback" not in text and "UserWarning" not in text and "DecompressionBomb" not in text
    done, failed = outcomes(out)
    names = lambda records: {p.rsplit("/", 1)[-1] for p in records}  # noqa: E731
    assert names(done) == {n for n, o in expect.items() if o == hostile.MADE}
    assert names(failed) == {n for n, o in expect.items() if o == hostile.FAILS}
    for content, failure in failed.items():  # each error names its file and says what is wrong
        name = content.rsplit("/", 1)[-1]
        assert failure["error"].startswith(name) and len(failure["error"].splitlines()) == 1, failure
        assert f"failed {failure['output']} (line 2): {name}" in text
    reasons = {content.rsplit("/", 1)[-1]: f["error"] for content, f in failed.items()}
    assert "the file is empty" in reasons["empty.jpg"]
    assert "not an image file" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "3,600 megapixels: more than the limit of 250 (--max-input-pixels)" in reasons["bomb.png"]
    assert "too thin" in reasons["sliver.png"]
    assert "is a named pipe (FIFO), not a regular file" in reasons["pipe.png"]
    # the warning about the odd TIFF is a note, once, and it is kept in that image's record
    assert text.count("Tag data larger than file") == 1 and "note: odd_tags.tif: Tag data" in text
    odd = next(r for c, r in done.items() if c.endswith("odd_tags.tif"))
    assert any("Tag data larger than file" in note for note in odd["notes"])
    assert "panorama.png starts at scale 181" in text
    assert f"{len(failed)} image(s) failed" in text
    assert re.search(rf"done\s+│\s+{len(done)}\s", text) and re.search(rf"failed\s+│\s+{len(failed)}\s", text)
    status = batchstyle("status", out)
    assert status.returncode == 1 and f"{len(done)} done, {len(failed)} failed, 0 pending" in status.stdout


def test_two_files_of_one_stem_get_a_hint_that_names_the_way_out(tmp_path):
    hostile.build(tmp_path / "photos")
    make_photo(64, 48, 1).save(tmp_path / "style.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("content,style\nphotos,style.png\n")
    result = batchstyle("run", manifest, "--plain", fake=FAKE)
    assert result.returncode == 2
    assert ("output 'twin__style.png' is also written by this row (twin.jpg); twin.webp and twin.jpg differ only by "
            "extension: use an output such as {content}_{ext}__{style}.png") in result.stderr
    assert "e.g. {content}__{style}.png" not in result.stderr


@pytest.mark.timeout(30)
def test_a_manifest_that_is_a_named_pipe_is_one_line_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "jobs.csv")  # as `batchstyle run <(generate)` would pass one
    result = batchstyle("run", tmp_path / "jobs.csv", "--plain", fake=FAKE, timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'jobs.csv'}: the manifest is a named pipe (FIFO), not a "
                                     f"regular file; save the manifest to a file and name that")
