"""A small live-preview web server for a running style transfer (``batchstyle stylize --web``).

Standard library only (``http.server``, ``json``, ``threading``); it imports neither torch, ray nor click.
The caller owns the optimisation loop and pushes its progress in::

    with LivePreview(port=8080) as preview:          # or preview.start() ... preview.stop()
        print("live preview at", preview.url)
        for event in run:
            preview.update(status, image=lambda snap=snapshot: encode_jpeg(snap))
        preview.finish()

Routes (GET and HEAD only; anything else is 404, other methods 405):

* ``/``        the self-contained page ``batchstyle/web_page.html`` (plain JavaScript, no CDN). It polls
  ``/status`` about every 500 ms and reloads the picture only when ``image_version`` changes.
* ``/status``  JSON: the latest status dict plus ``image_version`` (int, incremented by every
  :meth:`LivePreview.update` that carries an image) and ``has_image`` (bool). ``Cache-Control: no-store``.
  Non-finite floats (a NaN loss) are sent as ``null`` so that the JSON stays valid for browsers.
* ``/image``   the latest image's bytes, content type detected from its magic bytes (JPEG, PNG, also
  GIF/WebP), ``Cache-Control: no-store``; 404 before the first image, 500 (with the error text) when
  the image callable raised.

Images are encoded lazily: :meth:`LivePreview.update` only stores the bytes or the zero-argument
callable; the callable is invoked by the server thread when a browser requests ``/image``, at most once
per image (its bytes, or its error, are cached until an update brings a new image). With nobody
watching the page, the callable is never invoked.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, Union
from urllib.parse import urlsplit

__all__ = ["LivePreview", "image_content_type"]

ImageSource = Union[Callable[[], bytes], bytes, bytearray, memoryview]

_PAGE_NAME = "web_page.html"
_FALLBACK_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>batchstyle live preview</title></head>"
    "<body style='background:#222;color:#ddd;font-family:sans-serif'>"
    "<p>The preview page (batchstyle/web_page.html) is missing from this installation. "
    "<a style='color:#8cf' href='/status'>/status</a> and <a style='color:#8cf' href='/image'>/image</a> "
    "still work.</p></body></html>"
).encode("utf-8")


def image_content_type(data: bytes) -> str:
    """The MIME type of encoded image ``data`` from its magic bytes (``application/octet-stream`` if unknown)."""
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (NaN/Infinity are not valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    """Fallback for values ``json`` does not know (numpy scalars, 0-d tensors, paths...)."""
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return _json_safe(item())
        except Exception:  # noqa: BLE001 - anything that is not a scalar falls through to str()
            pass
    return str(obj)


def _load_page() -> bytes:
    try:
        return resources.files("batchstyle").joinpath(_PAGE_NAME).read_bytes()
    except (FileNotFoundError, OSError):
        return _FALLBACK_PAGE


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a connected browser never keeps the process alive or blocks stop()
    # SO_REUSEADDR lets a restarted run rebind a port left in TIME_WAIT; on Windows it would instead let a
    # second server steal a port that is in use, so it is only set elsewhere.
    allow_reuse_address = os.name != "nt"
    preview: "LivePreview"

    def handle_error(self, request, client_address):  # noqa: D102
        # A browser closing its connection mid-response is routine; do not print tracebacks for it.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "batchstyle-preview"
    sys_version = ""
    timeout = 30  # drop idle keep-alive / half-open connections eventually

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silent: no line per request
        pass

    # --- routing ------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(head=True)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD are supported\n",
                   "text/plain; charset=utf-8", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def _dispatch(self, head: bool) -> None:
        path = urlsplit(self.path).path
        preview = self.server.preview
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, preview._page, "text/html; charset=utf-8", head=head)
            elif path == "/status":
                body = json.dumps(_json_safe(preview.snapshot()), default=_json_default,
                                  allow_nan=False).encode("utf-8")
                self._send(HTTPStatus.OK, body, "application/json; charset=utf-8", head=head)
            elif path == "/image":
                data, error = preview._current_image()
                if error is not None:
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"encoding the image failed: {error}\n".encode(),
                               "text/plain; charset=utf-8", head=head)
                elif data is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no image yet\n", "text/plain; charset=utf-8", head=head)
                else:
                    self._send(HTTPStatus.OK, data, image_content_type(data), head=head)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - report, never take the server down
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}\n".encode(),
                       "text/plain; charset=utf-8", head=head)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class LivePreview:
    """A live-preview HTTP server running in a daemon thread.

    ``update`` is cheap (it stores references under a lock) and may be called every optimiser step.
    Its ``image`` is either encoded JPEG/PNG bytes or a zero-argument callable returning them; the
    callable runs **in the server thread**, lazily, when a browser asks for ``/image``, and at most once
    per update: give one that is safe to call from another thread, e.g. one that encodes a snapshot
    (a detached CPU copy) the caller made, not the live tensor being optimised.

    ``host`` ``"0.0.0.0"`` / ``"::"`` listen on all interfaces (the URL then names the loopback
    address); an IPv6 literal host binds IPv6. ``port=0`` picks a free port (see :attr:`url`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080):
        self.host = host
        self.port = port
        self.url: str = ""  # "http://HOST:PORT/" once started
        self._lock = threading.Lock()          # guards the state below; held only briefly
        self._encode_lock = threading.Lock()   # serialises image encoding (at most one call per image)
        self._status: dict[str, Any] = {}
        self._image_version = 0
        self._pending: ImageSource | None = None  # source of the latest image, until encoded
        self._cache: tuple[int, bytes | None, str | None] | None = None  # (version, bytes, error)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._life_lock = threading.Lock()     # guards start/stop
        self._page = _FALLBACK_PAGE

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> str:
        """Bind, start serving in a daemon thread and return :attr:`url` (idempotent while running).

        Raises :class:`OSError` naming the port (and suggesting ``--port``) when it cannot be bound.
        """
        with self._life_lock:
            if self._server is not None:
                return self.url
            self._page = _load_page()
            server_cls = _Server6 if ":" in self.host else _Server
            try:
                server = server_cls((self.host, self.port), _Handler)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    msg = (f"cannot start the live preview: port {self.port} on {self.host} is already in use; "
                           f"choose another one with --port")
                else:
                    msg = (f"cannot start the live preview on {self.host} port {self.port}: "
                           f"{exc.strerror or exc}; try another --port")
                raise OSError(exc.errno, msg) from exc
            server.preview = self
            bound_port = server.server_address[1]
            url_host = self.host
            if url_host in ("", "0.0.0.0"):
                url_host = "127.0.0.1"
            elif url_host == "::":
                url_host = "::1"
            if ":" in url_host:
                url_host = f"[{url_host}]"
            self.url = f"http://{url_host}:{bound_port}/"
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"batchstyle-live-preview:{bound_port}", daemon=True)
            thread.start()
            self._server, self._thread = server, thread
            return self.url

    def stop(self) -> None:
        """Shut the server down and join its thread; returns promptly even with a browser connected.

        Idempotent; a stopped preview may be started again.
        """
        with self._life_lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            if thread is not None and thread.is_alive():
                server.shutdown()  # only when serve_forever runs: otherwise shutdown() would wait forever
            server.server_close()
            if thread is not None:
                thread.join(timeout=5)

    def __enter__(self) -> "LivePreview":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # --- producer side -----------------------------------------------------------------------------------

    def update(self, status: dict | None, image: ImageSource | None = None) -> None:
        """Publish the latest ``status`` (a JSON-able dict; a shallow copy is kept, ``None`` keeps the
        previous one) and, optionally, a new image: encoded bytes or a zero-argument callable returning
        them, invoked later from the server thread (see the class docstring). No encoding happens here.
        """
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
