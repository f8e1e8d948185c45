"""The live view of one running style transfer (``batchstyle stylize --web``): a provider for the server.

The caller owns the optimisation loop and pushes its progress in::

    with LiveView(port=8080) as view:          # or view.start() ... view.stop()
        print("live view at", view.url)
        for event in run:
            view.update(status, image=lambda snap=snapshot: encode_jpeg(snap))
        view.finish()

Routes (besides the server's own ``/.assets/``; named, with the fields of ``/status``, in :mod:`.contract`):

* ``/``        the page (``assets/stylize.html``, drawn by ``assets/live.js`` as the batch dashboard
  draws each running image). It polls ``/status`` about every 500 ms and reloads the picture only
  when ``image_version`` changes.
* ``/status``  JSON: the latest status dict plus ``image_version`` (incremented by every
  :meth:`LiveView.update` that carries an image) and ``has_image``. Non-finite floats are ``null``.
* ``/image``   the latest image's bytes, content type from its magic bytes; 404 before the first
  image, 500 (with the error text) when the image callable raised.

Images are encoded lazily: :meth:`LiveView.update` only stores the bytes or the zero-argument
callable; the callable is invoked by a server thread when a browser requests ``/image``, at most once
per image. With nobody watching the page, the callable is never invoked.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Union

from .contract import IMAGE_ROUTE, STATUS_ROUTE, STYLIZE_PAGE
from .server import Reply, WebServer, asset, image_content_type, json_reply, text_reply

ImageSource = Union[Callable[[], bytes], bytes, bytearray, memoryview]

_FALLBACK_PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>batchstyle live view</title></head>"
    "<body><p>The live view page is missing from this installation. <a href='/status'>/status</a> and "
    "<a href='/image'>/image</a> still work.</p></body></html>"
).encode("utf-8")


def _page() -> bytes:
    try:
        return asset(STYLIZE_PAGE)
    except (FileNotFoundError, OSError):
        return _FALLBACK_PAGE


class LiveView:
    """A single image's live view, served in a daemon thread.

    ``update`` is cheap (it stores references under a lock) and may be called every optimiser step.
    Its ``image`` is encoded bytes or a zero-argument callable returning them; the callable runs **in a
    server thread**, lazily, at most once per update: give one that is safe to call from another
    thread, e.g. one that encodes a snapshot (a detached CPU copy), not the live tensor being optimised.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080):
        self.server = WebServer(host, port, routes=self)
        self._lock = threading.Lock()          # guards the state below; held only briefly
        self._encode_lock = threading.Lock()   # serialises image encoding (at most one call per image)
        self._status: dict[str, Any] = {}
        self._image_version = 0
        self._pending: ImageSource | None = None  # source of the latest image, until encoded
        self._cache: tuple[int, bytes | None, str | None] | None = None  # (version, bytes, error)
        self._page = _FALLBACK_PAGE

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.running

    def start(self) -> str:
        """Serve in a daemon thread; the URL. :class:`OSError` naming the port when it cannot be bound."""
        self._page = _page()
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "LiveView":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- producer side -----------------------------------------------------------------------------------

    def update(self, status: dict | None, image: ImageSource | None = None) -> None:
        """Publish the latest ``status`` (a shallow copy is kept; ``None`` keeps the previous one) and,
        optionally, a new image: bytes or a zero-argument callable returning them (run later, elsewhere)."""
        if image is not None and not (callable(image) or isinstance(image, (bytes, bytearray, memoryview))):
            raise TypeError(f"image must be bytes or a callable returning bytes, not {type(image).__name__}")
        copied = dict(status) if status is not None else None
        with self._lock:
            if copied is not None:
                self._status = copied
            if image is not None:
                self._image_version += 1
                self._pending = image

    def finish(self, status: dict | None = None) -> None:
        """Mark the run done: ``status["done"] = True`` (on ``status`` if given, else on the latest one)."""
        with self._lock:
            self._status = dict(status) if status is not None else dict(self._status)
            self._status["done"] = True

    # --- server side ---------------------------------------------------------------------------------------

    def reply(self, path: str, query: str) -> Reply | None:
        """The routes of this view (see the module docstring); ``None`` for other paths."""
        if path in ("/", "/index.html"):
            return Reply(200, self._page, "text/html; charset=utf-8")
        if path == STATUS_ROUTE:
            return json_reply(self.snapshot())
        if path == IMAGE_ROUTE:
            data, error = self._current_image()
            if error is not None:
                return text_reply(500, f"encoding the image failed: {error}")
            if data is None:
                return text_reply(404, "no image yet")
            return Reply(200, data, image_content_type(data))
        return None

    def snapshot(self) -> dict[str, Any]:
        """What ``/status`` serves: the latest status plus ``image_version`` and ``has_image``."""
        with self._lock:
            out = dict(self._status)
            out["image_version"] = self._image_version
            out["has_image"] = self._image_version > 0
        return out

    def _current_image(self) -> tuple[bytes | None, str | None]:
        """``(bytes, None)``, ``(None, error text)``, or ``(None, None)`` before the first image.

        Encodes the latest image at most once (serialised by ``_encode_lock``, outside ``_lock`` so that
        ``update`` never waits for an encoding) and caches the result until a newer image arrives.
        """
        with self._encode_lock:
            with self._lock:
                version, source, cache = self._image_version, self._pending, self._cache
            if cache is not None and cache[0] == version:
                return cache[1], cache[2]
            if source is None:
                return None, None
            data: bytes | None = None
            error: str | None = None
            try:
                raw = source() if callable(source) else source
                if not isinstance(raw, (bytes, bytearray, memoryview)):
                    raise TypeError(f"the image callable returned {type(raw).__name__}, not bytes")
                data = bytes(raw)
            except Exception as exc:  # noqa: BLE001 - reported to the browser as HTTP 500
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._cache = (version, data, error)
                if self._image_version == version:
                    self._pending = None  # encoded: drop the callable (and the snapshot it holds)
            return data, error


__all__ = ["LiveView", "ImageSource"]
