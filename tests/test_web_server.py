"""The one web server (batchstyle.web.server) against hostile requests: nothing outside its folder is
ever served (``..``, encoded and double-encoded variants, backslashes, NUL, symlinks, absolute paths,
private dot-files), bad requests get a 4xx, and it keeps serving through disconnects, idle
connections and a hundred clients at once. Over a real output directory (the dashboard of
``run --web``, local and in object storage): only the gallery's files and the images and thumbnails
its data names are served, judged where they really are, whatever a request or a symlink calls them."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from batchstyle.web import server as web_server
from batchstyle.web.files import content_type
from batchstyle.web.server import Reply, WebServer
from support.network import addresses_of_this_machine
from support.photos import png_bytes

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
                      "sub/b.jpg": b"bee", "notes.txt": SECRET, "page.svg": SECRET,
                      ".batchstyle/gallery/summary.js": b"window.x=1;",
                      ".batchstyle/thumbs/abc.jpg": b"\xff\xd8thumb", ".batchstyle/done/r.json": SECRET,
                      ".batchstyle/lock": SECRET, ".batchstyle/gallery/.summary.js.123.tmp": SECRET,
                      ".hidden": SECRET, "big.png": b"\x89PNG" + b"x" * (4 << 20)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret.txt", root / "filelink")
    os.symlink(root / "a.png", root / "inner_link.png")
    os.mkfifo(root / "pipe.png")  # opening it for reading would block until a writer came
    with WebServer("127.0.0.1", 0, root=root, allow=content_type) as server:  # every file of a known type
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
    assert get(server, "/sub/b.jpg")[2] == b"bee"
    assert get(server, "/.batchstyle/gallery/summary.js")[2] == b"window.x=1;"
    code, headers, body = get(server, "/.batchstyle/thumbs/abc.jpg")
    assert code == 200 and "immutable" in headers["Cache-Control"]  # named by content hash
    assert get(server, "/inner_link.png")[2] == b"\x89PNG-not-really"  # a symlink that stays inside is fine
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
    "*", "..", "/./a.png", "/notes.txt", "/page.svg", "/.batchstyle/thumbs/%2e%2e/lock", "/pipe.png",
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
    with WebServer("127.0.0.1", 0, root=tmp_path, allow=content_type) as server:
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
    with WebServer("127.0.0.1", 0, root=tmp_path, allow=content_type, routes=routes) as server:
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
    with WebServer("127.0.0.1", 0, routes=Counter()) as first:
        with pytest.raises(OSError) as info:
            WebServer("127.0.0.1", port(first), routes=Counter()).start()
    assert str(port(first)) in str(info.value) and "--port" in str(info.value)


# -- the dashboard of `run --web` over a real output directory ----------------------------------------

PLAN_SECRET = "/inputs-path-that-only-the-records-know"


def gallery_rows(out) -> list[dict]:
    """The rows of the gallery's data as written (``...shards[k]=JSON;``)."""
    import json

    folder = Path(out.root) / ".batchstyle" / "gallery"
    rows = []
    for shard in sorted(folder.glob("shard-*.js")):
        text = shard.read_bytes()
        if not shard.is_symlink():
            rows += json.loads(text[text.index(b"]=") + 2:].rstrip(b";\n"))
    return rows


def planned_output(tmp: Path, photos: int, done: int):
    """An output directory planned for ``photos`` images in one style, the first ``done`` of them made."""
    from batchstyle.batch.outdir import ItemRecord, PlanItem, open_output_dir
    from support.photos import make_photo

    inputs = tmp / "inputs-path-that-only-the-records-know"
    inputs.mkdir()
    for i in range(photos):
        make_photo(40, 30, i).save(inputs / f"p{i}.png")
    make_photo(20, 20, 9).save(inputs / "style.png")
    out = open_output_dir(tmp / "out")
    out.create()
    plan = [PlanItem(f"id{i}", f"p{i}__style.png", 2, str(inputs / f"p{i}.png"), [str(inputs / "style.png")])
            for i in range(photos)]
    out.write_plan(plan, {})
    records = [ItemRecord(id=e.id, output=e.output, line=e.line, content=e.content, styles=e.styles, settings={},
                          weights="w") for e in plan]
    for record in records[:done]:
        out.write_result(record, png_bytes(make_photo(40, 30, 50)))
    return out, records


def dashboard_server(out, gallery=None) -> WebServer:
    """The server exactly as ``run --web`` makes it (cli/batch_view.py)."""
    from batchstyle.web.dashboard import Dashboard

    dashboard = Dashboard(gallery=gallery, out=out)
    return WebServer("127.0.0.1", 0, root=dashboard.root, allow=dashboard.allow, routes=dashboard)


