"""batchstyle's one HTTP server: a folder's files, read-only, plus live routes from a provider.

Standard library only (``http.server`` in a daemon thread). What it serves, in this order:

* the provider's routes (``Routes.reply``): live JSON state and preview images held in memory;
* ``/.assets/NAME``: the pages' own scripts and styles (``batchstyle/web/assets``);
* with a ``root``: the files of that folder that ``allow`` names (``/`` is ``index.html``), judged
  where they really are, every symlink resolved (see :mod:`batchstyle.web.files`), never a listing.

Only GET and HEAD (anything else: 405). Requests are bounded: a request line over 8 KiB is refused
with 414, headers over 16 KiB with 431; sockets time out; at most ``MAX_CONNECTIONS`` requests are
handled at once (503 beyond). Bound to a loopback address (the default), it answers only requests
whose ``Host`` is a loopback name or address, so that a web page elsewhere cannot read it through DNS
rebinding. Bound to any other address it answers anyone who can reach it, without authentication
(:meth:`WebServer.urls` lists where). Every response says ``nosniff``; pages may only load from this server.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import json
import math
import os
import shutil
import socket
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .addresses import reachable_urls, url_of
from .contract import ASSETS_ROUTE, PAGE_ASSETS
from .files import Allow, Refused, content_type, open_served

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 256
SOCKET_TIMEOUT = 10.0  # seconds a client may take to send its request or read the answer
ASSETS = PAGE_ASSETS  # served at /.assets/NAME
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Reply:
    """One response of a live route."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class Routes(Protocol):
    """A provider of live routes: a :class:`Reply` for the paths it knows, ``None`` for the others."""

    def reply(self, path: str, query: str) -> Reply | None: ...


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, (text.rstrip("\n") + "\n").encode("utf-8"), "text/plain; charset=utf-8")


def json_bytes(data: Any) -> bytes:
    """Compact JSON; NaN and infinities become ``null`` (browsers reject them)."""
    return json.dumps(_json_safe(data), default=_json_default, allow_nan=False, separators=(",", ":")).encode()


def json_reply(data: Any) -> Reply:
    return Reply(200, json_bytes(data), "application/json; charset=utf-8")


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


