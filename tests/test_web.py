"""batchstyle.web: the single-image live view (routes, lazy image encoding, lifecycle), the one server
under it (a folder's files with strict containment, bounded requests, many clients) and the batch
dashboard's live routes. Browser tests of the pages are in test_browser.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from batchstyle.web import LiveView, image_content_type

TIMEOUT = 5
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32 + b"fake-png"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"fake-jpeg\xff\xd9"

STATUS = {"scale": 2, "scales": 5, "width": 256, "height": 192, "iteration": 37, "iterations": 500,
          "loss": 1.234, "its_per_sec": 5.1, "gpu_memory_mb": 0, "elapsed": 12.3, "done": False}


@pytest.fixture
def preview():
    p = LiveView(host="127.0.0.1", port=0)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def get_status(p: LiveView) -> dict:
    code, headers, body = get(p.url + "status")
    assert code == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    return json.loads(body)


def port_of(p: LiveView) -> int:
    return int(p.url.rstrip("/").rsplit(":", 1)[1])


def test_url_uses_bound_port(preview):
    assert preview.url.startswith("http://127.0.0.1:")
    assert preview.url.endswith("/")
    assert port_of(preview) > 0


def test_index_page(preview):
    code, headers, body = get(preview.url)
    assert code == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # the page can load nothing from elsewhere
    page = body.decode("utf-8")
    for needle in ('src="/.assets/live.js"', 'href="/.assets/style.css"', 'data-page="stylize"', 'id="state"',
                   'id="view"', "Connecting…"):
        assert needle in page, needle
    code, headers, script = get(preview.url + ".assets/live.js")
    assert code == 200 and headers["Content-Type"].startswith("text/javascript")
    script = script.decode("utf-8")
    for needle in ('fetch("status"', '"image?t="', "Waiting for the first iteration…", "Running", "Finished",
                   "Lost the connection", "toPrecision(6)", "image_version", "new Image()", "naturalWidth"):
        assert needle in script, needle
    code, _, css = get(preview.url + ".assets/style.css")
    assert code == 200 and b"object-fit: contain" in css and b"image-rendering: auto" in css
    for text in (page, script, css.decode()):  # self-contained: nothing from CDNs or other hosts
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert get(preview.url + "index.html")[0] == 200
    assert get(preview.url + ".assets/nope.js")[0] == 404


def test_head_and_unknown_routes(preview):
    code, headers, body = get(preview.url + "status", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert get(preview.url + "nope")[0] == 404
    assert get(preview.url + "favicon.ico")[0] == 404
    assert get(preview.url + "status", method="POST")[0] == 405


def test_image_404_then_png_bytes(preview):
    code, headers, body = get(preview.url + "image")
    assert code == 404 and body
    assert get_status(preview)["has_image"] is False

    preview.update(STATUS, image=PNG)
    code, headers, body = get(preview.url + "image?t=1")
    assert code == 200
    assert body == PNG
    assert headers["Content-Type"] == "image/png"
    assert headers["Cache-Control"] == "no-store"


def test_jpeg_callable_content_type(preview):
    preview.update(STATUS, image=lambda: JPEG)
    code, headers, body = get(preview.url + "image")
    assert code == 200 and body == JPEG
    assert headers["Content-Type"] == "image/jpeg"


def test_image_callable_is_lazy_and_called_once_per_update(preview):
    calls = []

    def encode(data=PNG):
        calls.append(threading.current_thread().name)
        return data

    preview.update(STATUS, image=encode)
    preview.update(dict(STATUS, iteration=38))  # a status-only update keeps the pending image
    assert calls == []  # update() never encodes

    assert get(preview.url + "image")[2] == PNG
    assert len(calls) == 1
    assert calls[0] != threading.current_thread().name  # invoked from the server thread
    assert get(preview.url + "image")[2] == PNG
    assert get(preview.url + "image", method="HEAD")[0] == 200
    assert len(calls) == 1  # cached until a new image arrives

    preview.update(STATUS, image=lambda: (calls.append("second"), JPEG)[1])
    assert len(calls) == 1
    code, headers, body = get(preview.url + "image")
    assert body == JPEG and headers["Content-Type"] == "image/jpeg"
    assert calls[1:] == ["second"]


def test_concurrent_image_requests_encode_once(preview):
    calls = []
    gate = threading.Event()

    def slow_encode():
        calls.append(1)
        gate.wait(TIMEOUT)
        return PNG

    preview.update(STATUS, image=slow_encode)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(preview.url + "image"))) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    # While encoding is blocked, update() and /status must not wait for it.
    preview.update(dict(STATUS, iteration=40))
    assert get_status(preview)["iteration"] == 40
    gate.set()
    for t in threads:
        t.join(TIMEOUT)
    assert [r[0] for r in results] == [200, 200, 200]
    assert all(r[2] == PNG for r in results)
    assert len(calls) == 1


def test_status_reflects_updates_and_versions(preview):
    st = get_status(preview)
    assert st == {"image_version": 0, "has_image": False}

    preview.update(STATUS)
    st = get_status(preview)
    assert st["iteration"] == 37 and st["loss"] == pytest.approx(1.234)
    assert st["image_version"] == 0 and st["has_image"] is False and st["done"] is False

    preview.update(dict(STATUS, iteration=38, loss=1.1), image=PNG)
    st = get_status(preview)
    assert st["iteration"] == 38 and st["loss"] == pytest.approx(1.1)
    assert st["image_version"] == 1 and st["has_image"] is True

    preview.update(dict(STATUS, iteration=39, loss=1.0))  # no image: version unchanged
    st = get_status(preview)
    assert st["iteration"] == 39 and st["image_version"] == 1

    preview.update(dict(STATUS, iteration=40), image=lambda: PNG)
    assert get_status(preview)["image_version"] == 2

    preview.finish()
    st = get_status(preview)
    assert st["done"] is True and st["iteration"] == 40 and st["image_version"] == 2

    preview.finish(dict(STATUS, iteration=500))
    st = get_status(preview)
    assert st["done"] is True and st["iteration"] == 500


def test_status_is_a_copy_and_valid_json(preview):
    status = dict(STATUS)
    preview.update(status)
    status["iteration"] = 999  # the caller mutating its dict afterwards does not leak into the server
    assert get_status(preview)["iteration"] == 37
    preview.update(dict(STATUS, loss=float("nan")))
    code, _, body = get(preview.url + "status")
    assert code == 200 and b"NaN" not in body
    assert json.loads(body)["loss"] is None


def test_update_rejects_bad_image_type(preview):
    with pytest.raises(TypeError):
        preview.update(STATUS, image="not bytes")  # type: ignore[arg-type]


def test_raising_callable_gives_500_and_server_keeps_serving(preview):
    def broken():
        raise RuntimeError("encoder exploded")

    preview.update(STATUS, image=broken)
    code, headers, body = get(preview.url + "image")
    assert code == 500
    assert b"encoder exploded" in body
    assert get_status(preview)["iteration"] == 37
    assert get(preview.url)[0] == 200
    # A callable returning something other than bytes is an error too, not a crash.
    preview.update(STATUS, image=lambda: None)
    assert get(preview.url + "image")[0] == 500
    # The next good image is served.
    preview.update(STATUS, image=PNG)
    assert get(preview.url + "image")[2] == PNG


def test_port_in_use_raises_oserror_naming_port(preview):
    port = port_of(preview)
    other = LiveView(host="127.0.0.1", port=port)
    with pytest.raises(OSError) as info:
        other.start()
    assert str(port) in str(info.value)
    assert "--port" in str(info.value)
    other.stop()  # harmless on a preview that never started
    assert get_status(preview)["has_image"] is False  # the first one is unaffected


def test_stop_is_idempotent_and_frees_port():
    p = LiveView(port=0)
    url = p.start()
    assert p.start() == url  # starting twice is harmless
    port = port_of(p)
    assert get(url + "status")[0] == 200
    p.stop()
    p.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_stop_is_prompt_with_a_client_connected():
    with LiveView(port=0) as p:
        port = port_of(p)
        idle = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)  # a browser that never asks
        half = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        half.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # an unfinished request
        time.sleep(0.05)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.5
    idle.close()
    half.close()


def test_context_manager_returns_started_preview():
    with LiveView(port=0) as p:
        assert p.running and p.url
        assert get(p.url + "status")[0] == 200
    assert not p.running


def test_image_content_type():
    assert image_content_type(PNG) == "image/png"
    assert image_content_type(JPEG) == "image/jpeg"
    assert image_content_type(b"GIF89a....") == "image/gif"
    assert image_content_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_content_type(b"hello") == "application/octet-stream"


SERVER_MODULES = ("__init__", "server", "files", "addresses", "live_view", "contract")  # standard library only
PAGE_MODULES = ("gallery", "gallery_data", "thumbs", "dashboard")  # the batch's pages: they import the batch


def test_no_heavy_imports():
    """The server of batchstyle.web uses the standard library only (checked on its sources, whatever
    __init__ imports); every module of the package is either the server's or a page's."""
    import ast
    from pathlib import Path

    import batchstyle.web as web

    folder = Path(web.__file__).parent
    assert {p.stem for p in folder.glob("*.py")} == set(SERVER_MODULES + PAGE_MODULES)
    imported = set()
    for source in (folder / f"{name}.py" for name in SERVER_MODULES):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):  # within the package: the server's own modules only
                assert node.level == 1 and node.module in SERVER_MODULES, (source.name, node.module)
    assert not imported & {"torch", "ray", "click", "aiohttp", "flask", "numpy", "PIL"}, imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)


def test_server_does_not_keep_process_alive():
    code = ("from batchstyle.web import LiveView; p = LiveView(port=0); p.start(); "
            "import urllib.request; urllib.request.urlopen(p.url + 'status', timeout=5).read(); "
            "print('ok')")  # exits without stop()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ok"
    assert out.stderr == ""  # no per-request log lines


def test_the_batch_and_the_engine_import_nothing_of_the_pages_or_the_cli():
    """The arrows point down: pages -> batch -> engine, the CLI on top (docs/architecture.md)."""
    import ast
    from pathlib import Path

    import batchstyle

    package = Path(batchstyle.__file__).parent
    for layer, above in (("batch", ("web", "cli")), ("engine", ("web", "cli", "batch"))):
        for source in (package / layer).glob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom):
                    names = [("." * node.level) + (node.module or "")]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    target = name.split(".")[1] if name.startswith("batchstyle.") else (
                        name.lstrip(".").split(".")[0] if name.startswith("..") else None)
                    assert target not in above, f"{layer}/{source.name} imports {name}"
