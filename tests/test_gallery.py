"""The gallery in the output directory (web/gallery.py, thumbs.py) and the dashboard's live routes
(web/dashboard.py), without Ray: what the page's data says, where the thumbnails are, which files an
update rewrites, that a rerun decodes nothing again and that a broken gallery never stops a batch."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from PIL import Image

from batchstyle.web import thumbs as thumbs_module
from batchstyle.web.gallery import Gallery, rebuild_gallery
from support.dashboard import running_state
from support.gallery import failure, follow, page_data, png, record


def test_the_gallery_shows_every_image_with_inputs_state_and_thumbnails(batch, photo):
    out, plan, inputs = batch
    gallery = follow(out)
    out.write_result(record(plan[3], inputs), png(photo(80, 60, 53)))  # finished during the run
    out.write_failure(failure(plan[4], "out of GPU memory"))
    assert gallery.close() is None
    assert (out.root / "index.html").read_bytes().startswith(b"<!doctype html>")
    for name in ("live.js", "gallery.js", "style.css"):
        assert (out.meta / "gallery" / name).is_file()
    summary, rows = page_data(out)
    assert summary["counts"] == {"done": 3, "failed": 2, "pending": 1} and summary["state"] == "stopped"
    assert [r["state"] for r in rows] == ["done", "done", "failed", "done", "failed", "pending"]
    assert [r["output"] for r in rows] == [e.output for e in plan]
    assert rows[2]["error"] == "p2.png: cannot be read" and rows[4]["error"] == "out of GPU memory"
    assert rows[3]["worker"] == "node GPU 0" and rows[3]["seconds"] == 12.5 and rows[3]["size"] == [80, 60]
    assert all(r["settings"] == {"end_scale": 256, "content_weight": 10} for r in rows)
    assert all(r["content"] == f"p{i}.png" and r["styles"][0]["name"] == "style.png" for i, r in enumerate(rows))
    thumbs = out.meta / "thumbs"
    assert len({r["styles"][0]["thumb"] for r in rows}) == 1  # one style, one thumbnail
    for r in rows:
        for name in [r["content_thumb"], r["styles"][0]["thumb"], *([r["thumb"]] if r["state"] == "done" else [])]:
            with Image.open(thumbs / name) as im:
                assert im.format == "JPEG" and max(im.size) <= 256
    assert "thumb" not in rows[5]  # pending: no result yet
    assert str(inputs) not in "".join(p.read_text() for p in (out.meta / "gallery").glob("shard-*.js"))


def test_an_update_rewrites_only_its_shard_and_the_summary(batch, photo):
    out, plan, inputs = batch
    assert Gallery(out, shard_size=2).start().close() is None  # the first run made the thumbnails
    gallery = follow(out, shard_size=2)
    deadline = time.monotonic() + 10
    while gallery.live()["summary"] < 1:  # the page was written
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = gallery.live()
    assert before["shards"] == [1, 1, 1]  # nothing to make: the thumbnails are known
    out.write_result(record(plan[5], inputs), png(photo(80, 60, 55)))
    gallery.close()
    after = gallery.live()
    assert after["shards"] == [1, 1, 2] and after["summary"] > before["summary"]
    assert page_data(out)[1][5]["state"] == "done"


def test_a_rerun_decodes_no_image_again(batch, monkeypatch):
    out, _, _ = batch
    rebuild_gallery(out)
    decoded = []
    real = thumbs_module.load_image
    monkeypatch.setattr(thumbs_module, "load_image", lambda *a, **k: decoded.append(a) or real(*a, **k))
    rebuild_gallery(out)
    assert decoded == []
    summary, rows = page_data(out)
    assert all("content_thumb" in r for r in rows) and all("thumb" in r for r in rows if r["state"] == "done")


def test_an_old_plan_without_styles_still_gives_a_gallery(batch):
    out, plan, _ = batch
    old = json.loads((out.meta / "plan.json").read_text())
    for item in old["items"]:
        del item["styles"], item["settings"]
    (out.meta / "plan.json").write_text(json.dumps(old))
    rebuild_gallery(out)
    _, rows = page_data(out)
    assert rows[0]["styles"][0]["name"] == "style.png"  # from the done record
    assert rows[5]["styles"] == [] and rows[5]["state"] == "pending"


def test_a_broken_gallery_never_stops_the_batch(batch, photo):
    out, plan, inputs = batch
    (out.meta / "gallery").write_text("a file where the gallery's folder should be")
    gallery = follow(out)
    deadline = time.monotonic() + 10
    while gallery.error is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    out.write_result(record(plan[5], inputs), png(photo(80, 60, 55)))  # the batch writes on
    assert (out.root / plan[5].output).is_file() and not gallery._events  # nothing piles up
    error = gallery.close()
    assert error and "gallery" in error  # said once, at the end of the run


# --- the dashboard's live routes ---------------------------------------------------------------------------

def test_the_dashboard_serves_the_running_state_and_previews():
    from batchstyle.web import WebServer
    from batchstyle.web.dashboard import Dashboard

    dashboard = Dashboard()
    state = running_state()
    dashboard.publish(state)
    with WebServer("127.0.0.1", 0, routes=dashboard) as server:
        def get(path):
            try:
                with urllib.request.urlopen(server.url + path, timeout=5) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        code, body = get(".live/state")
        live = json.loads(body)
        assert code == 200 and live["batchstyle"] == "live" and not live["finished"]
        assert live["counts"] == {"total": 5, "skipped": 1, "done": 2, "failed": 1, "running": 1, "pending": 0}
        [worker] = live["workers"]
        assert worker["label"] == "node CPU" and worker["state"] == "running"
        [item] = worker["items"]
        assert (item["output"], item["scale"], item["scales"], item["iteration"], item["loss"]) == ("a__s.png", 2, 3, 40, 2.5)
        assert item["preview"]["version"] == "1.40" and item["preview"]["of_width"] == item["width"]
        assert 2 / 3 < live["progress"] < 1  # two images done, the third in its second scale
        assert get(".live/preview/abc") == (200, b"\xff\xd8fake-jpeg")
        assert get(".live/preview/other")[0] == 404
        assert get(".live/nope")[0] == 404
        state.workers[0].call = None  # the image finished: its preview is let go
        dashboard.finish(state)
        assert get(".live/preview/abc")[0] == 404
        assert json.loads(get(".live/state")[1])["finished"] is True


def test_huge_images_get_no_thumbnail(tmp_path, monkeypatch):
    from batchstyle.batch.outdir import open_output_dir
    from batchstyle.web.thumbs import Thumbnails

    monkeypatch.setattr(thumbs_module, "MAX_SOURCE_PIXELS", 100 * 100)
    thumbs = Thumbnails(open_output_dir(tmp_path), ".batchstyle/thumbs")
    assert thumbs.of_bytes(png(Image.new("RGB", (101, 100))), "big.png") is None
    assert thumbs.of_bytes(png(Image.new("RGB", (100, 100))), "fine.png") is not None


@pytest.mark.timeout(10)  # reading the pipe would wait for a writer forever
def test_a_named_pipe_among_the_inputs_gets_no_thumbnail_and_is_never_opened(tmp_path, photo):
    import os

    from batchstyle.batch.outdir import open_output_dir
    from batchstyle.batch.remote_files import file_stamp
    from batchstyle.web.thumbs import Thumbnails

    os.mkfifo(tmp_path / "pipe.png")  # a failed image found in a folder
    photo(40, 30, 1).save(tmp_path / "fine.png")
    thumbs = Thumbnails(open_output_dir(tmp_path / "out"), ".batchstyle/thumbs")
    assert thumbs.of_file("in:pipe.png", tmp_path / "pipe.png", file_stamp(tmp_path / "pipe.png")) is None
    assert thumbs.of_file("in:fine.png", tmp_path / "fine.png", file_stamp(tmp_path / "fine.png")) is not None


def test_an_image_made_with_masks_shows_them_beside_its_styles(tmp_path, photo):
    from batchstyle.batch.outdir import PlanItem, open_output_dir
    from batchstyle.web.gallery import files_named
    from support.masks import segmentation, split_masks

    photo(80, 60, 1).save(tmp_path / "a.png")
    for name, seed in (("s1.png", 2), ("s2.png", 3)):
        photo(50, 50, seed).save(tmp_path / name)
    left, right = (str(p) for p in split_masks(tmp_path, 80, 60))
    seg = str(segmentation(tmp_path / "seg.png", 80, 60))
    styles = [str(tmp_path / "s1.png"), str(tmp_path / "s2.png")]
    out = open_output_dir(tmp_path / "out")
    out.create()
    plan = [PlanItem("id0", "split.png", 2, str(tmp_path / "a.png"), styles, {}, masks=[left, right]),
            PlanItem("id1", "seg.png", 3, str(tmp_path / "a.png"), styles, {}, masks=[seg],
                     mask_colors=["#ff0000", "#0000ff"])]
    out.write_plan(plan, {})
    done = record(plan[0], tmp_path)
    done.masks = [left, right]
    out.write_result(done, png(photo(80, 60, 50)))
    gallery = follow(out)
    assert gallery.close() is None
    _, rows = page_data(out)
    assert [m["name"] for m in rows[0]["masks"]] == ["left.png", "right.png"] and rows[0]["mask_colors"] == []
    assert [m["name"] for m in rows[1]["masks"]] == ["seg.png"] and rows[1]["mask_colors"] == ["#ff0000", "#0000ff"]
    thumbs = [m["thumb"] for row in rows for m in row["masks"]]
    assert len(set(thumbs)) == 3 and all((out.meta / "thumbs" / name).is_file() for name in thumbs)
    assert {f".batchstyle/thumbs/{name}" for name in thumbs} <= files_named(rows)  # run --web serves them
    assert str(tmp_path) not in json.dumps(rows)  # file names only, as for styles
