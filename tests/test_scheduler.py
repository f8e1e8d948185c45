"""The scheduler against real Ray (one instance for the module) with the fast fake stylizer.

``ray.init(num_gpus=2)`` declares two GPUs on this GPU-less machine, so 1- and 2-GPU workers are
scheduled for real while the fake backend computes on the CPU.
"""

from __future__ import annotations

import pytest

from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import open_output_dir
from batchstyle.batch.plan import make_plan
from batchstyle.batch.policies import (Retry, after_out_of_memory, after_worker_lost, auto_group_size,
                                       desired_workers, fair_share, fit_to_cluster)
from batchstyle.batch.scheduler import Scheduler
from batchstyle.batch.state import BatchOptions
from support.display import RecordingDisplay
from support.fake_backend import Fake

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_gpus():
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=150 * 2**20,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def batch(tmp_path, photo):
    """Write input images and a manifest; return a function that plans and runs it."""
    def make(rows: list[str], names: list[str], sizes: dict[str, tuple[int, int]] | None = None, **options):
        (tmp_path / "in").mkdir(exist_ok=True)
        for i, name in enumerate(names):
            photo(*(sizes or {}).get(name, (40, 30)), i).save(tmp_path / "in" / name)
        photo(32, 32, 99).save(tmp_path / "style.png")
        manifest = tmp_path / "m.csv"
        header = options.pop("header", "content,style,gpus,output")
        manifest.write_text(header + "\n" + "".join(r + "\n" for r in rows))
        out = open_output_dir(tmp_path / "out")
        plan = make_plan(read_manifest(manifest), out, "fake")
        (tmp_path / "markers").mkdir(exist_ok=True)
        (tmp_path / "log").mkdir(exist_ok=True)
        spec = f"iters=6,sleep=0.01,scales=2,die_marker={tmp_path / 'markers'},log={tmp_path / 'log'}"
        spec += options.pop("fake", "")
        display = options.pop("display", RecordingDisplay())
        options.setdefault("group_size", 1)
        scheduler = Scheduler(plan.todo, len(plan.done), out, None, "fake",
                              BatchOptions(backend=Fake(spec), **options), display)
        return scheduler, out, plan, display

    return make


def run(scheduler):
    state = scheduler.run()
    return state, {r.output: r for r in scheduler.out.records().values()}


def test_items_are_routed_to_one_and_two_gpu_workers(ray_gpus, batch):
    scheduler, out, plan, _ = batch(["in/a.png,style.png,,", "in/b.png,style.png,2,", "in/c.png,style.png,1,"],
                                    ["a.png", "b.png", "c.png"])
    state, records = run(scheduler)
    assert state.done == 3 and state.failed == 0
    assert records["b__style.png"].devices == ["fake:0", "fake:1"]
    assert sorted(records["b__style.png"].worker.split("GPU ")[1].split(",")) == ["0", "1"]
    for name in ("a__style.png", "c__style.png"):
        assert records[name].devices == ["fake:0"] and records[name].attempts == 1
    assert all((out.root / name).is_file() for name in records)


def test_a_worker_killed_mid_item_is_replaced_and_the_item_finishes(ray_gpus, batch):
    scheduler, out, _, display = batch(["in/die.png,style.png,,", "in/ok.png,style.png,,"], ["die.png", "ok.png"])
    state, records = run(scheduler)
    assert state.done == 2 and state.failed == 0
    assert records["die__style.png"].attempts == 2
    # it resumed from the checkpoint its first attempt saved after scale 1
    assert records["die__style.png"].resumed_from_scale == 0
    assert any("retrying[/] die__style.png: worker lost" in line for line in display.lines)


def test_a_stalled_worker_is_replaced_and_its_item_runs_again(ray_gpus, batch):
    scheduler, out, _, display = batch(["in/hang.png,style.png,,"], ["hang.png"], stall_timeout=2.0)
    state, records = run(scheduler)
    assert state.done == 1 and records["hang__style.png"].attempts == 2
    assert any("hang__style.png: worker lost (no progress for" in line for line in display.lines)


