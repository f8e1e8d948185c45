"""cluster.yaml: the Ray cluster launcher config parses and has what `ray up` and batchstyle need."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"

# GPUs per AWS instance type the config may use (the launcher detects them; resources: {} on AWS).
AWS_GPUS = {
    "g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.12xlarge": 4,
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
    "g6.xlarge": 1, "g6.12xlarge": 4, "p3.2xlarge": 1, "p3.8xlarge": 4, "p4d.24xlarge": 8,
}


@pytest.fixture(scope="module")
def config() -> dict:
    assert CLUSTER_YAML.is_file(), "cluster.yaml is missing from the repository root"
    data = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _gpus(node_type: dict) -> int:
    """GPUs of a node type: an explicit resources entry, else the instance type's count."""
    resources = node_type.get("resources") or {}
    if "GPU" in resources:
        return int(resources["GPU"])
    return AWS_GPUS.get(node_type["node_config"].get("InstanceType", ""), 0)


def test_top_level_keys(config):
    assert isinstance(config["cluster_name"], str) and config["cluster_name"]
    assert isinstance(config["max_workers"], int) and config["max_workers"] >= 1
    assert isinstance(config["idle_timeout_minutes"], (int, float)) and config["idle_timeout_minutes"] > 0
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"]
    assert config["provider"]["availability_zone"]
    assert config["provider"]["cache_stopped_nodes"] is False
    assert config["auth"]["ssh_user"] == "ubuntu"
    assert config["setup_commands"] and all(isinstance(c, str) for c in config["setup_commands"])
    assert any("batchstyle" in c and "pip install" in c for c in config["setup_commands"])


def test_node_types(config):
    types = config["available_node_types"]
    assert isinstance(types, dict) and len(types) >= 2
    head = config["head_node_type"]
    assert head in types, f"head_node_type {head!r} is not one of {sorted(types)}"
    for name, node_type in types.items():
        assert "node_config" in node_type and node_type["node_config"].get("InstanceType"), name
        assert "resources" in node_type, name
        if name == head:
            continue
        for key in ("min_workers", "max_workers"):
            assert isinstance(node_type.get(key), int), f"{name}.{key}"
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
    assert _gpus(types[head]) == 0, "the head should be a CPU node"


def test_gpu_workers_scale_from_zero(config):
    gpu_types = {name: t for name, t in config["available_node_types"].items()
                 if name != config["head_node_type"] and _gpus(t) > 0}
    assert gpu_types, "no GPU worker type"
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0, f"GPU type {name} must scale from zero"


def test_has_multi_gpu_type(config):
    counts = {name: _gpus(t) for name, t in config["available_node_types"].items()}
    assert max(counts.values()) >= 2, f"no node type with 2+ GPUs for 2-GPU items: {counts}"


def test_file_mounts_and_excludes(config):
    mounts = config.get("file_mounts") or {}
    assert "." in mounts.values(), "the checkout should be mounted for `pip install -e`"
    excludes = config.get("rsync_exclude") or []
    assert any("output" in e for e in excludes) and any(".git" in e for e in excludes)
    assert any("BATCHSTYLE_WEIGHTS" in c for c in config.get("head_setup_commands") or [])


def test_docker_image_matches_installed_ray(config):
    ray = pytest.importorskip("ray")
    image = config["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray(?:-ml)?:(\d+)\.(\d+)\.(\d+)(?:-\S+)?", image)
    assert match, f"docker image {image!r} is not pinned to a Ray version"
    installed = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)", ray.__version__).groups())
    assert (int(match[1]), int(match[2])) == installed, (
        f"cluster.yaml's image {image} does not match the installed Ray {ray.__version__}: "
        f"the cluster and the driver must run the same Ray")


def test_ray_accepts_config(config):
    """Ray's own launcher check (fills in the AWS defaults, then validates against its schema)."""
    pytest.importorskip("jsonschema")
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # private API: moved or gone in this Ray version
        pytest.skip("ray.autoscaler._private.util is not available")
    import copy
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
