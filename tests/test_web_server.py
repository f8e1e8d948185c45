"""The one web server (batchstyle.web.server) against hostile requests: nothing outside its folder is
ever served (``..``, encoded and double-encoded variants, backslashes, NUL, symlinks, absolute paths,
private dot-files), bad requests get a 4xx, and it keeps serving through disconnects, idle
connections and a hundred clients at once."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from batchstyle.web import server as web_server
from batchstyle.web.server import Reply, WebServer

SECRET = b"the secret outside the folder"
TIMEOUT = 5


@pytest.fixture
def site(tmp_path):
    """root/ with a few files, private files, a large file and symlinks in and out; outside/ with a secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    for rel, data in {"index.html": b"<!doctype html><title>gallery</title>", "a.png": b"\x89PNG-not-really",
                      "sub/b.txt": b"bee", ".batchstyle/gallery/summary.js": b"window.x=1;",
                      ".batchstyle/thumbs/abc.jpg": b"\xff\xd8thumb", ".batchstyle/done/r.json": SECRET,
                      ".batchstyle/lock": SECRET, ".batchstyle/gallery/.summary.js.123.tmp": SECRET,
                      ".hidden": SECRET, "big.png": b"\x89PNG" + b"x" * (4 << 20)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret.txt", root / "filelink")
    os.symlink(root / "a.png", root / "inner_link")
    with WebServer("127.0.0.1", 0, root=root) as server:
        yield server, root, outside


def port(server: WebServer) -> int:
    return int(server.url.rstrip("/").rsplit(":", 1)[1])


def raw(server: WebServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port(server)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/"):  # the HTTP/0.9-style answer to a request line that is not HTTP/1.x
        return int(re.search(rb"Error code: (\d+)", data).group(1)), {}, data
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def get(server: WebServer, target: str, method: str = "GET", host: str | None = None) -> tuple[int, dict, bytes]:
    host = host or f"127.0.0.1:{port(server)}"
    return raw(server, f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1"))


def test_serves_the_folder_read_only(site):
    server, root, _ = site
    code, headers, body = get(server, "/")
    assert code == 200 and body == (root / "index.html").read_bytes()
    assert headers["Content-Type"].startswith("text/html") and "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(server, "/a.png")[:1] == (200,) and get(server, "/a.png")[1]["Content-Type"] == "image/png"
    assert get(server, "/a%2Epng")[2] == b"\x89PNG-not-really"  # an encoded dot in a name is just a dot
    assert get(server, "/sub/b.txt")[2] == b"bee"
    assert get(server, "/.batchstyle/gallery/summary.js")[2] == b"window.x=1;"
    code, headers, body = get(server, "/.batchstyle/thumbs/abc.jpg")
    assert code == 200 and "immutable" in headers["Cache-Control"]  # named by content hash
    assert get(server, "/inner_link")[2] == b"\x89PNG-not-really"  # a symlink that stays inside is fine
    code, headers, body = get(server, "/a.png", method="HEAD")
    assert code == 200 and body == b"" and headers["Content-Length"] == str(len(b"\x89PNG-not-really"))


@pytest.mark.parametrize("target", [
    "/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt", "/.%2e/outside/secret.txt",
    "/..%2foutside%2fsecret.txt", "/%2e%2e%2foutside%2fsecret.txt", "/sub/../../outside/secret.txt",
    "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/%252e%252e/outside/secret.txt", "/%252e%252e%252foutside%252fsecret.txt",
    "/..\\outside\\secret.txt", "/%5c..%5coutside%5csecret.txt", "/..%5coutside%5csecret.txt", "/..%255coutside",
    "/link/secret.txt", "/filelink", "/%c0%ae%c0%ae/outside/secret.txt", "/a.png%00.txt", "/a.png\x00",
    "/.batchstyle/done/r.json", "/.batchstyle/lock", "/.batchstyle/gallery/../done/r.json",
    "/.batchstyle/gallery/%2e%2e/done/r.json", "/.batchstyle/gallery/.summary.js.123.tmp", "/.hidden", "/%2ehidden",
    "/sub/", "/sub", "/C:/Windows/win.ini", "/c:%5cwindows%5cwin.ini", "http://evil.example/../outside/secret.txt",
    "*", "..", "/./a.png",
])
def test_nothing_outside_the_folder_or_private_is_served(site, target):
    server, _, outside = site
    code, _, body = get(server, target)
    assert 400 <= code < 500, (target, code)
    assert SECRET not in body


def test_absolute_paths_are_refused(site):
    server, _, outside = site
    secret = str(outside / "secret.txt")
    for target in ("/" + secret, secret.replace("/", "%2F"), "/" + secret.replace("/", "%2F"), "/etc/passwd",
                   "//etc/passwd", "/%2Fetc%2Fpasswd"):
        code, _, body = get(server, target)
        assert 400 <= code < 500 and SECRET not in body and b"root:" not in body, target


def test_bad_requests_get_4xx_and_the_server_goes_on(site):
    server, _, _ = site
    assert get(server, "/" + "a" * 20_000)[0] == 414  # request line over 8 KiB
    assert get(server, "/" + "a" * 70_000)[0] == 414
    big_header = f"GET / HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 20_000}\r\n\r\n".encode()
    assert raw(server, big_header)[0] == 431
    many = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"X-{i}: {'v' * 200}\r\n" for i in range(150)) + "\r\n"
    assert raw(server, many.encode())[0] == 431
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"):
        code, headers, _ = get(server, "/index.html", method=method)
        assert code == 405 and headers["Allow"] == "GET, HEAD", method
    assert raw(server, b"GET / HTTX/1.1\r\n\r\n")[0] == 400
    assert raw(server, b"GET / HTTP/1.1 extra\r\n\r\n")[0] == 400
    assert raw(server, b"HELLO\r\n\r\n")[0] == 400
    assert get(server, "/")[0] == 200


def test_a_loopback_server_answers_only_to_loopback_names(site):
    """A page elsewhere cannot read the dashboard through DNS rebinding (its Host is its own name)."""
    server, _, _ = site
    assert get(server, "/", host="evil.example:8080")[0] == 403
    assert get(server, "/", host="evil.example")[0] == 403
    for host in (f"localhost:{port(server)}", "127.0.0.1", "[::1]:8080", "app.localhost"):
        assert get(server, "/", host=host)[0] == 200, host
    assert raw(server, b"GET / HTTP/1.0\r\n\r\n")[0] == 200  # no Host at all (HTTP/1.0 tools)


def test_clients_that_disconnect_or_idle_do_not_stop_it(site, capfd):
    server, _, _ = site
    for _ in range(20):  # ask for 4 MiB and hang up at once
        sock = socket.create_connection(("127.0.0.1", port(server)), timeout=TIMEOUT)
        sock.sendall(b"GET /big.png HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.close()
    idle = [socket.create_connection(("127.0.0.1", port(server)), timeout=TIMEOUT) for _ in range(20)]
    for sock in idle[:10]:
        sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")  # a request that never ends
    try:
        code, _, body = get(server, "/big.png")
        assert code == 200 and len(body) == 4 + (4 << 20)
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in capfd.readouterr().err


def test_connections_beyond_the_limit_get_503(tmp_path, monkeypatch):
    monkeypatch.setattr(web_server, "MAX_CONNECTIONS", 3)
    (tmp_path / "index.html").write_text("hi")
    with WebServer("127.0.0.1", 0, root=tmp_path) as server:
        held = [socket.create_connection(("127.0.0.1", port(server)), timeout=TIMEOUT) for _ in range(3)]
        time.sleep(0.2)
        try:
            assert get(server, "/")[0] == 503
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + TIMEOUT
        while get(server, "/")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


class Counter:
    """Live routes that count how often they are asked."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def reply(self, path: str, query: str) -> Reply | None:
        if path != "/.live/state":
            return None
        with self.lock:
            self.calls += 1
        return Reply(200, b'{"ok":true}', "application/json")


def test_a_hundred_clients_at_once(tmp_path):
    (tmp_path / "index.html").write_text("hi")
    routes = Counter()
    results: list[int] = []
    with WebServer("127.0.0.1", 0, root=tmp_path, routes=routes) as server:
        def tab():
            for _ in range(5):
                results.append(get(server, "/.live/state")[0])
                results.append(get(server, "/")[0])

        tabs = [threading.Thread(target=tab) for _ in range(100)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(60)
        assert results.count(200) == 1000 and routes.calls == 500
        assert get(server, "/.live/state")[2] == b'{"ok":true}'


def test_a_server_without_a_folder_serves_only_its_routes(tmp_path):
    with WebServer("127.0.0.1", 0, routes=Counter()) as server:
        assert get(server, "/.live/state")[0] == 200
        assert get(server, "/")[0] == 404
        assert get(server, "/../etc/passwd")[0] == 404
        assert get(server, "/.assets/live.js")[0] == 200  # the pages' own code
        assert get(server, "/.assets/../server.py")[0] == 404


def test_port_in_use_names_the_port_and_the_option(tmp_path):
    with WebServer("127.0.0.1", 0, root=tmp_path) as first:
        with pytest.raises(OSError) as info:
            WebServer("127.0.0.1", port(first), root=tmp_path).start()
    assert str(port(first)) in str(info.value) and "--port" in str(info.value)