def test_an_item_that_raises_fails_alone(ray_gpus, batch):
    scheduler, out, _, display = batch(["in/fail.png,style.png,,", "in/fine.png,style.png,,",
                                        "in/good.png,style.png,,"], ["fail.png", "fine.png", "good.png"])
    state, records = run(scheduler)
    assert state.done == 2 and state.failed == 1
    failure = next(iter(out.failures().values()))
    assert failure.output == "fail__style.png" and failure.kind == "error"
    assert "fail.png: fake failure for tests" in failure.error and failure.line == 2
    assert set(records) == {"fine__style.png", "good__style.png"}


def test_out_of_memory_moves_the_item_to_a_two_gpu_worker(ray_gpus, batch):
    scheduler, out, _, display = batch(["in/oom.png,style.png,,"], ["oom.png"])
    state, records = run(scheduler)
    assert state.done == 1
    assert records["oom__style.png"].devices == ["fake:0", "fake:1"]
    assert any("oom__style.png: moving it to a two-GPU worker" in line for line in display.lines)


def test_out_of_memory_retries_with_smaller_tiles_before_two_gpus(ray_gpus, batch):
    """The engine says which tile ran out (the image's side when untiled): the item runs again on one
    GPU with tiles of half that, and half again, until it fits."""
    scheduler, out, _, display = batch(["in/oom.png,style.png,,"], ["oom.png"], fake=",tiles_fit=256")
    state, records = run(scheduler)
    assert state.done == 1 and records["oom__style.png"].devices == ["fake:0"]
    tries = [line for line in display.lines if "out of memory" in line]
    assert [t.split(": ")[-1] for t in tries] == ["retrying with tiles of 512 px", "retrying with tiles of 256 px"]


def test_a_tile_column_reaches_the_worker(ray_gpus, batch):
    """A manifest's tile cell is how that image runs: with tiles that fit, it needs no retry."""
    scheduler, out, _, display = batch(["in/oom.png,style.png,,,256"], ["oom.png"], fake=",tiles_fit=256",
                                       header="content,style,gpus,output,tile")
    state, records = run(scheduler)
    assert state.done == 1 and records["oom__style.png"].devices == ["fake:0"]
    assert not any("out of memory" in line for line in display.lines)


def test_an_item_resumes_from_its_saved_checkpoint(ray_gpus, batch):
    scheduler, out, plan, _ = batch(["in/a.png,style.png,,"], ["a.png"])
    out.write_checkpoint(plan.todo[0].id, b"fake:0")
    state, records = run(scheduler)
    assert records["a__style.png"].resumed_from_scale == 0
    assert out.checkpoint(plan.todo[0].id) is None  # removed once the image is done


def test_first_interrupt_drains_running_items_and_starts_no_more(ray_gpus, batch):
    holder = {}

    def stop_once_running(state):
        if state.running and not state.draining:
            holder["scheduler"].request_stop()

    names = [f"p{i}.png" for i in range(6)]
    scheduler, out, _, _ = batch([f"in/{n},style.png,," for n in names], names,
                                 display=RecordingDisplay(stop_once_running))
    holder["scheduler"] = scheduler
    state, records = run(scheduler)
    assert scheduler.interrupted and state.failed == 0
    assert 1 <= state.done <= 2 and len(records) == state.done  # only what was running when asked
    assert state.pending == 6 - state.done


def starts(out, plan) -> dict[str, list[int]]:
    """For each output, the group sizes of its starts, largest first (from the fake backend's log)."""
    names = {item.id: item.output for item in plan.all}
    found: dict[str, list[int]] = {}
    for f in (out.root.parent / "log").iterdir():
        item_id, size, _ = f.name.split(".")
        found.setdefault(names[item_id], []).append(int(size))
    return {name: sorted(sizes, reverse=True) for name, sizes in found.items()}


