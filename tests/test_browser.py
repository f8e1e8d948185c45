"""The pages in a real browser: headless Chromium from the system's packages, driven by Selenium.

* the gallery of a finished batch, opened from disk: every image, thumbnail and error is shown; the
  filters, the order and the full-size viewer work with the keyboard; it fits a phone's width;
* a clip's entry: its video played beside the content clip (from disk and served), its frames stepped through;
* the dashboard of a live ``batchstyle run --web`` (fake backend), followed until the batch finishes;
* the single-image live view of ``batchstyle stylize --web``: the image drawn large, its true size stated.

They skip, saying why, where Chromium, its driver or Selenium cannot be had (``.ci/run`` installs
them). Screenshots are saved in each test's tmp dir, and copied to ``$BATCHSTYLE_SCREENSHOTS`` if set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from support.photos import make_photo
from support.processes import FAKE_CLI

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("BATCHSTYLE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = os.environ.get("BATCHSTYLE_CHROMEDRIVER") or shutil.which("chromedriver")
WAIT = 60


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver, as .ci/run does; or set BATCHSTYLE_CHROMIUM and BATCHSTYLE_CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(browser, script: str, what: str, timeout: float = WAIT):
    """Poll a JavaScript expression until it is truthy (an exception counts as not yet); its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = browser.execute_script(f"try {{ return ({script}); }} catch (e) {{ return null; }}")
        if value:
            return value
        if time.monotonic() > deadline:
            page = browser.execute_script("return document.body ? document.body.innerText.slice(0, 3000) : ''")
            raise AssertionError(f"timed out waiting for {what}; the page says:\n{page}")
        time.sleep(0.1)


