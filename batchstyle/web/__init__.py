"""batchstyle's web side: one small HTTP server (standard library only) and the pages it serves.

* :class:`WebServer` (``server.py``) serves live routes from a provider and, read-only, the files of
  one folder that the provider allows, judged where they really are (``files.py``); ``addresses.py``
  says where a server bound to every interface can be reached;
* :class:`LivePreview` (``preview.py``) is the provider of ``batchstyle stylize --web``;
  the batch dashboard's provider is :mod:`batchstyle.batch.dashboard`;
* ``assets/``: the pages (plain HTML, CSS and JavaScript; nothing loaded from elsewhere).
  ``live.js`` draws a running image's progress, for both the single-image page and the batch
  dashboard; ``gallery.js`` draws an output directory's gallery (``index.html``).

It imports neither torch, ray nor click.
"""

from .preview import LivePreview
from .server import Reply, WebServer, image_content_type, json_reply, text_reply

__all__ = ["LivePreview", "WebServer", "Reply", "image_content_type", "json_reply", "text_reply"]