@pytest.fixture(scope="module")
def output_site(tmp_path_factory):
    """A finished gallery (three images done, one pending) with its run's lock held, and what others
    left there: a text file, a page, images no record names, symlinks named like images into
    ``.batchstyle/`` and out of the directory, two done images replaced by such symlinks."""
    from batchstyle.web.gallery import rebuild_gallery

    tmp = tmp_path_factory.mktemp("site")
    out, _ = planned_output(tmp, 4, 3)
    rebuild_gallery(out)
    lock = out.lock().acquire()
    root = Path(out.root)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"\x89PNG" + SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    (root / "notes.html").write_bytes(b"<script>alert('" + SECRET + b"')</script>")
    (root / "stray.png").write_bytes(b"\x89PNG" + SECRET)  # an image no record names
    (root / "p3__style.png").write_bytes(b"\x89PNG" + SECRET)  # the pending image's name, but no record
    (root / "sub").mkdir()
    (root / "sub" / "x.png").write_bytes(b"\x89PNG" + SECRET)
    os.symlink(".batchstyle/plan.json", root / "alias.png")
    os.symlink(".batchstyle/lock", root / "lock.png")
    os.symlink(outside / "secret.png", root / "outside.png")
    os.symlink(outside, root / "elsewhere")
    for done, target in (("p1__style.png", ".batchstyle/plan.json"), ("p2__style.png", str(outside / "secret.png"))):
        (root / done).unlink()
        os.symlink(target, root / done)  # a name the gallery shows, now pointing where nothing is served
    os.symlink("../plan.json", root / ".batchstyle" / "gallery" / "shard-00042.js")  # a data file's name
    try:
        with dashboard_server(out) as server:
            yield server, out
    finally:
        lock.release()


def assert_private(code: int, body: bytes, target: str) -> None:
    assert code == 404, (target, code, body[:200])
    assert SECRET not in body and PLAN_SECRET.encode() not in body and b'"pid"' not in body, target


def test_the_dashboard_serves_the_gallery_and_what_its_data_names(output_site):
    from batchstyle.web.server import asset

    server, out = output_site
    root = Path(out.root)
    code, headers, body = get(server, "/")
    assert code == 200 and body == asset("gallery.html") and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("summary.js", "text/javascript"), ("shard-00000.js", "text/javascript"),
                       ("gallery.js", "text/javascript"), ("live.js", "text/javascript"), ("style.css", "text/css")):
        code, headers, body = get(server, f"/.batchstyle/gallery/{name}")
        assert code == 200 and headers["Content-Type"].startswith(kind), name
        assert body == (root / ".batchstyle" / "gallery" / name).read_bytes(), name
    code, headers, body = get(server, "/p0__style.png")
    assert code == 200 and headers["Content-Type"] == "image/png" and body == (root / "p0__style.png").read_bytes()
    [row] = [r for r in gallery_rows(out) if r["output"] == "p0__style.png"]
    for thumb in (row["thumb"], row["content_thumb"], row["styles"][0]["thumb"]):  # the result's, its inputs'
        code, headers, body = get(server, f"/.batchstyle/thumbs/{thumb}")
        assert code == 200 and headers["Content-Type"] == "image/jpeg" and body.startswith(b"\xff\xd8"), thumb
        assert "immutable" in headers["Cache-Control"]
    code, headers, body = get(server, "/p0__style.png", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) == (root / "p0__style.png").stat().st_size


@pytest.mark.parametrize("target", [
    "/secret.txt", "/notes.html", "/stray.png", "/p3__style.png", "/sub/x.png", "/alias.png", "/lock.png",
    "/outside.png", "/elsewhere/secret.png", "/p1__style.png", "/p2__style.png",
    "/.batchstyle/gallery/shard-00042.js",
    "/.batchstyle/plan.json", "/.batchstyle/lock", "/.batchstyle/done/id0.json", "/.batchstyle/thumbs/index.json",
    "/.batchstyle/hashes.json", "/.batchstyle/gallery/", "/.batchstyle/thumbs/", "/.batchstyle/",
    "/%2ebatchstyle/plan.json", "/%2Ebatchstyle%2Fplan.json", "/%252ebatchstyle/plan.json",
    "/.batchstyle/gallery/..%2fplan.json", "/.batchstyle/gallery/%2e%2e/plan.json", "/.batchstyle/thumbs/../lock",
    "/.batchstyle/thumbs/%2e%2e%2f%2e%2e%2fsecret.txt", "/.batchstyle%5cplan.json", "/.batchstyle\\plan.json",
    "/.batchstyle/gallery%5c..%5cplan.json", "/.BATCHSTYLE/plan.json", "/.Batchstyle/gallery/summary.js",
    "/.batchstyle/GALLERY/summary.js", "/P0__STYLE.PNG", "/p0__style.PNG", "//secret.txt", "//.batchstyle/plan.json",
    "/sub//x.png", "/.batchstyle//plan.json", "/.batchstyle/gallery//summary.js", "/p0__style.png/",
    "/./p0__style.png", "/sub/../p0__style.png", "/p0__style.png%00", "/p0__style.png%2500", "/INDEX.HTML",
    "/.batchstyle/gallery/summary.js%00.png", "/.live/../.batchstyle/plan.json",
])
def test_the_dashboard_serves_nothing_else_however_it_is_asked_for(output_site, target):
    server, _ = output_site
    code, _, body = get(server, target)
    assert_private(code, body, target)


