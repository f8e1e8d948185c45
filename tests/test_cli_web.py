"""``batchstyle run`` writes the gallery, ``run --web`` serves the dashboard, ``status --html`` rebuilds
the gallery: real processes with the fake backend, checked over HTTP and on disk (the pages themselves
are checked in a browser by test_browser.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.network import addresses_of_this_machine
from support.photos import folder_job, png_bytes
from support.processes import FAKE_CLI, hold_lock

pytestmark = pytest.mark.ray


def batchstyle(*args, fake: str | None = "iters=4,sleep=0.01,scales=2", timeout: float = 240):
    command = [sys.executable, *([FAKE_CLI, fake] if fake else ["-m", "batchstyle"]), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def summary(out: Path) -> dict:
    text = (out / ".batchstyle" / "gallery" / "summary.js").read_text()
    return json.loads(text.split(".summary=", 1)[1].rstrip(";\n"))


def http(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture
def job(tmp_path):
    return folder_job(tmp_path, "photos", 4, (48, 36), 50, "manifest.csv")


def test_a_run_writes_the_gallery_and_status_html_rebuilds_it(job):
    root, manifest = job
    out = root / "out"
    result = batchstyle("run", manifest, "-o", out, "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Gallery: {out / 'index.html'}" in result.stdout
    assert (out / "index.html").is_file()
    assert summary(out)["counts"] == {"done": 4, "failed": 0, "pending": 0} and summary(out)["state"] == "finished"
    # a directory from before there was a gallery
    (out / "index.html").unlink()
    shutil.rmtree(out / ".batchstyle" / "gallery")
    shutil.rmtree(out / ".batchstyle" / "thumbs")
    status = batchstyle("status", out, "--html", fake=None)
    assert status.returncode == 0, status.stderr
    assert f"Wrote {out / 'index.html'} (4 image(s))" in status.stdout
    assert (out / "index.html").is_file() and summary(out)["counts"]["done"] == 4
    assert len(list((out / ".batchstyle" / "thumbs").glob("*.jpg"))) == 4 + 4 + 1  # photos, results, one style
    holder = hold_lock(out)
    try:
        busy = batchstyle("status", out, "--html", fake=None)
        assert busy.returncode == 0 and "A run is in progress there; it keeps" in busy.stdout
    finally:
        holder.kill()
        holder.wait()


def test_run_web_on_a_busy_port_is_a_clear_error_before_anything_starts(job):
    root, manifest = job
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = batchstyle("run", manifest, "-o", root / "out", "--web", "--port", port)
    assert result.returncode == 2
    assert f"--web: port {port} on 127.0.0.1 is already in use; choose another one with --port" in result.stderr
    assert not (root / "out" / ".batchstyle" / "plan.json").exists()


def test_run_web_on_every_interface_warns_and_lists_the_addresses_it_is_reached_at(job):
    root, manifest = job
    out = root / "out"
    _all_done_without_ray(manifest, out)
    result = batchstyle("run", manifest, "-o", out, "--plain", "--web", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 to make" in result.stdout
    lines = result.stdout.splitlines()
    [warning] = [ln for ln in lines if ln.startswith("warning:")]
    assert "open to the network (--host 0.0.0.0), without authentication" in warning
    urls = [ln.split()[-1] for ln in lines if ln.startswith(("Live dashboard at ", "  and at http"))]
    port = urls[0].rstrip("/").rsplit(":", 1)[1]
    assert urls[0] == f"http://127.0.0.1:{port}/" and f"on port {port}" in warning
    assert lines.index(warning) < lines.index(f"Live dashboard at {urls[0]}")  # said before the address
    addresses = addresses_of_this_machine(4)
    assert {f"http://{a}:{port}/" for a in addresses} <= set(urls[1:]), (addresses, urls)
    if not addresses:
        assert any("none could be found here" in ln for ln in lines)


def _all_done_without_ray(manifest: Path, out: Path) -> None:
    """Make every image of the manifest as the fake backend's run would record it, here, without Ray."""
    from batchstyle.batch.manifest import read_manifest
    from batchstyle.batch.outdir import ItemRecord, open_output_dir
    from batchstyle.batch.plan import make_plan
    from support.photos import make_photo

    directory = open_output_dir(out)
    for item in make_plan(read_manifest(manifest), directory, "fake").todo:
        record = ItemRecord(id=item.id, output=item.output, line=item.line, content=str(item.content),
                            styles=[str(s) for s in item.styles], settings=item.settings.to_dict(), weights="fake")
        directory.write_result(record, png_bytes(make_photo(40, 30, 1)))