def asset(name: str) -> bytes:
    """A page asset shipped with batchstyle (``batchstyle/web/assets/NAME``)."""
    return resources.files("batchstyle.web").joinpath("assets", name).read_bytes()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    """Values ``json`` does not know (numpy scalars, 0-d tensors, paths...)."""
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return _json_safe(item())
        except Exception:  # noqa: BLE001 - anything that is not a scalar falls through to str()
            pass
    return str(obj)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8080`` is ``[::1]``)."""
    return header.split("]")[0] + "]" if header.startswith("[") else header.rsplit(":", 1)[0]


class _HeaderBudget:
    """``rfile`` as the header parser sees it: at most ``budget`` bytes, then "line too long" (431)."""

    def __init__(self, raw, budget: int):
        self._raw, self._left = raw, budget

    def readline(self, limit: int = -1) -> bytes:
        if self._left <= 0:
            raise http.client.LineTooLong("header section")
        line = self._raw.readline(self._left + 1 if limit < 0 else min(limit, self._left + 1))
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong("header section")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a connected browser never keeps the process alive or blocks stop()
    # SO_REUSEADDR lets a restarted run rebind a port left in TIME_WAIT; on Windows it would instead let a
    # second server steal a port that is in use, so it is only set elsewhere.
    allow_reuse_address = os.name != "nt"
    request_queue_size = 128  # the listen backlog: a hundred tabs connecting at once are not turned away
    web: "WebServer"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):  # noqa: D102
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):  # noqa: D102
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):  # noqa: D102
        # A browser closing its connection mid-response is routine; do not print tracebacks for it.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "batchstyle"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silent: no line per request
        pass

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        raw = self.rfile
        self.rfile = _HeaderBudget(raw, MAX_HEADER_BYTES)
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = raw
        if parsed and self.command not in ("GET", "HEAD"):
            self._send(text_reply(405, "only GET and HEAD are supported"), {"Allow": "GET, HEAD"})
            return False
        return parsed

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_HEAD = do_GET  # noqa: N815 - _send leaves the body out

    def _dispatch(self) -> None:
        web = self.server.web
        host = _host_name(self.headers.get("Host") or "")
        if web.loopback_only and host and not _is_loopback(host):
            self._send(text_reply(403, "this server answers only to localhost addresses"))
            return
        parts = urlsplit(self.path)
        try:
            reply = web.routes.reply(parts.path, parts.query) if web.routes is not None else None
            if reply is None and parts.path.startswith(ASSETS_ROUTE):
                reply = self._asset(parts.path[len(ASSETS_ROUTE):])
        except Exception as exc:  # noqa: BLE001 - report, never take the server down
            reply = text_reply(500, f"{type(exc).__name__}: {exc}")
        if reply is not None:
            self._send(reply)
        elif web.root is not None:
            self._file(web.root, parts.path, web.allow)
        else:
            self._send(text_reply(404, "not found"))

    @staticmethod
    def _asset(name: str) -> Reply:
        if name not in ASSETS:
            return text_reply(404, "not found")
        return Reply(200, asset(name), content_type(name))

    def _file(self, root: Path, url_path: str, allow: Allow) -> None:
        try:
            handle, kind = open_served(root, url_path, allow)
        except Refused as exc:
            self._send(text_reply(exc.status, str(exc)))
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            immutable = url_path.startswith("/.batchstyle/thumbs/")  # named by content hash
            self._head(200, kind, size,
                       {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"})
            if self.command != "HEAD":
                shutil.copyfileobj(handle, self.wfile, 256 * 1024)

    def _head(self, status: int, kind: str, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if kind.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        extra = dict(extra or {})
        extra.setdefault("Cache-Control", "no-store")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def _send(self, reply: Reply, extra: dict[str, str] | None = None) -> None:
        self._head(reply.status, reply.content_type, len(reply.body), {**reply.headers, **(extra or {})})
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class WebServer:
    """The server in a daemon thread: ``routes``' live replies and the files of ``root`` that ``allow``
    names (``allow(name)``: the content type of a file that may be served, None for the others).

    ``host`` ``"0.0.0.0"`` / ``"::"`` listen on all interfaces (:attr:`url` then names the loopback
    address, :meth:`urls` every address found); an IPv6 literal host binds IPv6. ``port=0`` picks a
    free port (see :attr:`url`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, root: str | os.PathLike | None = None,
                 allow: Allow | None = None, routes: Routes | None = None):
        if root is not None and allow is None:
            raise TypeError("a served folder needs allow: which of its files may be served")
        self.host, self.port = host, port
        self.root = Path(root) if root is not None else None
        self.allow = allow
        self.routes = routes
        self.loopback_only = _is_loopback(host)
        self.url = ""  # "http://HOST:PORT/" once started
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._life_lock = threading.Lock()

    def start(self) -> str:
        """Bind, serve in a daemon thread and return :attr:`url` (idempotent while running).

        Raises :class:`OSError` naming the port (and suggesting ``--port``) when it cannot be bound.
        """
        with self._life_lock:
            if self._server is not None:
                return self.url
            server = self._bind()
            server.web = self
            self.url = url_of(self.host, server.server_address[1])
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"batchstyle-web:{server.server_address[1]}", daemon=True)
            thread.start()
            self._server, self._thread = server, thread
            return self.url

    def _bind(self) -> _Server:
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            return server_cls((self.host, self.port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                msg = f"port {self.port} on {self.host} is already in use; choose another one with --port"
            else:
                msg = f"cannot listen on {self.host} port {self.port}: {exc.strerror or exc}; try another --port"
            raise OSError(exc.errno, msg) from exc

    def stop(self) -> None:
        """Shut down and join the thread; prompt even with a browser connected. Idempotent; restartable."""
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

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def open_to_network(self) -> bool:
        """Whether other machines can reach this server: it is bound to an address that is not loopback."""
        bound = self._server.server_address[0] if self._server is not None else self.host
        try:
            return not ipaddress.ip_address(bound.split("%")[0]).is_loopback
        except ValueError:  # a name, before it is bound
            return not _is_loopback(bound)

    def urls(self) -> list[str]:
        """Where this running server can be reached: :attr:`url` first, then, on every interface
        (``0.0.0.0``, ``::``), each address of this machine that is found."""
        if self._server is None:
            return []
        sock = self._server.socket
        dual = sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        return reachable_urls(self.host, self._server.server_address[1], dual)

    def __enter__(self) -> "WebServer":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


__all__ = ["WebServer", "Reply", "Routes", "text_reply", "json_reply", "json_bytes", "image_content_type", "asset"]