def test_compatible_items_are_grouped_and_each_gets_its_own_result(ray_gpus, batch):
    names = [f"p{i}.png" for i in range(5)] + ["wide.png"]
    scheduler, out, plan, display = batch([f"in/{n},style.png,," for n in names], names,
                                          sizes={"wide.png": (48, 30)}, group_size=None, workers=1)
    state, records = run(scheduler)
    assert state.done == 6 and state.failed == 0
    # automatic size on a (fake) 80 GiB GPU: the five 40x30 images together, the 48x30 one alone
    assert starts(out, plan) == {**{f"p{i}__style.png": [5] for i in range(5)}, "wide__style.png": [1]}
    assert all(records[f"p{i}__style.png"].attempts == 1 for i in range(5))
    assert sum("in a group of 5" in line for line in display.lines) == 5
    # each item's own image (the fake returns its content, shrunk and tinted by its id), not a neighbour's
    from PIL import Image

    from batchstyle.engine.images import load_image
    from support.fake_backend import fake_image
    ids = {item.output: item.id for item in plan.all}
    for i in range(5):
        made = Image.open(out.root / f"p{i}__style.png").convert("RGB")
        own = fake_image(load_image(out.root.parent / "in" / f"p{i}.png"), ids[f"p{i}__style.png"])
        assert made.tobytes() == own.tobytes()


def test_group_size_limits_each_group(ray_gpus, batch):
    names = [f"p{i}.png" for i in range(5)]
    scheduler, out, plan, _ = batch([f"in/{n},style.png,," for n in names], names, group_size=2, workers=1)
    state, _ = run(scheduler)
    assert state.done == 5
    assert sorted(s for sizes in starts(out, plan).values() for s in sizes) == [1, 2, 2, 2, 2]


def test_groups_are_shared_out_among_idle_workers(ray_gpus, batch):
    names = [f"p{i}.png" for i in range(6)]
    scheduler, out, plan, _ = batch([f"in/{n},style.png,," for n in names], names, group_size=None, workers=2)
    scheduler.pool.adjust(scheduler._need())  # both workers up before anything is dispatched, however slow
    ray.get([w.info_ref for w in scheduler.workers])  # the machine is: the share is what is tested
    state, records = run(scheduler)
    assert state.done == 6
    sizes = sorted(s for sizes in starts(out, plan).values() for s in sizes)
    assert sizes == [3] * 6  # two groups of three, one per GPU, not one group of six
    assert len({r.worker for r in records.values()}) == 2


def test_a_bad_item_in_a_group_fails_alone(ray_gpus, batch):
    names = ["fail.png", "fine.png", "good.png"]
    scheduler, out, plan, _ = batch([f"in/{n},style.png,," for n in names], names, group_size=3, workers=1)
    state, records = run(scheduler)
    assert state.done == 2 and state.failed == 1
    assert set(records) == {"fine__style.png", "good__style.png"}
    assert starts(out, plan) == {"fine__style.png": [2], "good__style.png": [2]}


def test_a_group_out_of_memory_retries_its_items_alone(ray_gpus, batch):
    names = ["oom.png", "a.png", "b.png"]
    scheduler, out, plan, display = batch([f"in/{n},style.png,," for n in names], names, group_size=3, workers=1)
    state, records = run(scheduler)
    assert state.done == 3 and state.failed == 0
    assert starts(out, plan) == {"oom__style.png": [3, 1, 1], "a__style.png": [3, 1], "b__style.png": [3, 1]}
    assert records["oom__style.png"].devices == ["fake:0", "fake:1"]  # alone it still needed two GPUs
    assert records["a__style.png"].devices == ["fake:0"]
    assert sum("retrying alone" in line for line in display.lines) == 3


def test_a_worker_killed_mid_group_requeues_every_item_of_the_group(ray_gpus, batch):
    names = ["die.png", "a.png", "b.png"]
    scheduler, out, plan, _ = batch([f"in/{n},style.png,," for n in names], names, group_size=3, workers=1)
    state, records = run(scheduler)
    assert state.done == 3 and state.failed == 0
    for name in ("die__style.png", "a__style.png", "b__style.png"):
        assert records[name].attempts == 2
        assert records[name].resumed_from_scale == 0  # all three resumed from their own checkpoints
    assert starts(out, plan)["a__style.png"] == [3, 3]  # and again as one group


