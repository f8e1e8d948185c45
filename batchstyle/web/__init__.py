"""batchstyle's pages, above the batch: the gallery, the live dashboard, the HTTP server that serves them,
and the pages' own HTML, CSS and JavaScript beside the Python that writes what they read.

The server (standard library only, importing nothing else of batchstyle):

* :class:`WebServer` (``server.py``) serves live routes from a provider and, read-only, the files of
  one folder that the provider allows, judged where they really are (``files.py``); ``addresses.py``
  says where a server bound to every interface can be reached;
* :class:`LiveView` (``live_view.py``) is the provider of ``batchstyle stylize --web``;
* ``contract.py`` names what the pages' JavaScript reads: routes, files, globals, fields.

The batch's pages (they import :mod:`batchstyle.batch`, never the other way round):

* ``gallery.py`` keeps ``OUTDIR/index.html`` and its data current; ``gallery_data.py`` makes each
  image's gallery item, ``thumbs.py`` its thumbnails;
* ``dashboard.py`` is the provider of ``batchstyle run --web``: the scheduler's display (through
  :class:`batchstyle.batch.state.Display`, wired by the CLI) and the routes of the running batch.

``assets/``: the pages (plain HTML, CSS and JavaScript; nothing loaded from elsewhere). ``live.js``
draws a running image's progress, for both the single-image page and the batch dashboard;
``gallery.js`` draws an output directory's gallery (``index.html``).

Importing this package imports the server only: neither torch, ray, click nor Pillow.
"""

from .live_view import LiveView
from .server import Reply, WebServer, image_content_type, json_reply, text_reply

__all__ = ["LiveView", "WebServer", "Reply", "image_content_type", "json_reply", "text_reply"]
