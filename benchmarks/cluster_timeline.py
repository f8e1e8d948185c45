"""A batch on a real multi-node Ray cluster on this machine, while nodes leave and join: the
driver's own log, with the moments the nodes changed.

    python -m benchmarks.cluster_timeline lose    # two nodes; the second is removed mid-batch
    python -m benchmarks.cluster_timeline join    # one node; a second joins 15 s into the batch

The driver is ``batchstyle run --address ... --plain`` with the fake backend of the tests (about
two seconds an image), so the timeline is the scheduler's, not the engine's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from tests.support.photos import folder_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(scenario: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    extra = cluster.add_node(num_cpus=1) if scenario == "lose" else None
    cluster.wait_for_nodes()
    with tempfile.TemporaryDirectory() as tmp:
        root, manifest = folder_job(Path(tmp), "photos", 8, (48, 36), 5, "manifest.csv")
        command = [sys.executable, "-m", "tests.support.fake_batchstyle", "iters=20,sleep=0.2,scales=1", "run",
                   str(manifest), "-o", str(root / "out"), "--plain", "--address", cluster.address, "--group-size", "1",
                   "-s", "48", "-ms", "48", "-ii", "20"]  # the ladder the fake walks: ETAs that mean something
        print("$", " ".join(command[1:]))
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

        def echo() -> None:
            for line in proc.stdout:
                print(f"[+{time.monotonic() - started:5.1f} s] {line}", end="", flush=True)

        reader = threading.Thread(target=echo, daemon=True)
        reader.start()
        time.sleep(15)  # Ray's node calls belong to the main thread
        if scenario == "lose":
            cluster.remove_node(extra)
            print(f"[+{time.monotonic() - started:5.1f} s] *** node {extra.node_id[:8]} removed ***", flush=True)
        else:
            node = cluster.add_node(num_cpus=1)
            print(f"[+{time.monotonic() - started:5.1f} s] *** node {node.node_id[:8]} added ***", flush=True)
        reader.join()
        print(f"exit code {proc.wait()}")
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lose")