def test_a_live_gallery_names_each_image_once_it_is_recorded(tmp_path):
    """While the batch runs: an image is served once its record is written and the gallery's data
    names it, not because a file of that name appeared before."""
    from batchstyle.web.gallery import Gallery

    out, records = planned_output(tmp_path, 2, 1)
    gallery = Gallery(out).start()
    out.watch(gallery)
    try:
        with dashboard_server(out, gallery) as server:
            deadline = time.monotonic() + TIMEOUT
            while gallery.names("p0__style.png") is not True:
                assert time.monotonic() < deadline, "the gallery wrote no data"
                time.sleep(0.02)
            assert get(server, "/p0__style.png")[0] == 200
            (Path(out.root) / "p1__style.png").write_bytes(b"\x89PNG" + SECRET)  # its name, no record
            assert_private(*get(server, "/p1__style.png")[::2], "/p1__style.png")
            from support.photos import make_photo

            image = png_bytes(make_photo(40, 30, 51))
            out.write_result(records[1], image)
            while (answer := get(server, "/p1__style.png"))[0] != 200:
                assert time.monotonic() < deadline + TIMEOUT, answer
                time.sleep(0.02)
            assert answer[1]["Content-Type"] == "image/png" and answer[2] == image
    finally:
        gallery.close(budget=0)


def test_a_remote_output_directory_is_served_by_the_same_rules(s3, tmp_path):
    """An output directory in object storage is read through the dashboard: the same allow-list."""
    import uuid

    from batchstyle.batch.outdir import PlanItem, open_output_dir
    from batchstyle.web.gallery import rebuild_gallery
    from support.photos import make_photo

    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    local, records = planned_output(tmp_path, 2, 0)
    out = open_output_dir(f"s3://{bucket}/out")
    out.write_plan([PlanItem(r.id, r.output, r.line, r.content, r.styles) for r in records], {})
    image = png_bytes(make_photo(40, 30, 50))
    out.write_result(records[0], image)
    rebuild_gallery(out)
    for rel, data in {"secret.txt": SECRET, "notes.html": b"<script>" + SECRET + b"</script>",
                      "stray.png": b"\x89PNG" + SECRET, "p1__style.png": b"\x89PNG" + SECRET}.items():
        out.write_file(rel, data)
    with dashboard_server(out) as server:
        code, headers, body = get(server, "/p0__style.png")
        assert code == 200 and headers["Content-Type"] == "image/png" and body == image
        [row] = [r for r in json_rows(out) if r["output"] == "p0__style.png"]
        code, headers, body = get(server, f"/.batchstyle/thumbs/{row['thumb']}")
        assert code == 200 and headers["Content-Type"] == "image/jpeg"
        assert get(server, "/")[0] == 200 and get(server, "/.batchstyle/gallery/summary.js")[0] == 200
        for target in ("/secret.txt", "/notes.html", "/stray.png", "/p1__style.png", "/.batchstyle/plan.json",
                       "/.batchstyle/thumbs/index.json", "/%2ebatchstyle/plan.json",
                       "/.batchstyle/gallery/..%2fplan.json", "/.BATCHSTYLE/plan.json", "/P0__STYLE.PNG"):
            assert_private(*get(server, target)[::2], target)


def json_rows(out) -> list[dict]:
    import json

    text = out.read_file(".batchstyle/gallery/shard-00000.js")
    return json.loads(text[text.index(b"]=") + 2:].rstrip(b";\n"))


def test_a_server_on_every_interface_says_so_and_where_it_is_reached():
    loopback = WebServer("127.0.0.1", 0, routes=Counter())
    anywhere = WebServer("0.0.0.0", 0, routes=Counter())
    with loopback, anywhere:
        assert not loopback.open_to_network and loopback.urls() == [loopback.url]
        urls = anywhere.urls()
        assert anywhere.open_to_network and urls[0] == anywhere.url == f"http://127.0.0.1:{port(anywhere)}/"
        assert get(anywhere, "/.live/state", host="evil.example")[0] == 200  # open to any name, as it says
        for url in urls[1:]:  # each an IPv4 address of this machine: a socket can be bound to it
            host = url.split("//")[1].rsplit(":", 1)[0]
            with socket.socket() as probe:
                probe.bind((host, 0))
        expected = addresses_of_this_machine(4)
        assert {f"http://{a}:{port(anywhere)}/" for a in expected} <= set(urls)

