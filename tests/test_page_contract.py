"""The data contract between the Python that writes the pages' data and the JavaScript that reads it
(batchstyle/web/contract.py), checked on both sides without a browser: the gallery's data files, the
dashboard's live state and the single-image status carry exactly the contract's fields; the scripts
and pages in web/assets ask for no route, file, global or field that the contract does not name."""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from types import SimpleNamespace

from support.dashboard import running_state
from support.gallery import clip_batch, data_of, failure, follow, page_data, png, record

from batchstyle.web import LiveView, contract as c
from batchstyle.web.dashboard import Dashboard
from batchstyle.web.gallery import GLOBAL
from batchstyle.web.server import asset

ALL_ROW_FIELDS = set(c.ROW_FIELDS + c.DONE_FIELDS + c.FAILED_FIELDS + c.THUMB_FIELDS)
CLIP_ROW_FIELDS = set(c.CLIP_FIELDS + c.CLIP_DONE_FIELDS + c.CLIP_VIDEO_FIELDS)
INPUT_THUMBS = {"content_thumb", "content_size"}


def text(name: str) -> str:
    return asset(name).decode("utf-8")


def code(js: str) -> str:
    """The script without its comments and the text of its strings."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', re.sub(r"/\*.*?\*/", "", js, flags=re.S))


def reads(js: str, var: str) -> set[str]:
    """The fields the script reads of its variable ``var`` (``var.NAME``; an assignment is no read)."""
    pattern = rf"(?<![\w.$]){re.escape(var)}\.([A-Za-z_$][\w$]*)(?![\w$]|\s*=[^=])"
    return set(re.findall(pattern, code(js)))


def literals(js: str) -> set[str]:
    return set(re.findall(r'"([^"\\]*)"', js))


# -- the Python side -------------------------------------------------------------------------------------

def test_the_gallery_writes_exactly_the_contracts_files_and_fields(batch, photo):  # noqa: F811
    out, plan, inputs = batch
    gallery = follow(out, shard_size=4)
    out.write_result(record(plan[3], inputs), png(photo(80, 60, 53)))
    assert gallery.close() is None
    folder = out.root / c.DATA_FOLDER
    assert {p.name for p in folder.iterdir()} == {*c.PAGE_ASSETS, c.SUMMARY_FILE, c.shard_file(0), c.shard_file(1)}
    assert (out.root / "index.html").read_bytes() == asset(c.GALLERY_PAGE)
    assert GLOBAL == f"(window.{c.DATA_GLOBAL}=window.{c.DATA_GLOBAL}||{{shards:{{}}}})"
    assert (folder / c.SUMMARY_FILE).read_bytes().startswith(f"{GLOBAL}.summary=".encode())
    assert (folder / c.shard_file(1)).read_bytes().startswith(f"{GLOBAL}.shards[1]=".encode())

    summary = data_of(folder / c.SUMMARY_FILE)
    assert set(summary) == set(c.SUMMARY_FIELDS)
    assert set(summary["counts"]) == set(c.SUMMARY_COUNT_FIELDS)
    assert summary["thumbs"] == c.THUMBS_FOLDER
    rows = data_of(folder / c.shard_file(0)) + data_of(folder / c.shard_file(1))
    expected = {"done": set(c.DONE_FIELDS) | set(c.THUMB_FIELDS), "failed": set(c.FAILED_FIELDS) | INPUT_THUMBS,
                "pending": INPUT_THUMBS}
    assert {row["state"] for row in rows} == set(c.ROW_STATES)
    for row in rows:
        assert set(row) == set(c.ROW_FIELDS) | expected[row["state"]], row["state"]
        assert all(set(style) == set(c.STYLE_FIELDS) for style in row["styles"])
        assert row["masks"] == [] and row["mask_colors"] == []  # these images have none (test_gallery: some)
    assert set().union(*map(set, rows)) == ALL_ROW_FIELDS


def test_a_clips_entry_has_exactly_the_contracts_fields(tmp_path):
    from batchstyle.web.gallery import rebuild_gallery

    out, plan, _ = clip_batch(tmp_path)
    out.write_failure(failure(plan["seq"][2], "frame 3: cannot be read"))
    rebuild_gallery(out)
    _, [still, pan, seq] = page_data(out)
    assert set(still) == set(c.ROW_FIELDS + c.DONE_FIELDS + c.THUMB_FIELDS)  # an image as before
    clip = set(c.ROW_FIELDS + c.CLIP_FIELDS + c.CLIP_DONE_FIELDS + c.THUMB_FIELDS)
    assert set(pan) == clip | set(c.CLIP_VIDEO_FIELDS)
    assert set(seq) == clip | set(c.FAILED_FIELDS)
    assert {pan["state"], seq["state"]} <= set(c.CLIP_STATES)
    assert all(set(style) == set(c.STYLE_FIELDS) for style in pan["styles"] + seq["styles"])


def test_the_dashboard_serves_exactly_the_contracts_live_state(batch):  # noqa: F811
    out, _, _ = batch
    gallery = follow(out)
    assert gallery.close() is None
    dashboard = Dashboard(gallery=gallery)
    first = json.loads(dashboard.reply(c.STATE_ROUTE, "").body)  # before the scheduler's first tick
    assert first["batchstyle"] == c.LIVE_MARK and set(first) <= set(c.LIVE_STATE_FIELDS)
    dashboard.publish(running_state("abc"))
    live = json.loads(dashboard.reply(c.STATE_ROUTE, "").body)
    assert set(live) == set(c.LIVE_STATE_FIELDS) and live["batchstyle"] == c.LIVE_MARK
    assert set(live["counts"]) == set(c.LIVE_COUNT_FIELDS)
    assert set(live["gallery"]) == set(c.GALLERY_VERSION_FIELDS)
    [worker] = live["workers"]
    assert set(worker) == set(c.WORKER_FIELDS)
    [item] = worker["items"]
    assert set(item) == set(c.LIVE_ITEM_FIELDS)
    assert set(item["preview"]) == set(c.PREVIEW_FIELDS)
    assert dashboard.reply(c.PREVIEW_ROUTE + "abc", "").content_type == "image/jpeg"


def test_the_single_image_status_has_exactly_the_contracts_fields():
    from batchstyle.cli.stylize import _update_live_view
    from batchstyle.engine.events import Progress

    preview = LiveView(port=0)
    event = Progress(0, 2, 64, 48, 1, 10, 3.5, 0.5, 2**20, time.time())
    _update_live_view(preview, SimpleNamespace(image=lambda: None), event, SimpleNamespace(rate=4.0), 0.0)
    status = json.loads(preview.reply(c.STATUS_ROUTE, "").body)
    assert set(status) == set(c.STYLIZE_STATUS_FIELDS) and status["has_image"] is True
    assert preview.reply(c.IMAGE_ROUTE, "") is not None


# -- the JavaScript side ---------------------------------------------------------------------------------

def test_the_gallery_script_reads_only_the_contracts_fields():
    js = text("gallery.js")
    running = set(c.LIVE_ITEM_FIELDS) | {"worker"}  # gallery.js adds each running image's worker label
    fields = {"e": ALL_ROW_FIELDS | CLIP_ROW_FIELDS, "s": set(c.STYLE_FIELDS), "m": set(c.MASK_FIELDS), "G": set(c.DATA_GLOBAL_KEYS),
              "G.summary": set(c.SUMMARY_FIELDS), "summary": set(c.SUMMARY_FIELDS),
              "st": set(c.LIVE_STATE_FIELDS), "live": set(c.LIVE_STATE_FIELDS), "c": set(c.LIVE_COUNT_FIELDS),
              "data": set(c.GALLERY_VERSION_FIELDS), "w": set(c.WORKER_FIELDS), "it": running, "r": running,
              "it.preview": set(c.PREVIEW_FIELDS)}
    for var, allowed in fields.items():
        found = reads(js, var)
        assert found, f"gallery.js no longer reads {var}: update this test"
        assert found <= allowed, f"gallery.js reads {sorted(found - allowed)} of {var}, not in web/contract.py"


def test_the_live_script_reads_only_the_contracts_fields():
    js = text("live.js")
    status = set(c.STYLIZE_STATUS_FIELDS) | set(c.STYLIZE_OPTIONAL_FIELDS)
    for var, allowed in {"st": set(c.CARD_FIELDS), "status": status, "lastStatus": status}.items():
        found = reads(js, var)
        assert found, f"live.js no longer reads {var}: update this test"
        assert found <= allowed, f"live.js reads {sorted(found - allowed)} of {var}, not in web/contract.py"
    drawn = set(c.CARD_FIELDS) - {"title", "subtitle", "image"}  # what the page gives the card itself
    assert drawn <= set(c.LIVE_ITEM_FIELDS) | set(c.STYLIZE_STATUS_FIELDS)


def test_the_scripts_ask_for_the_contracts_routes_files_and_globals():
    gallery, live = text("gallery.js"), text("live.js")
    relative = {route.lstrip("/") for route in (c.STATE_ROUTE, c.PREVIEW_ROUTE, c.STATUS_ROUTE, c.IMAGE_ROUTE)}
    fetched = set(re.findall(r'fetch\("([^"]*)"', gallery + live))
    assert fetched == {c.STATE_ROUTE.lstrip("/"), c.STATUS_ROUTE.lstrip("/")}
    assert {s for s in literals(gallery) if s.startswith(".live/")} == {c.STATE_ROUTE.lstrip("/"),
                                                                        c.PREVIEW_ROUTE.lstrip("/")}
    assert f'"{c.IMAGE_ROUTE.lstrip("/")}?t="' in live and fetched | {c.IMAGE_ROUTE.lstrip("/")} <= relative
    assert {s for s in literals(gallery) if s.startswith(".batchstyle/")} == {c.DATA_FOLDER, c.THUMBS_FOLDER}
    assert f'DATA + "{c.SUMMARY_FILE}?v="' in gallery and c.shard_file(7) == "shard-00007.js"
    assert 'DATA + "shard-" + String(k).padStart(5, "0") + ".js?v="' in gallery
    assert set(re.findall(r"window\.(\w+)", gallery + live)) - {"addEventListener"} == {c.DATA_GLOBAL,
                                                                                        c.LIVE_GLOBAL}
    declared = re.search(r"var G = (window\.\w+ = window\.\w+ \|\| \{ shards: \{\} \});", gallery).group(1)
    assert "(" + declared.replace(" ", "") + ")" == GLOBAL
    lent = re.search(rf"window\.{c.LIVE_GLOBAL} = \{{(.*?)\}};", live, re.S).group(1)
    assert reads(gallery, "L") <= set(re.findall(r"(\w+):", lent))
    assert f'st.batchstyle === "{c.LIVE_MARK}"' in gallery
    assert set(re.findall(r'dataset\.page === "(\w+)"', gallery + live)) == set(c.PAGE_KINDS)


def test_the_pages_load_the_contracts_files():
    def loads(page: str) -> set[str]:
        return set(re.findall(r'(?:src|href)="([^"]+)"', text(page))) - {"data:,", "#grid"}

    assert loads(c.GALLERY_PAGE) == {c.DATA_FOLDER + name for name in (*c.PAGE_ASSETS, c.SUMMARY_FILE)}
    assert loads(c.STYLIZE_PAGE) == {c.ASSETS_ROUTE + "style.css", c.ASSETS_ROUTE + "live.js", c.STATUS_ROUTE,
                                     c.IMAGE_ROUTE}
    assert {f'data-page="{kind}"' in text(page) for kind, page in zip(c.PAGE_KINDS, (c.GALLERY_PAGE,
                                                                                   c.STYLIZE_PAGE))} == {True}
    shipped = {p.name for p in resources.files("batchstyle.web").joinpath("assets").iterdir()}
    assert shipped == {*c.PAGE_ASSETS, c.GALLERY_PAGE, c.STYLIZE_PAGE}