def test_pool_policy():
    # two-GPU work first, one-GPU workers take the rest of the GPUs
    assert desired_workers({1: 5, 2: 1}, gpus_total=4, gpus_per_node_max=4, cap=None, cpu_nodes=1) == {1: 2, 2: 1}
    assert desired_workers({1: 1}, gpus_total=4, gpus_per_node_max=4, cap=None, cpu_nodes=1) == {1: 1, 2: 0}
    # no node with two GPUs: no two-GPU workers
    assert desired_workers({2: 3}, gpus_total=4, gpus_per_node_max=1, cap=None, cpu_nodes=1) == {1: 0, 2: 0}
    assert desired_workers({1: 9}, gpus_total=8, gpus_per_node_max=8, cap=3, cpu_nodes=1) == {1: 3, 2: 0}
    # no GPUs: one CPU worker per node
    assert desired_workers({0: 7}, gpus_total=0, gpus_per_node_max=0, cap=None, cpu_nodes=3) == {0: 3}
    assert desired_workers({0: 1}, gpus_total=0, gpus_per_node_max=0, cap=None, cpu_nodes=3) == {0: 1}


def test_retry_and_escalation_policy():
    assert after_worker_lost(0, preempted=False) == 1
    assert after_worker_lost(1, preempted=True) == 1  # preemption is free
    # smaller tiles first (half of what ran out, on the 16 px grid), on the same worker shape
    assert after_out_of_memory(1, can_use_two=True, tile_used=4096) == Retry(1, 2048)
    assert after_out_of_memory(2, can_use_two=True, tile_used=1000) == Retry(2, 496)
    # then two GPUs, then a failure; an engine that does not say its tile goes straight on
    assert after_out_of_memory(1, can_use_two=True, tile_used=200) == Retry(2)
    assert after_out_of_memory(1, can_use_two=True) == Retry(2)
    assert "gpus=2" in after_out_of_memory(1, can_use_two=False, tile_used=250)
    assert "lower end_scale" in after_out_of_memory(2, can_use_two=True)


def test_big_images_run_on_one_gpu_with_tiles_unless_two_are_asked_for():
    from pathlib import Path

    from batchstyle.batch.items import Item
    from batchstyle.batch.plan import route
    from batchstyle.engine.settings import StyleSettings

    item = Item(2, Path("a.png"), (Path("s.png"),), StyleSettings(), "a.png")
    assert route(item, (8000, 6000), None) == 1  # the default: tiles on one GPU
    assert route(item, (8000, 6000), 12_000_000) == 2 and route(item, (3000, 2000), 12_000_000) == 1
    assert route(Item(2, Path("a.png"), (Path("s.png"),), StyleSettings(), "a.png", gpus=2), (64, 64), None) == 2


def test_two_gpu_items_on_a_cluster_without_two_gpu_machines():
    assert "no node of this cluster has two" in fit_to_cluster(2, asked=2, gpus_per_node=1)
    assert fit_to_cluster(2, asked=None, gpus_per_node=1) == 1  # routed by size: it tries one GPU
    assert fit_to_cluster(2, asked=2, gpus_per_node=2) == 2
    assert fit_to_cluster(1, asked=None, gpus_per_node=1) == 1


def test_group_size_policy():
    # GPUs group images up to 512x512 by 8, CPUs up to 256x256 by 4; bigger ones run alone
    assert auto_group_size(512 * 512, "cuda", None) == 8 and auto_group_size(513 * 512, "cuda", None) == 1
    assert auto_group_size(256 * 256, "cpu", None) == 4 and auto_group_size(300 * 300, "cpu", None) == 1
    # at most half the device's memory: 512x512 in fp32 is ~0.69 GB per image (the measured memory
    # model, engine/memory.py), so 3 on a 4 GB GPU
    assert auto_group_size(512 * 512, "cuda", 4 << 30, "fp32") == 3
    assert auto_group_size(512 * 512, "cuda", 1 << 30, "fp32") == 1
    # a fair share among idle workers: 8 compatible images on 2 idle workers make 4 + 4
    assert fair_share(8, idle_workers=2, limit=8) == 4 and fair_share(8, idle_workers=1, limit=3) == 3
    assert fair_share(1, idle_workers=4, limit=8) == 1
