"""A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): nodes leave and
join while a batch runs. One CPU worker per node; the fake backend keeps the images quick."""

from __future__ import annotations

import pytest

from batchstyle.batch.manifest import read_manifest
from batchstyle.batch.outdir import OutputDir, open_output_dir
from batchstyle.batch.plan import make_plan
from batchstyle.batch.scheduler import Scheduler
from batchstyle.batch.state import BatchOptions
from support.fake_backend import Fake
from support.photos import folder_job

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray
FAKE = "iters=8,sleep=0.12,scales=2"  # about two seconds an image


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


class Watcher:
    """A display that records log lines, how many images ran at once, and runs a hook every tick."""

    def __init__(self, hook):
        self.lines: list[str] = []
        self.most_at_once = 0
        self.hook = hook

    def update(self, state) -> None:
        self.most_at_once = max(self.most_at_once, len(state.running))
        self.hook(state)

    def log(self, text: str) -> None:
        self.lines.append(text)


def scheduler_for(tmp_path, photo, count: int, display) -> tuple[Scheduler, OutputDir]:
    root, manifest = folder_job(tmp_path, "photos", count, (40, 30), 3, "m.csv")
    out = open_output_dir(root / "out")
    plan = make_plan(read_manifest(manifest), out, "fake")
    return Scheduler(plan.todo, 0, out, None, "fake", BatchOptions(backend=Fake(FAKE), group_size=1), display), out


def running_nodes(state) -> set[str]:
    return {worker.node_id for _, worker in state.running if worker.node_id}


def test_a_node_lost_mid_batch_costs_only_its_images_progress_and_they_finish_elsewhere(cluster, tmp_path, photo):
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    lost = {}

    def remove_the_node_once_both_work(state):
        if not lost and node.node_id in running_nodes(state) and len(running_nodes(state)) == 2:
            lost["items"] = [item.output for item, w in state.running if w.node_id == node.node_id]
            cluster.remove_node(node)

    display = Watcher(remove_the_node_once_both_work)
    scheduler, out = scheduler_for(tmp_path, photo, 6, display)
    state = scheduler.run()  # no exception: a lost node is not the batch's end
    assert lost, "the node was never busy"
    assert state.done == 6 and state.failed == 0
    records = {r.output: r for r in out.records().values()}
    assert set(records) == {f"p{i}__style.png" for i in range(6)}
    for output in lost["items"]:  # requeued, and made by the worker of the node that is left
        assert any(f"retrying[/] {output}: worker lost" in line for line in display.lines), display.lines
        assert records[output].attempts <= 2
    assert not [w for w in scheduler.workers if w.node_id == node.node_id]


def test_a_node_that_joins_mid_batch_gets_a_worker_and_images_run_on_both(cluster, tmp_path, photo):
    added = {}

    def add_a_node_once_running(state):
        if not added and state.running:
            added["node"] = cluster.add_node(num_cpus=1)

    display = Watcher(add_a_node_once_running)
    scheduler, out = scheduler_for(tmp_path, photo, 8, display)
    try:
        state = scheduler.run()
    finally:
        if added:
            cluster.remove_node(added["node"])
    assert state.done == 8 and state.failed == 0
    assert display.most_at_once == 2  # the new node's worker took images of the same batch
