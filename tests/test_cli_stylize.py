"""``batchstyle stylize`` end to end: outputs, determinism, errors, Ctrl-C, checkpoints, --web, --trace, help.

Tiny settings keep every run to a second or two on a CPU: end scale 64 with min scale 45 gives the two
scales 45 and 64 (6 + 3 iterations). Most tests run the command in-process with click's CliRunner;
those that need a real process (signals, a live web server) start ``python -m batchstyle`` and never wait
without a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from batchstyle.cli import main
from batchstyle.engine.images import srgb_profile

ROOT = Path(__file__).resolve().parents[1]

TINY = ["-s", "64", "-ms", "45", "-ii", "6", "-i", "3"]  # scales 45 and 64: 6 + 3 iterations
TINY_SIZES = [(45, 30), (64, 43)]  # for the 150x100 content below
TINY_ITERATIONS = 6 + 3

# Slow enough to be interrupted: scales 48, 68, 96 with 400 iterations at the first (several seconds).
SLOW = ["-s", "96", "-ms", "48", "-ii", "400", "-i", "200"]
SLOW_FIRST_SIZE = (48, 32)


# --- fixtures and helpers ------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared machine two OpenMP threads competing with other processes
    for two cores run ten times slower. The results do not depend on it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(demo_images, tmp_path_factory) -> dict[str, Path]:
    """Small copies of real images: a 150x100 content photo and two style paintings of ~100 px height."""
    d = tmp_path_factory.mktemp("inputs")
    out = {}
    for name, src, size in (("content", "content/chelsea_cat.jpg", (150, 100)),
                            ("content_tall", "content/chelsea_cat.jpg", (100, 150)),
                            ("style", "styles/van_gogh_starry_night.jpg", (160, 100)),
                            ("style2", "styles/hokusai_great_wave.jpg", (180, 100))):
        with Image.open(demo_images / src) as im:
            path = d / f"{name}.png"
            im.convert("RGB").resize(size, Image.LANCZOS).save(path)
        out[name] = path
    return out


def stylize(*args, env=None) -> Result:
    """Run ``batchstyle stylize ARGS`` in-process; unexpected exceptions (not SystemExit) propagate."""
    result = CliRunner().invoke(main, ["stylize", *map(str, args)], env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def base_args(inputs, weights_file, out, *extra, styles=("style",)):
    return [inputs["content"], *(inputs[s] for s in styles), "-o", out, *TINY, "--weights", weights_file, *extra]


def start_cli(args: list, cwd: Path, stderr_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("BATCHSTYLE_WEIGHTS", None)
    with stderr_path.open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "batchstyle", "stylize", *map(str, args)], cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str, stderr_path: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) before {what}:\n{stderr_path.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{stderr_path.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


# --- 1. outputs ----------------------------------------------------------------------------------------

@pytest.mark.weights
def test_png_and_tiff_outputs_from_a_real_pair(inputs, weights_file, tmp_path):
    png, tif = tmp_path / "out.png", tmp_path / "out.tif"
    result = stylize(*base_args(inputs, weights_file, png))
    assert result.exit_code == 0, result.stderr
    assert f"Wrote {png}" in result.stderr
    with Image.open(png) as im:
        assert im.format == "PNG" and im.mode == "RGB"  # 8 bits per channel
        assert im.size == TINY_SIZES[-1]  # long side = end scale, content's 3:2 aspect ratio
        assert im.info.get("icc_profile") == srgb_profile()
        png_pixels = np.asarray(im)
    # It was stylized, not just resized: the result differs visibly from the resized content.
    with Image.open(inputs["content"]) as content:
        resized = np.asarray(content.resize(TINY_SIZES[-1], Image.LANCZOS), dtype=np.float64)
    assert np.abs(png_pixels - resized).mean() > 2

    result = stylize(*base_args(inputs, weights_file, tif))
    assert result.exit_code == 0, result.stderr
    import tifffile

    with tifffile.TiffFile(tif) as tf:
        pixels = tf.pages[0].asarray()
        icc = tf.pages[0].tags.get(34675)  # InterColorProfile
        assert icc is not None and bytes(icc.value) == srgb_profile()
    assert pixels.dtype == np.uint16 and pixels.shape == (43, 64, 3)
    assert pixels.max() > 255  # really 16-bit, not 8-bit values in a 16-bit container
    # The same run, so the 16-bit image is the 8-bit one at higher precision.
    assert np.abs(pixels / 257.0 - png_pixels).max() <= 1.0
    assert temp_files(tmp_path) == []


@pytest.mark.weights
@pytest.mark.parametrize("content, end_scale, size", [("content_tall", "64", (43, 64)),
                                                      ("content", "64+", (78, 52))])
def test_output_size_follows_end_scale_and_aspect_ratio(inputs, weights_file, tmp_path, content, end_scale, size):
    # 64+ keeps the pixel count of a 64x64 square: int(sqrt(1.5) * 64) = 78 on the long side.
    out = tmp_path / "out.png"
    result = stylize(inputs[content], inputs["style"], "-o", out, "-s", end_scale, "-ms", "45", "-ii", "2",
                     "-i", "1", "--weights", weights_file, "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # -q: nothing on the terminal
    with Image.open(out) as im:
        assert im.size == size


@pytest.mark.weights
def test_original_colors_keeps_the_contents_colours(inputs, weights_file, tmp_path):
    def chroma_error(*extra):
        out = tmp_path / "out.png"
        result = stylize(*base_args(inputs, weights_file, out, "-q", *extra))
        assert result.exit_code == 0, result.stderr
        with Image.open(out) as im, Image.open(inputs["content"]) as content:
            got = np.asarray(im.convert("YCbCr"), dtype=np.float64)[..., 1:]
            want = np.asarray(content.resize(im.size, Image.LANCZOS).convert("YCbCr"), dtype=np.float64)[..., 1:]
        return np.abs(got - want).mean()

    kept, changed = chroma_error("--original-colors"), chroma_error()
    assert kept < 1 and changed > 3, (kept, changed)


@pytest.mark.weights
@pytest.mark.parametrize("source", ["env", "cache"])
def test_weights_from_the_environment_or_the_cache(inputs, weights_file, tmp_path, monkeypatch, source):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"BATCHSTYLE_WEIGHTS": None, "BATCHSTYLE_CACHE_DIR": str(cache)}
    if source == "env":
        env["BATCHSTYLE_WEIGHTS"] = str(weights_file)
        expected = str(weights_file)
    else:
        (cache / "vgg19_features.safetensors").symlink_to(weights_file)
        expected = str(cache / "vgg19_features.safetensors")
    monkeypatch.delenv("BATCHSTYLE_WEIGHTS", raising=False)
    out = tmp_path / "out.png"
    result = stylize(inputs["content"], inputs["style"], "-o", out, "-s", "64", "-ms", "45", "-ii", "1", "-i", "1",
                     env=env)
    assert result.exit_code == 0, result.stderr
    assert f"Weights: {expected}\n" in result.stderr
    assert out.is_file()


# --- 2. determinism -----------------------------------------------------------------------------------

@pytest.mark.weights
def test_same_command_and_seed_give_identical_bytes(inputs, weights_file, tmp_path):
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        outs[name] = tmp_path / f"{name}.png"
        # uniform noise as the initial image, so that the seed matters
        result = stylize(*base_args(inputs, weights_file, outs[name], "--init", "uniform", "-r", seed, "-q"))
        assert result.exit_code == 0, result.stderr
    assert outs["a"].read_bytes() == outs["b"].read_bytes()
    assert outs["a"].read_bytes() != outs["c"].read_bytes()


# --- 3. several styles ----------------------------------------------------------------------------------

@pytest.mark.weights
def test_several_styles_are_blended_with_their_weights(inputs, weights_file, tmp_path):
    def run(name, styles, *extra):
        out = tmp_path / f"{name}.png"
        result = stylize(*base_args(inputs, weights_file, out, "-q", *extra, styles=styles))
        assert result.exit_code == 0, result.stderr
        return out.read_bytes()

    blend = run("blend", ("style", "style2"), "-sw", "3,1")
    second_off = run("second_off", ("style", "style2"), "-sw", "1,0")
    # weight 0 switches the second style off: the weights go to the styles in the order given
    assert run("style", ("style",)) == second_off
    assert blend != second_off


@pytest.mark.weights
def test_wrong_number_of_style_weights_is_a_one_line_error(inputs, weights_file, tmp_path):
    out = tmp_path / "out.png"
    result = stylize(*base_args(inputs, weights_file, out, "-sw", "1,2,3", styles=("style", "style2")))
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "3 style weights" in line and "2 style images" in line
    assert "Traceback" not in result.output
    assert not out.exists()


# --- 4. bad input ----------------------------------------------------------------------------------------

BAD_INPUTS = {
    # id: (args replacing the defaults, substrings of the message)
    "missing content": (["{tmp}/nope.jpg", "{style}"], ["nope.jpg", "no such file"]),
    "corrupt style": (["{content}", "{tmp}/bad.jpg"], ["bad.jpg", "cannot read image"]),
    "gif output": (["{content}", "{style}", "-o", "{tmp}/out.gif"], ["out.gif", ".gif", ".png"]),
    "missing weights file": (["{content}", "{style}", "--weights", "{tmp}/none.safetensors"],
                             ["none.safetensors", "does not exist"]),
    "end scale 0": (["{content}", "{style}", "-s", "0"], ["end_scale", "at least 1"]),
    "end scale text": (["{content}", "{style}", "-s", "big"], ["end_scale", "'big'"]),
    "zero iterations": (["{content}", "{style}", "-ii", "0"], ["iterations", "at least 1"]),
    "unknown layer": (["{content}", "{style}", "--style-layers", "relu9_9"], ["relu9_9"]),
    "zero style weights": (["{content}", "{style}", "-sw", "0"], ["style_weights", "zero"]),
    "too small for the layers": (["{content}", "{style}", "-s", "12", "-ms", "12"], ["needs at least 16x16"]),
}


@pytest.mark.weights
@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(case, inputs, weights_file, tmp_path):
    args, expected = BAD_INPUTS[case]
    (tmp_path / "bad.jpg").write_text("this is not a picture\n")
    before = files_in(tmp_path)
    fill = dict(tmp=tmp_path, content=inputs["content"], style=inputs["style"])
    # the case's own values come last, so they win over these defaults
    defaults = ["-o", tmp_path / "out.png", "--weights", weights_file, *TINY]
    result = stylize(*defaults, *(a.format(**fill) for a in args))
    assert result.exit_code == 2, result.output
    [line] = error_lines(result)
    for text in expected:
        assert text in line
    assert "Traceback" not in result.output
    assert files_in(tmp_path) == before


@pytest.mark.weights
def test_cuda_device_on_a_machine_without_cuda(inputs, weights_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out.png"
    result = stylize(*base_args(inputs, weights_file, out, "--devices", "cuda:0"))
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert line.startswith("error: --devices: cuda:0 was asked for") and "no CUDA" in line
    assert line.endswith("use the cpu device")
    assert not out.exists()


@pytest.mark.parametrize("args, expected", [
    (["--init", "noise"], "Invalid value for '--init'"),
    (["--save-every", "-1"], "Invalid value for '--save-every'"),
    (["--optimizer", "sgd"], "Invalid value for '--optimizer'"),
    ([], None),  # no style image at all
])
def test_bad_option_values_are_usage_errors(args, expected, tmp_path):
    out = tmp_path / "out.png"
    styles = [] if not args else ["style.jpg"]
    result = stylize("content.jpg", *styles, "-o", out, *args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert (expected or "Missing argument 'STYLES...'") in result.stderr
    assert not out.exists()


@pytest.mark.weights
def test_web_port_in_use_is_a_clear_error(inputs, weights_file, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "out.png"
        result = stylize(*base_args(inputs, weights_file, out, "--web", "--port", port))
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert str(port) in line and "--port" in line
    assert not out.exists()


# --- 5. no weights anywhere -----------------------------------------------------------------------------

def test_no_weights_anywhere_names_both_ways_to_get_them(inputs, tmp_path, monkeypatch):
    import batchstyle.engine.weights as weights_module

    def offline():
        raise OSError("[Errno 101] Network is unreachable (test)")

    monkeypatch.setattr(weights_module, "_download_torchvision", offline)
    monkeypatch.delenv("BATCHSTYLE_WEIGHTS", raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("BATCHSTYLE_CACHE_DIR", str(cache))
    out = tmp_path / "out.png"
    result = stylize(inputs["content"], inputs["style"], "-o", out, *TINY,
                     env={"BATCHSTYLE_WEIGHTS": None, "BATCHSTYLE_CACHE_DIR": str(cache)})
    assert result.exit_code == 2
    message = result.stderr
    assert message.startswith("error: --weights: no VGG-19 weights")
    assert "BATCHSTYLE_WEIGHTS=PATH" in message
    assert "internet" in message and str(cache) in message
    assert "Network is unreachable" in message  # says why the download failed
    assert "Traceback" not in result.output
    assert not out.exists() and list(cache.iterdir()) == []


# --- 6. --save-every -------------------------------------------------------------------------------------

@pytest.mark.weights
@pytest.mark.parametrize("every, expected", [
    # scale 1 (6 its): at 2 and 4, then after the scale; scale 2 (3 its): at 2; then the final image
    ("2", [TINY_SIZES[0]] * 3 + [TINY_SIZES[1]] * 2),
    ("0", [TINY_SIZES[1]]),  # only the final image
])
def test_save_every_writes_valid_intermediate_images(inputs, weights_file, tmp_path, monkeypatch, every, expected):
    import batchstyle.engine.images as images_module

    original = images_module.save_image
    seen = []

    def recording_save(image, path):
        original(image, path)
        with Image.open(path) as im:  # what a user opening the file mid-run would get
            im.load()
            seen.append(im.size)

    monkeypatch.setattr(images_module, "save_image", recording_save)
    out = tmp_path / "out.png"
    result = stylize(*base_args(inputs, weights_file, out, "--save-every", every, "-q"))
    assert result.exit_code == 0, result.stderr
    assert seen == expected
    assert temp_files(tmp_path) == []


# --- 7. Ctrl-C --------------------------------------------------------------------------------------------

@pytest.mark.weights
@pytest.mark.timeout(90)
def test_ctrl_c_writes_the_current_image_and_exits_130(inputs, weights_file, tmp_path):
    out, trace, err = tmp_path / "out.png", tmp_path / "t.json", tmp_path / "stderr.txt"
    proc = start_cli([inputs["content"], inputs["style"], "-o", out, *SLOW, "--weights", weights_file,
                      "--save-every", "5", "--trace", trace, "--checkpoint", tmp_path / "ck"], tmp_path, err)
    try:
        wait_for(out.exists, proc, 60, "the first intermediate image", err)  # iteration 5 of scale 1
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        stop(proc)
    stderr = err.read_text()
    assert rc == 130, stderr
    assert "Interrupted" in stderr and f"wrote the current image to {out}" in stderr
    assert "Traceback" not in stderr
    with Image.open(out) as im:
        im.load()
        assert im.size == SLOW_FIRST_SIZE  # the scale it had reached
    records = json.loads(trace.read_text())["iterates"]
    assert len(records) >= 5
    assert [r["i"] for r in records] == list(range(1, len(records) + 1))
    assert all((r["w"], r["h"], r["i_max"]) == (*SLOW_FIRST_SIZE, 400) for r in records)
    assert not (tmp_path / "ck").exists()  # no scale was finished
    assert temp_files(tmp_path) == []


@pytest.mark.weights
def test_ctrl_c_while_loading_weights_exits_130(inputs, weights_file, tmp_path, monkeypatch):
    import batchstyle.engine.stylizer as stylizer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stylizer, "load_weights_file", interrupted)
    result = stylize(*base_args(inputs, weights_file, tmp_path / "out.png"))
    assert result.exit_code == 130
    assert "before the first iteration; nothing was written" in result.stderr
    assert not (tmp_path / "out.png").exists()


# --- 8. --checkpoint --------------------------------------------------------------------------------------

@pytest.mark.weights
def test_checkpoint_resumes_to_the_same_image(inputs, weights_file, tmp_path, monkeypatch):
    from batchstyle.engine.checkpoint import Checkpoint

    # An uninterrupted run leaves a checkpoint of its last scale.
    full, ck_full = tmp_path / "full.png", tmp_path / "full.ck"
    result = stylize(*base_args(inputs, weights_file, full, "--checkpoint", ck_full))
    assert result.exit_code == 0, result.stderr
    assert "Continuing" not in result.stderr
    done = Checkpoint.load(ck_full)
    assert (done.scale_index, done.scale_count) == (1, 2)

    # Ctrl-C right after the first scale's checkpoint was written.
    original_save = Checkpoint.save

    def save_then_interrupt(self, path):
        original_save(self, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    part, ck = tmp_path / "part.png", tmp_path / "part.ck"
    result = stylize(*base_args(inputs, weights_file, part, "--checkpoint", ck))
    assert result.exit_code == 130, result.stderr
    assert Checkpoint.load(ck).scale_index == 0
    with Image.open(part) as im:
        assert im.size == TINY_SIZES[0]
    monkeypatch.setattr(Checkpoint, "save", original_save)

    # The same command again continues after scale 1 and ends with the uninterrupted run's image.
    result = stylize(*base_args(inputs, weights_file, part, "--checkpoint", ck))
    assert result.exit_code == 0, result.stderr
    assert f"Continuing from {ck} after scale 1/2" in result.stderr
    assert f"({TINY_ITERATIONS - 6} iterations" in result.stderr  # only the second scale was run
    assert part.read_bytes() == full.read_bytes()
    assert Checkpoint.load(ck).scale_index == 1

    # A finished checkpoint: nothing left to do, the same image again.
    full.unlink()
    result = stylize(*base_args(inputs, weights_file, full, "--checkpoint", ck_full))
    assert result.exit_code == 0, result.stderr
    assert f"Continuing from {ck_full} after scale 2/2" in result.stderr
    assert "(0 iterations" in result.stderr
    assert full.read_bytes() == part.read_bytes()


@pytest.mark.weights
def test_checkpoint_of_other_settings_is_refused(inputs, weights_file, tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "out.png"
    assert stylize(*base_args(inputs, weights_file, out, "--checkpoint", ck, "-q")).exit_code == 0
    out.unlink()
    result = stylize(*base_args(inputs, weights_file, out, "--checkpoint", ck, "-cw", "0.5"))
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "checkpoint" in line and "other images, settings or weights" in line
    assert not out.exists()

    (tmp_path / "junk.ck").write_bytes(b"not a checkpoint at all")
    result = stylize(*base_args(inputs, weights_file, out, "--checkpoint", tmp_path / "junk.ck"))
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "junk.ck" in line and "not a readable checkpoint" in line


# --- 9. --web ----------------------------------------------------------------------------------------------

def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


@pytest.mark.weights
@pytest.mark.timeout(90)
def test_web_live_view_serves_status_and_image(inputs, weights_file, tmp_path):
    out, err = tmp_path / "out.png", tmp_path / "stderr.txt"
    proc = start_cli([inputs["content"], inputs["style"], "-o", out, *SLOW, "--weights", weights_file,
                      "--save-every", "0", "--web", "--port", "0"], tmp_path, err)

    def url():
        for line in err.read_text().splitlines():
            if line.startswith("Live view at "):
                return line.split()[-1]
        return None

    def status():
        try:
            _, _, body = _get(base + "status")
        except (urllib.error.URLError, OSError):
            return None
        data = json.loads(body)
        return data if data.get("iteration", 0) > 0 and data.get("has_image") else None

    try:
        base = wait_for(url, proc, 60, "the live view's URL", err)
        assert base.startswith("http://127.0.0.1:") and not base.endswith(":0/")  # the port really bound
        data = wait_for(status, proc, 60, "an iteration on /status", err)
        assert (data["scale"], data["scales"], data["width"], data["height"]) == (1, 3, *SLOW_FIRST_SIZE)
        assert data["iterations"] == 400 and data["done"] is False
        assert isinstance(data["loss"], float)
        code, kind, body = _get(base + "image")
        assert code == 200 and kind == "image/jpeg"
        with Image.open(BytesIO(body)) as im:
            im.load()
            assert im.size == SLOW_FIRST_SIZE
        code, kind, page = _get(base)
        assert code == 200 and kind.startswith("text/html") and b"/status" in page
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        stop(proc)
    with pytest.raises((urllib.error.URLError, OSError)):  # the server went away with the run
        _get(base + "status", timeout=2)
    assert out.exists()


@pytest.mark.weights
def test_web_view_stays_up_long_enough_to_show_finished(inputs, weights_file, tmp_path, monkeypatch):
    from batchstyle.web import LiveView

    times, seen = {}, []
    original_finish, original_stop = LiveView.finish, LiveView.stop

    def finish(self, status=None):
        original_finish(self, status)
        times["finished"] = time.monotonic()

    def stop(self):
        times.setdefault("stopped", time.monotonic())
        seen.append(self.snapshot())
        original_stop(self)

    monkeypatch.setattr(LiveView, "finish", finish)
    monkeypatch.setattr(LiveView, "stop", stop)
    result = stylize(*base_args(inputs, weights_file, tmp_path / "out.png", "--web", "--port", "0", "-q"))
    assert result.exit_code == 0, result.stderr
    assert seen and seen[0]["done"] is True and seen[0]["has_image"] is True
    assert times["stopped"] - times["finished"] >= 1.0  # at least two polls of the page see "done"


# --- 10. --trace -------------------------------------------------------------------------------------------

@pytest.mark.weights
def test_trace_has_one_record_per_iteration(inputs, weights_file, tmp_path):
    trace = tmp_path / "t.json"
    result = stylize(*base_args(inputs, weights_file, tmp_path / "out.png", "--trace", trace, "-q"))
    assert result.exit_code == 0, result.stderr
    data = json.loads(trace.read_text())
    assert data["settings"]["end_scale"] == 64 and data["settings"]["initial_iterations"] == 6
    records = data["iterates"]
    assert len(records) == TINY_ITERATIONS
    expected = [(*TINY_SIZES[0], i, 6) for i in range(1, 7)] + [(*TINY_SIZES[1], i, 3) for i in range(1, 4)]
    assert [(r["w"], r["h"], r["i"], r["i_max"]) for r in records] == expected
    assert all(isinstance(r["loss"], float) and np.isfinite(r["loss"]) for r in records)
    times = [r["time"] for r in records]
    assert times == sorted(times)


# --- 11. help -----------------------------------------------------------------------------------------------

def test_help_mentions_the_key_flags():
    proc = subprocess.run([sys.executable, "-m", "batchstyle", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for word in ("stylize", "run", "status"):
        assert word in proc.stdout
    result = CliRunner().invoke(main, ["stylize", "--help"])
    assert result.exit_code == 0
    for flag in ("-s, --end-scale", "-cw, --content-weight", "-sw, --style-weights", "--devices", "--web",
                 "--original-colors", "--checkpoint", "--save-every", "--trace", "Ctrl-C"):
        assert flag in result.output, flag
    assert "[default: 512]" in result.output  # defaults come from StyleSettings


def test_help_does_not_import_torch():
    # --help and argument errors must be instant; torch costs seconds to import.
    code = ("import sys; from click.testing import CliRunner; from batchstyle.cli import main; "
            "r = CliRunner().invoke(main, ['stylize', '--help']); assert r.exit_code == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