def test_run_web_serves_the_running_batch_and_only_the_output_directory(job):
    root, manifest = job
    out = root / "out"
    proc = subprocess.Popen([sys.executable, FAKE_CLI, "iters=10,sleep=0.2,scales=2", "run", str(manifest), "-o",
                             str(out), "--plain", "--web", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        url = _wait(lambda: next((ln.split()[-1] for ln in lines if ln.startswith("Live dashboard at ")), None),
                    "the URL", lines)
        live = _wait(lambda: _with_preview(url), "a running image with a preview", lines)
        [item] = [i for w in live["workers"] for i in w["items"] if "preview" in i][:1]
        assert {"output", "scale", "scales", "iteration", "iterations", "loss", "eta"} <= set(item)
        assert live["counts"]["total"] == 4 and "images_per_hour" in live and "eta" in live
        code, kind, body = http(url + ".live/preview/" + item["id"])
        assert code == 200 and kind == "image/jpeg" and body.startswith(b"\xff\xd8")
        assert http(url)[0] == 200 and b"batchstyle gallery" in http(url)[2]
        assert [ln for ln in lines if "http://" in ln] == [f"Live dashboard at {url}\n"]  # on loopback: one line
        assert not any("warning" in ln for ln in lines)
        _plant_what_must_not_be_served(root, out)
        for private in PRIVATE:
            code, _, body = http(url + private)
            assert code == 404 and b"secret" not in body and b'"pid"' not in body and str(root).encode() not in body, \
                (private, code, body[:100])
        output, thumb = _wait(lambda: _a_done_image(out), "a done image in the gallery's data", lines)
        code, kind, body = _wait(lambda: _ok(url + output), "the done image served", lines)
        assert kind == "image/png" and body == (out / output).read_bytes()
        code, kind, body = _wait(lambda: _ok(url + ".batchstyle/thumbs/" + thumb), "its thumbnail served", lines)
        assert kind == "image/jpeg" and body.startswith(b"\xff\xd8")
        assert proc.wait(120) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(30)
    with pytest.raises((urllib.error.URLError, OSError)):
        http(url + ".live/state")  # the server went away with the run


PRIVATE = ("secret.txt", "notes.html", "stray.png", "alias.png", "lock.png", "outside.png", ".batchstyle/lock",
           ".batchstyle/plan.json", ".batchstyle/done/", ".batchstyle/thumbs/index.json", "../manifest.csv",
           "%2e%2e/manifest.csv", ".live/preview/..%2f..%2fmanifest.csv", "%2ebatchstyle/plan.json",
           ".batchstyle/gallery/..%2fplan.json", ".BATCHSTYLE/plan.json", ".batchstyle%5cplan.json",
           "photos%2f..%2f..%2fmanifest.csv")


def _plant_what_must_not_be_served(root: Path, out: Path) -> None:
    """What someone else left in the output directory while the batch runs."""
    deadline = time.monotonic() + 60
    while not (out / ".batchstyle" / "plan.json").is_file():
        assert time.monotonic() < deadline, "the run wrote no plan"
        time.sleep(0.05)
    (out / "secret.txt").write_text("the secret")
    (out / "notes.html").write_text("<script>alert('secret')</script>")
    (out / "stray.png").write_bytes((root / "style.png").read_bytes())  # an image that no record names
    os.symlink(".batchstyle/plan.json", out / "alias.png")  # the full input paths
    os.symlink(".batchstyle/lock", out / "lock.png")  # pid and host
    os.symlink(root / "manifest.csv", out / "outside.png")


def _a_done_image(out: Path):
    """(output, thumbnail) of an image the gallery's data on disk shows as done, or None."""
    for shard in (out / ".batchstyle" / "gallery").glob("shard-*.js"):
        text = shard.read_bytes()
        try:
            rows = json.loads(text[text.index(b"]=") + 2:].rstrip(b";\n"))
        except ValueError:
            continue
        for row in rows:
            if row["state"] == "done" and row.get("thumb"):
                return row["output"], row["thumb"]
    return None


def _ok(url: str):
    answer = http(url)
    return answer if answer[0] == 200 else None


def _with_preview(url: str):
    try:
        live = json.loads(http(url + ".live/state")[2])
    except (OSError, ValueError):
        return None
    return live if any("preview" in i for w in live.get("workers", []) for i in w["items"]) else None


def _wait(probe, what: str, lines: list[str], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "".join(lines)
        time.sleep(0.1)
    return value
