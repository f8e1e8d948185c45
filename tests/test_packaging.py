"""The known-good versions (constraints.txt) that the README offers for a reproducible install agree
with what pyproject.toml asks for, on every Python the project says it supports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PYTHONS = sorted(re.sub(r".*:: ", "", c) for c in PYPROJECT["project"]["classifiers"]
                 if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in listed]


def pins(python: str) -> dict[str, str]:
    """Package -> pinned version in constraints.txt for one Python version (markers evaluated)."""
    env = default_environment() | {"python_version": python, "python_full_version": f"{python}.0"}
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                (version,) = [s.version for s in req.specifier if s.operator == "=="]
                assert canonicalize_name(req.name) not in out, f"constraints.txt pins {req.name} twice for {python}"
                out[canonicalize_name(req.name)] = version
    return out


def test_the_supported_pythons_are_declared_and_allowed():
    assert PYTHONS == ["3.10", "3.11", "3.12"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


@pytest.mark.parametrize("python", PYTHONS)
def test_every_requirement_has_a_known_good_version_inside_its_range(python):
    pinned = pins(python)
    assert "batchstyle" not in pinned
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"constraints.txt has no version of {req.name} for Python {python}: refresh it"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[name]} for Python {python}, outside {req}: refresh it"
        )