def screenshot(browser, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    """The viewport (or the whole page) as a PNG in the test's tmp dir, and in $BATCHSTYLE_SCREENSHOTS."""
    path = tmp_path / name
    if full_page:
        size = browser.get_window_size()
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(size["width"], min(height + 140, 6000))
        browser.save_screenshot(str(path))
        browser.set_window_size(size["width"], size["height"])
    else:
        browser.save_screenshot(str(path))
    if os.environ.get("BATCHSTYLE_SCREENSHOTS"):
        target = Path(os.environ["BATCHSTYLE_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def fake_run(*args, spec: str) -> list[str]:
    return [sys.executable, FAKE_CLI, spec, "run", *map(str, args)]


def make_job(root: Path, photos: int) -> Path:
    """``photos`` photos and a failing one in one style, one photo in two styles blended 2:1."""
    (root / "photos").mkdir(parents=True)
    for i in range(photos):
        make_photo(96, 72, i).save(root / "photos" / f"p{i}.png")
    make_photo(48, 36, 77).save(root / "photos" / "fail_me.png")
    make_photo(40, 40, 50).save(root / "style.png")
    make_photo(40, 40, 51).save(root / "style2.png")
    manifest = root / "manifest.csv"
    manifest.write_text("content,style,style_weights,output,content_weight\n"
                        "photos,style.png,,{content}__style.png,\n"
                        "photos/p1.png,style.png;style2.png,2;1,blend/{content}.jpg,5\n")
    return manifest


@pytest.fixture(scope="module")
def finished_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    manifest = make_job(root, 6)
    out = root / "out"
    result = subprocess.run(fake_run(manifest, "-o", out, "--plain", spec="iters=4,sleep=0.01,scales=2"),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr  # fail_me fails
    return out


def records(out: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / ".batchstyle" / kind).glob("*.json"))]


BROKEN_IMAGES = ("Array.from(document.images).filter(i => i.isConnected && i.src && "
                 "(!i.complete || i.naturalWidth === 0)).map(i => i.src)")


def load_every_image(browser) -> None:
    """Scroll every card into view (thumbnails load lazily) and wait until each image has loaded."""
    browser.execute_script("document.querySelectorAll('.card').forEach(c => c.scrollIntoView())")
    wait_until(browser, f"{BROKEN_IMAGES}.length === 0 && document.images.length > 0", "every image to load")


def cards(browser) -> list[dict]:
    return browser.execute_script("""return Array.from(document.querySelectorAll('#grid > li.card')).map(li => ({
        title: li.querySelector('h3').textContent, state: li.dataset.state,
        result: (li.querySelector('a.result') || {}).href || null,
        images: Array.from(li.querySelectorAll('img')).map(i => [i.alt, i.naturalWidth]),
        error: (li.querySelector('.error') || {}).textContent || null,
        text: li.textContent}))""")


def choose(browser, select_id: str, value: str) -> None:
    browser.execute_script("const s = document.getElementById(arguments[0]); s.value = arguments[1]; "
                           "s.dispatchEvent(new Event('change'))", select_id, value)


def test_the_gallery_of_a_finished_batch_shows_every_image_thumbnail_and_error(browser, finished_batch, tmp_path):
    out = finished_batch
    done, failed = records(out, "done"), records(out, "failed")
    assert len(done) == 7 and len(failed) == 1
    browser.get((out / "index.html").as_uri())  # from disk: no server at all
    wait_until(browser, "document.getElementById('shown').textContent.startsWith('Showing 1–8 of 8')", "the data")
    load_every_image(browser)
    shown = {card["title"]: card for card in cards(browser)}
    assert set(shown) == {r["output"] for r in done + failed}
    for record in done:
        card = shown[record["output"]]
        assert card["state"] == "done" and card["result"].endswith(record["output"])
        alts = [alt for alt, width in card["images"] if width > 0]
        assert f"Result: {record['output']}" in alts and f"Content image: {Path(record['content']).name}" in alts
        assert sum(alt.startswith("Style image: ") for alt in alts) == len(record["styles"])
        assert record["worker"] in card["text"]
    failure = shown[failed[0]["output"]]
    assert failure["state"] == "failed" and failure["error"] == failed[0]["error"] and failure["result"] is None
    assert "style: style.png (67%)" in shown["blend/p1.jpg"]["text"] and "content_weight 5" in shown["blend/p1.jpg"]["text"]
    counts = browser.find_element("id", "counts").text
    assert counts.startswith("8 images: 7 done · 1 failed · 0 not done yet")
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, tmp_path, "gallery.png", full_page=True)


def test_the_gallery_filters_orders_and_opens_images_with_the_keyboard(browser, finished_batch):
    from selenium.webdriver.common.keys import Keys

    browser.get((finished_batch / "index.html").as_uri())
    wait_until(browser, "document.querySelectorAll('#grid > li').length === 8", "the cards")
    choose(browser, "f-state", "failed")
    assert [c["title"] for c in cards(browser)] == ["fail_me__style.png"]
    choose(browser, "f-state", "")
    choose(browser, "f-style", "style2.png")
    assert [c["title"] for c in cards(browser)] == ["blend/p1.jpg"]
    choose(browser, "f-style", "")
    choose(browser, "f-line", "2")
    assert len(cards(browser)) == 7
    choose(browser, "f-line", "")
    choose(browser, "f-sort", "name")
    names = [c["title"] for c in cards(browser)]
    assert names == sorted(names, key=str.lower) or names[0] == "blend/p1.jpg"
    assert "sort=name" in browser.current_url  # a link keeps the view
    search = browser.find_element("id", "f-text")
    search.send_keys("p3")
    assert [c["title"] for c in cards(browser)] == ["p3__style.png"]
    search.send_keys(Keys.BACKSPACE * 2)
    wait_until(browser, "document.querySelectorAll('#grid > li').length === 8", "every card again")

    first = browser.find_element("css selector", "#grid a.result")
    first.send_keys(Keys.ENTER)  # keyboard: a result link opens the viewer
    wait_until(browser, "document.getElementById('viewer').open", "the viewer")
    title = browser.find_element("id", "viewer-title").text
    width = wait_until(browser, "document.getElementById('viewer-image').naturalWidth", "the full-size image")
    with Image.open(finished_batch / title) as im:
        assert width == im.width  # the file itself, not its thumbnail
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    assert wait_until(browser, "document.getElementById('viewer-title').textContent !== arguments[0] && "
                      "document.getElementById('viewer-title').textContent".replace("arguments[0]", json.dumps(title)),
                      "the next image") != title
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_until(browser, "!document.getElementById('viewer').open", "the viewer to close")
    assert browser.switch_to.active_element == first  # focus returns to where it was


def test_the_gallery_reads_on_a_phone(browser, finished_batch, tmp_path):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get((finished_batch / "index.html").as_uri())
        wait_until(browser, "document.querySelectorAll('#grid > li').length === 8", "the cards")
        load_every_image(browser)
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        widths = browser.execute_script("return Array.from(document.querySelectorAll('.card'))"
                                        ".map(c => c.getBoundingClientRect().right)")
        assert max(widths) <= 390
        screenshot(browser, tmp_path, "gallery-phone.png")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_gallery_shows_an_images_masks_beside_its_styles(browser, tmp_path):
    from support.masks import segmentation, split_masks

    make_photo(96, 72, 1).save(tmp_path / "photo.png")
    make_photo(40, 40, 50).save(tmp_path / "style.png")
    make_photo(40, 40, 51).save(tmp_path / "style2.png")
    split_masks(tmp_path, 96, 72)
    segmentation(tmp_path / "seg.png", 96, 72, at=0.3)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("content,style,masks,mask_colors,output\n"
                        "photo.png,style.png;style2.png,left.png;right.png,,split.png\n"
                        "photo.png,style.png;style2.png,seg.png,red;blue,segmented.png\n")
    out = tmp_path / "out"
    result = subprocess.run(fake_run(manifest, "-o", out, "--plain", spec="iters=2,scales=1"),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    browser.get((out / "index.html").as_uri())
    wait_until(browser, "document.querySelectorAll('#grid > li').length === 2", "the cards")
    load_every_image(browser)
    shown = {card["title"]: card for card in cards(browser)}
    split = [alt for alt, width in shown["split.png"]["images"] if width > 0]
    assert split[1:5] == ["Style image: style.png", "Mask image: left.png, where style.png applies",
                          "Style image: style2.png", "Mask image: right.png, where style2.png applies"]
    assert "mask: left.png" in shown["split.png"]["text"] and "mask: right.png" in shown["split.png"]["text"]
    segmented = [alt for alt, width in shown["segmented.png"]["images"] if width > 0]
    assert "Mask image: seg.png, one colour per style" in segmented
    assert "masks: seg.png (#ff0000, #0000ff)" in shown["segmented.png"]["text"]
    swatches = browser.execute_script("return Array.from(document.querySelectorAll('.swatch'))"
                                      ".map(s => getComputedStyle(s).backgroundColor)")
    assert swatches == ["rgb(255, 0, 0)", "rgb(0, 0, 255)"]
    pairs = browser.execute_script("return Array.from(document.querySelectorAll('.masked')).map(r => "
                                   "Array.from(r.children).map(f => f.getBoundingClientRect().top))")
    assert len(pairs) == 2 and all(abs(top[0] - top[1]) < 1 for top in pairs)  # each style beside its mask
    screenshot(browser, tmp_path, "gallery-masks.png", full_page=True)


CLIP_SUFFIX = ".mp4"  # the product's default: H.264, yuv420p, faststart


def open_clip(browser, url: str) -> None:
    """The gallery at ``url`` with one clip entry for pan (its frames nowhere as entries of their own), its viewer open."""
    browser.get(url)
    wait_until(browser, "document.querySelectorAll('#grid > li').length === 3", "the entries")
    shown = {card["title"]: card for card in cards(browser)}
    assert set(shown) == {"still__style.png", f"pan__style{CLIP_SUFFIX}", "seq__style_frames"}
    assert browser.execute_script("return document.querySelectorAll('#grid > li[data-clip]').length") == 2
    assert "clip of 6 frames: 6 done" in shown[f"pan__style{CLIP_SUFFIX}"]["text"]
    if url.startswith("file:"):  # served by a dashboard, the live panel has the counts
        assert browser.find_element("id", "counts").text.startswith("1 image and 2 clips: 2 done · 0 failed · "
                                                                    "1 not done yet")
    browser.find_element("css selector", "#grid li[data-clip='pan__style_frames'] a.result").click()
    wait_until(browser, "document.getElementById('viewer').open", "the viewer")


def test_the_gallery_plays_a_clip_beside_its_content_and_steps_through_its_frames(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    from batchstyle.web import WebServer
    from batchstyle.web.dashboard import Dashboard
    from batchstyle.web.gallery import rebuild_gallery
    from support.gallery import clip_batch

    out, _, _ = clip_batch(tmp_path, suffix=CLIP_SUFFIX)  # 6 frames at 6 fps: one second
    gallery = rebuild_gallery(out)
    dashboard = Dashboard(gallery=gallery, out=out)
    server = WebServer("127.0.0.1", 0, root=dashboard.root, allow=dashboard.allow, routes=dashboard)
    server.start()
    try:
        for url in ((out.root / "index.html").as_uri(), server.url):  # from disk, and served by run --web's server
            open_clip(browser, url)
            for video in ("clip-video", "clip-content-video"):
                ready = wait_until(browser, f"document.getElementById('{video}').readyState >= 1 && "
                                   f"[document.getElementById('{video}').duration]", f"the metadata of {video}")
                assert abs(ready[0] - 1.0) < 0.05, (video, ready)
            assert browser.execute_script("const v = document.getElementById('clip-video'); "
                                          "return [v.controls, v.loop, v.muted, v.currentSrc]")[:3] == [True, True, True]
            assert browser.find_element("id", "clip-content-caption").text == f"Content: pan{CLIP_SUFFIX}"
            frame = "document.getElementById('frame-image')"
            wait_until(browser, f"{frame}.complete && {frame}.naturalWidth === 64", "frame 1")
            assert browser.find_element("id", "frame-label").text == "frame 1 / 6"
            browser.find_element("id", "frame-next").click()
            wait_until(browser, f"{frame}.src.endsWith('pan__style_frames/000002.png') && {frame}.complete "
                                f"&& {frame}.naturalWidth === 64", "frame 2")
            assert browser.find_element("id", "frame-label").text == "frame 2 / 6"
            browser.find_element("id", "frame-label").click()  # focus in the dialog, off the video
            browser.switch_to.active_element.send_keys(Keys.ARROW_LEFT)
            wait_until(browser, "document.getElementById('frame-label').textContent === 'frame 1 / 6'", "frame 1 again")
            assert browser.execute_script(f"return {frame}.src").endswith("pan__style_frames/000001.png")
            screenshot(browser, tmp_path, "gallery-clip.png")
            browser.switch_to.active_element.send_keys(Keys.ESCAPE)
            wait_until(browser, "!document.getElementById('viewer').open", "the viewer to close")
    finally:
        server.stop()


def test_a_clip_without_a_video_shows_its_frames_and_the_content_out_of_reach(browser, tmp_path):
    from batchstyle.web.gallery import rebuild_gallery
    from support.gallery import clip_batch

    out, plan, _ = clip_batch(tmp_path, suffix=CLIP_SUFFIX)
    (out.root / f"pan__style{CLIP_SUFFIX}").unlink()
    (out.root / "sources" / f"pan{CLIP_SUFFIX}").rename(tmp_path / f"pan{CLIP_SUFFIX}")
    out.write_plan([*plan["still"], *(e.__class__(**{**e.__dict__, "source": str(tmp_path / f"pan{CLIP_SUFFIX}")})
                                      for e in plan["pan"]), *plan["seq"]], {})
    rebuild_gallery(out)
    browser.get((out.root / "index.html").as_uri())
    wait_until(browser, "document.querySelectorAll('#grid > li').length === 3", "the entries")
    browser.find_element("css selector", "#grid li[data-clip='seq__style_frames'] a.result").click()
    wait_until(browser, "document.getElementById('viewer').open", "the viewer")
    assert browser.execute_script("return document.getElementById('clip-result').hidden")  # the stepper alone
    wait_until(browser, "document.getElementById('frame-image').naturalWidth === 64", "frame 1")
    browser.find_element("id", "frame-next").click()
    browser.find_element("id", "frame-next").click()
    assert browser.find_element("id", "frame-label").text == "frame 3 / 3 (not made yet)"
    browser.find_element("id", "viewer-prev").click()  # the clip before: pan, frames done, its video not written
    wait_until(browser, "document.getElementById('viewer-title').textContent === 'pan__style" + CLIP_SUFFIX + "'",
               "the pan clip")
    assert browser.execute_script("return document.getElementById('clip-result').hidden")
    caption = browser.find_element("id", "clip-content-caption").text
    assert caption.startswith(f"Content: pan{CLIP_SUFFIX} (its first frame: the clip itself is outside this folder")
    wait_until(browser, "document.getElementById('clip-content-image').naturalWidth === 64", "the content's first frame")


class LiveRun:
    """A ``batchstyle run --web`` in the background (fake backend); its output lines as they come."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    def url(self) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("Live dashboard at "):
                    return line.split()[-1]
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.1)
        raise AssertionError("no dashboard URL: " + "".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(30)


def test_the_dashboard_follows_a_live_run_until_it_finishes(browser, tmp_path):
    manifest = make_job(tmp_path / "job", 3)
    out = tmp_path / "out"
    run = LiveRun(fake_run(manifest, "-o", out, "--plain", "--web", "--port", "0", "--group-size", "2",
                           spec="iters=12,sleep=0.25,scales=2"))
    try:
        url = run.url()
        assert url.startswith("http://127.0.0.1:")
        browser.get(url)
        wait_until(browser, "!document.getElementById('live').hidden", "the live panel")
        assert browser.execute_script("return Array.from(document.styleSheets).some("
                                      "s => s.href && s.href.endsWith('style.css') && s.cssRules.length > 0)")
        wait_until(browser, "Array.from(document.querySelectorAll('#workers .pc-image'))"
                            ".some(i => i.complete && i.naturalWidth > 0)", "a live preview", 120)
        wait_until(browser, "document.querySelector('#workers .pc-line').textContent.includes('iteration')",
                   "a running image's iteration")
        card = browser.find_element("css selector", "#workers .progress-card").text
        assert "Scale " in card and " CPU" in card and "loss" in card and " px" in card
        counts = browser.find_element("id", "counts").text
        assert "images/hour" in counts and "ETA" in counts and "running" in counts
        assert browser.find_element("id", "state").text in ("Running", "Finishing the running images")
        assert browser.execute_script("return document.querySelectorAll('#grid li.running').length") >= 1
        second = browser.current_window_handle
        browser.switch_to.new_window("tab")  # another tab, closed mid-run: the run goes on
        browser.get(url)
        browser.close()
        browser.switch_to.window(second)
        screenshot(browser, tmp_path, "dashboard-running.png")
        wait_until(browser, "document.getElementById('state').textContent.startsWith('Finished')", "the end", 120)
        wait_until(browser, "document.getElementById('counts').textContent.startsWith('4 of 5 done · 1 failed')", "the counts")
        wait_until(browser, "document.querySelectorAll('#grid li.done a.result img').length === 4", "every result")
        load_every_image(browser)
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot(browser, tmp_path, "dashboard-finished.png")
        assert run.proc.wait(60) == 1  # fail_me failed; everything else was made
        wait_until(browser, "document.getElementById('overall').textContent.includes('live view has stopped')",
                   "the page to notice that the server stopped")
        assert browser.find_element("id", "state").text.startswith("Finished")
    finally:
        run.stop()
        print("".join(run.lines))  # shown when the test fails
    assert "Traceback" not in "".join(run.lines)


def test_the_single_image_view_draws_the_image_large_with_its_true_size(browser, tmp_path):
    from io import BytesIO

    from batchstyle.web import LiveView

    def png(w, h):
        buffer = BytesIO()
        make_photo(w, h, 3).save(buffer, "PNG")
        return buffer.getvalue()

    status = {"scale": 2, "scales": 5, "width": 181, "height": 136, "iteration": 37, "iterations": 500,
              "loss": 1.2345678, "its_per_sec": 5.1, "elapsed": 12.3, "done": False}
    preview = LiveView(port=0)
    preview.start()
    try:
        browser.set_window_size(1200, 1000)
        browser.get(preview.url)
        wait_until(browser, "document.getElementById('state').textContent === 'Waiting for the first iteration…'",
                   "the first status")
        preview.update(status, image=png(181, 136))
        image = "document.querySelector('#view .pc-image')"
        wait_until(browser, f"{image}.naturalWidth === 181", "the image")
        drawn = browser.execute_script(f"const i = {image}, s = getComputedStyle(i); return [i.clientWidth, "
                                       "s.imageRendering, s.objectFit]")
        assert drawn[0] > 3 * 181 and drawn[1:] == ["auto", "contain"]  # large, smoothly scaled
        caption = wait_until(browser, "document.querySelector('#view .pc-size').textContent", "the size")
        assert caption.startswith("181×136 px, shown ") and caption.endswith("× enlarged")
        assert browser.find_element("id", "state").text == "Running"
        assert browser.find_element("css selector", "#view .pc-line").text == \
            "Scale 2/5 · 181×136 · iteration 37/500 · loss 1.23457"
        preview.update(dict(status, scale=3, width=256, height=192, iteration=1), image=png(256, 192))
        wait_until(browser, f"{image}.naturalWidth === 256", "the next image")
        wait_until(browser, "document.querySelector('#view .pc-size').textContent.startsWith('256×192 px')",
                   "its size")
        screenshot(browser, tmp_path, "stylize.png")
        preview.finish()
        wait_until(browser, "document.getElementById('state').textContent === 'Finished'", "Finished")
    finally:
        preview.stop()
    wait_until(browser, "document.getElementById('note').textContent === 'The preview server has stopped.'",
               "the note that the server stopped")
