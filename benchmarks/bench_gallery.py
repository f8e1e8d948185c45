"""What looking at a batch costs the batch: gallery updates at 10,000 images, the dashboard per tick.

    python -m benchmarks.bench_gallery [--items 10000] [--updates 100] [--clients 100] [--json]

1. An output directory planned for ``--items`` images, half of them done. The gallery is written once
   (thumbnails made), then a second gallery starts on it as a rerun would (the start: every data file
   written, no thumbnail made), then ``--updates`` images finish one by one: each update's latency
   (from the scheduler's hand-over until its shard and the summary are on disk) and bytes written,
   next to what rewriting one file with every image's data would write.
2. The dashboard: the scheduler thread's cost of one tick (``Dashboard.update``) with 32 running images,
   with no browser, with ``--clients`` browsers polling once a second, and with ``--clients`` polling
   as fast as they can (the server runs in its own threads; only the GIL is shared).

Reports medians (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from batchstyle.batch.outdir import ItemRecord, OutputDir, PlanItem, open_output_dir
from batchstyle.web.gallery import Gallery


def png(seed: int, size=(64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def make_outdir(root: Path, items: int) -> tuple[OutputDir, list[PlanItem]]:
    """``items`` planned images over 100 photos and 3 styles; the first half done."""
    inputs = root / "in"
    inputs.mkdir(parents=True)
    for i in range(100):
        (inputs / f"p{i:03d}.png").write_bytes(png(i))
    for k in range(3):
        (inputs / f"style{k}.png").write_bytes(png(1000 + k))
    out = open_output_dir(root / "out")
    out.create()
    plan = [PlanItem(f"{i:024x}", f"out/p{i:05d}__s{i % 3}.png", 2 + i % 50, str(inputs / f"p{i % 100:03d}.png"),
                      [str(inputs / f"style{i % 3}.png")], {"end_scale": 1024, "content_weight": 10})
            for i in range(items)]
    out.write_plan(plan, {})
    image = png(7)
    for entry in plan[: items // 2]:
        out.write_result(record(entry), image)
    return out, plan


def record(entry: PlanItem) -> ItemRecord:
    return ItemRecord(id=entry.id, output=entry.output, line=entry.line, content=entry.content, styles=entry.styles,
                      settings={"end_scale": 1024, "content_weight": 10}, weights="w", worker="node GPU 0",
                      seconds=312.0, finished=time.time())


def wait(predicate, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.0005)


def bench_updates(items: int, updates: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out, plan = make_outdir(Path(tmp), items)
        t0 = time.perf_counter()
        Gallery(out).start().close(budget=None)
        first = time.perf_counter() - t0
        gallery = Gallery(out).start()
        out.watch(gallery)
        t0 = time.perf_counter()
        wait(lambda: gallery.live()["summary"] >= 1)
        start = time.perf_counter() - t0
        folder = out.meta / "gallery"
        data_bytes = sum(p.stat().st_size for p in folder.glob("shard-*.js"))
        latencies, written = [], []
        image = png(8)
        for entry in plan[items // 2: items // 2 + updates]:
            before = gallery.live()["summary"]
            t0 = time.perf_counter()
            gallery.on_result(record(entry), image)
            wait(lambda: gallery.live()["summary"] > before)
            latencies.append(time.perf_counter() - t0)
            shard = folder / f"shard-{plan.index(entry) // gallery.shard_size:05d}.js"
            written.append(shard.stat().st_size + (folder / "summary.js").stat().st_size)
        gallery.close()
    return {"items": items, "first_gallery_s": first, "rerun_start_s": start,
            "update_ms_median": 1000 * statistics.median(latencies), "update_ms_max": 1000 * max(latencies),
            "bytes_per_update": statistics.median(written), "all_data_bytes": data_bytes,
            "night_of_updates_mb": items * statistics.median(written) / 1e6,
            "night_with_one_file_gb": items * data_bytes / 1e9}


def running_state(workers: int = 8, per_worker: int = 4):
    from tests.support.dashboard import running_state as one_worker

    state = one_worker("x0")
    template = state.workers[0]
    from dataclasses import replace

    from batchstyle.batch.pool import Call

    state.workers = []
    for w in range(workers):
        items = [replace(template.call.items[0], id=f"x{w}-{k}", output=f"out/{w}-{k}.png") for k in range(per_worker)]
        call = Call(items, None, time.time(), progress={i.id: template.call.progress["x0"] for i in items},
                    previews={i.id: template.call.previews["x0"] for i in items})
        state.workers.append(replace(template, call=call))
    state.total = state.units_total = 10_000
    return state


def tick_cost(dashboard, state, ticks: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(ticks):
        dashboard.update(state)
    return 1e6 * (time.perf_counter() - t0) / ticks


def bench_dashboard(clients: int) -> dict:
    from batchstyle.web import WebServer
    from batchstyle.web.dashboard import Dashboard

    class Quiet:
        def update(self, state): pass
        def log(self, text): pass

    state, dashboard = running_state(), Dashboard(Quiet())
    results = {"running_images": sum(len(w.call.items) for w in state.workers)}
    with WebServer("127.0.0.1", 0, routes=dashboard) as server:
        results["tick_us_no_browser"] = statistics.median(tick_cost(dashboard, state) for _ in range(3))
        for name, pause in (("tick_us_browsers_polling_1s", 1.0), ("tick_us_browsers_polling_flat_out", 0.0)):
            stop, served = threading.Event(), [0]

            def browser(pause=pause, stop=stop, served=served):
                while not stop.is_set():
                    with urllib.request.urlopen(server.url + ".live/state", timeout=10) as r:
                        r.read()
                    served[0] += 1
                    stop.wait(pause)

            threads = [threading.Thread(target=browser, daemon=True) for _ in range(clients)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            t0, before = time.perf_counter(), served[0]
            results[name] = statistics.median(tick_cost(dashboard, state) for _ in range(3))
            results[name.replace("tick_us", "requests_per_s")] = (served[0] - before) / (time.perf_counter() - t0)
            stop.set()
            for t in threads:
                t.join(15)
    results["scheduler_tick_ms"] = 200
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"gallery": bench_updates(args.items, args.updates), "dashboard": bench_dashboard(args.clients)}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    g, d = results["gallery"], results["dashboard"]
    print(f"gallery of {g['items']:,} images: first write with thumbnails {g['first_gallery_s']:.1f} s, "
          f"a rerun's start {g['rerun_start_s']:.2f} s")
    print(f"  one finished image: {g['update_ms_median']:.1f} ms median ({g['update_ms_max']:.1f} ms max) in the "
          f"gallery's thread, {g['bytes_per_update'] / 1e3:.0f} kB written "
          f"(all the data: {g['all_data_bytes'] / 1e6:.1f} MB)")
    print(f"  a night of {g['items']:,} updates writes {g['night_of_updates_mb']:.0f} MB "
          f"(one file rewritten each time: {g['night_with_one_file_gb']:.0f} GB)")
    print(f"dashboard, {d['running_images']} running images, scheduler thread per tick (every {d['scheduler_tick_ms']} ms):"
          f" {d['tick_us_no_browser']:.0f} µs without a browser, {d['tick_us_browsers_polling_1s']:.0f} µs with "
          f"{args.clients} polling every second ({d['requests_per_s_browsers_polling_1s']:.0f} requests/s), "
          f"{d['tick_us_browsers_polling_flat_out']:.0f} µs with {args.clients} polling flat out "
          f"({d['requests_per_s_browsers_polling_flat_out']:.0f} requests/s)")


if __name__ == "__main__":
    main()
