"""What the pages' JavaScript reads, named once: routes, files, globals and the fields of every record.

The Python that writes the pages' data (:mod:`.gallery`, :mod:`.dashboard`, :mod:`.live_view`) and the
JavaScript in ``assets/`` that reads it meet here. ``tests/test_page_contract.py`` checks both sides
against these names without a browser: that the Python writes exactly these fields, and that the
scripts and pages ask for no route, file, global or field that is not named here. A field added on
one side only fails that test. Standard library only (constants).
"""

from __future__ import annotations

# -- routes of the servers -----------------------------------------------------------------------------
ASSETS_ROUTE = "/.assets/"       # the pages' own code, served by every WebServer (server.py)
LIVE_PREFIX = "/.live/"          # the batch dashboard's live routes (dashboard.py); the rest of it is 404
STATE_ROUTE = "/.live/state"     # JSON: LIVE_STATE_FIELDS
PREVIEW_ROUTE = "/.live/preview/"  # + an item id: the latest preview JPEG of a running image
STATUS_ROUTE = "/status"         # batchstyle stylize --web (live_view.py): JSON, STYLIZE_STATUS_FIELDS
IMAGE_ROUTE = "/image"           # batchstyle stylize --web: the latest image

# -- files ---------------------------------------------------------------------------------------------
GALLERY_PAGE = "gallery.html"    # written as OUTDIR/index.html
STYLIZE_PAGE = "stylize.html"    # the page of batchstyle stylize --web
PAGE_ASSETS = ("live.js", "gallery.js", "style.css")  # the pages' code: at ASSETS_ROUTE and in DATA_FOLDER
DATA_FOLDER = ".batchstyle/gallery/"     # in the output directory: PAGE_ASSETS and the data scripts
THUMBS_FOLDER = ".batchstyle/thumbs/"    # in the output directory: thumbnails, named by content hash
SUMMARY_FILE = "summary.js"              # in DATA_FOLDER: sets DATA_GLOBAL.summary
SHARD_FILE = "shard-{:05d}.js"           # in DATA_FOLDER: shard k sets DATA_GLOBAL.shards[k]

# -- globals of the pages' scripts --------------------------------------------------------------------
DATA_GLOBAL = "batchstyleGallery"        # window.batchstyleGallery = {summary, shards: {k: rows}}
DATA_GLOBAL_KEYS = ("summary", "shards")
LIVE_GLOBAL = "BatchstyleLive"           # what live.js lends gallery.js (its progress card and helpers)
LIVE_MARK = "live"                       # the value of "batchstyle" in the live state: a dashboard answers
PAGE_KINDS = ("gallery", "stylize")      # <body data-page="...">: which page live.js / gallery.js draw

# -- the gallery's data (gallery.py, gallery_data.py) --------------------------------------------------
SUMMARY_FIELDS = ("format", "title", "state", "started", "updated", "total", "counts", "done_this_run",
                  "images_per_hour", "shard_size", "shards", "thumbs")
SUMMARY_COUNT_FIELDS = ("done", "failed", "pending")  # of entries (an image, or a clip: partial counts as pending)
ROW_FIELDS = ("id", "n", "line", "output", "content", "styles", "masks", "mask_colors", "settings",  # every image
              "state")
DONE_FIELDS = ("seconds", "finished", "worker", "attempts", "group", "iterations", "loss", "resumed")
FAILED_FIELDS = ("error", "kind", "attempts", "failed", "worker", "detail")
THUMB_FIELDS = ("content_thumb", "content_size", "thumb", "size")  # once the thumbnails exist
STYLE_FIELDS = ("name", "weight", "thumb")  # each of a row's styles (thumb: once it exists)
MASK_FIELDS = ("name", "thumb")  # each of a row's masks: one per style, or one segmentation with mask_colors
ROW_STATES = ("done", "failed", "pending")
# a clip (its frames as one entry): ROW_FIELDS (its output is its video, or its frames folder) and these
CLIP_FIELDS = ("clip", "frames", "frames_done", "frame_outputs")  # frame_outputs: each frame's path, null until done
CLIP_DONE_FIELDS = ("seconds", "finished")  # once a frame is done: the frames' seconds summed, the latest finish
CLIP_VIDEO_FIELDS = ("video", "content_video")  # the encoded clip once written; the content clip where the page reaches it
CLIP_STATES = ("done", "partial", "failed", "pending")  # done: every frame and the video; partial: some frames

# -- the live state of batchstyle run --web (dashboard.py) --------------------------------------------
LIVE_STATE_FIELDS = ("batchstyle", "finished", "draining", "message", "counts", "progress", "eta", "elapsed",
                     "images_per_hour", "workers", "gallery")
LIVE_COUNT_FIELDS = ("total", "skipped", "done", "failed", "running", "pending")
WORKER_FIELDS = ("label", "state", "items")
LIVE_ITEM_FIELDS = ("id", "output", "line", "elapsed", "its_per_sec", "eta",  # every running image
                    "scale", "scales", "width", "height", "iteration", "iterations", "loss", "gpu_memory_mb",
                    "preview")
PREVIEW_FIELDS = ("version", "width", "height", "of_width", "of_height")
GALLERY_VERSION_FIELDS = ("summary", "shards")  # the data versions: a page reloads what changed

# -- the status of batchstyle stylize --web (cli/stylize.py through live_view.py) ------------------------
STYLIZE_STATUS_FIELDS = ("scale", "scales", "width", "height", "iteration", "iterations", "loss", "its_per_sec",
                         "elapsed", "gpu_memory_mb", "done", "image_version", "has_image")
STYLIZE_OPTIONAL_FIELDS = ("title",)  # what another caller of LiveView.update may add: the page's heading

# -- live.js's progress card: the fields of a running image it draws, from LIVE_ITEM_FIELDS or
# STYLIZE_STATUS_FIELDS, plus what the page itself gives it (title, subtitle, image)
CARD_FIELDS = ("scale", "scales", "width", "height", "iteration", "iterations", "loss", "its_per_sec", "elapsed",
               "eta", "gpu_memory_mb", "done", "title", "subtitle", "image")


def shard_file(k: int) -> str:
    """The name of the ``k``-th data shard in :data:`DATA_FOLDER`."""
    return SHARD_FILE.format(k)


__all__ = [name for name in dir() if name.isupper()] + ["shard_file"]
