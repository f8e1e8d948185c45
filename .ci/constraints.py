"""Write constraints.txt: the versions that every extra of the project resolves to, today, on each
supported Python, with the pip that `python3 -m venv` brings there.

    python .ci/constraints.py [--python 3.10 --python 3.11 --python 3.12]

For each Python found (``pythonX.Y`` on PATH, or pyenv's), it makes a throwaway virtual environment
and asks its own pip for ``--dry-run --report`` of ``.[every extra]``: nothing is installed. A
package that resolves to the same version everywhere gets one line; one that differs gets a line
per Python with a ``python_version`` marker. Run it after the suite passed on the newest releases
(``bash .ci/run``), and commit the file with that run's date in the message.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.10", "3.11", "3.12")


def interpreter(version: str) -> str | None:
    """The path of a Python ``version`` interpreter, or None when this machine has none."""
    found = shutil.which(f"python{version}")
    pyenv = Path.home() / ".pyenv" / "versions"
    if pyenv.is_dir():  # pyenv's shims refuse versions that are not selected: take the real binary
        for folder in sorted(pyenv.glob(f"{version}.*")):
            found = str(folder / "bin" / "python")
    return found


def resolve(python: str, extras: list[str]) -> dict[str, str]:
    """Package name -> version that a fresh venv's own pip resolves ``.[extras]`` to."""
    with tempfile.TemporaryDirectory() as tmp:
        venv, report = Path(tmp) / "venv", Path(tmp) / "report.json"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        target = f"{ROOT}[{','.join(extras)}]"
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--report", str(report), target], check=True)
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs
            if i["metadata"]["name"].lower() != "batchstyle"}


def lines(resolved: dict[str, dict[str, str]]) -> list[str]:
    """One ``name==version`` line per package, or one per Python (with a marker) where they differ."""
    out = []
    for name in sorted({n for versions in resolved.values() for n in versions}):
        per_python = {py: versions.get(name) for py, versions in resolved.items()}
        if len(set(per_python.values())) == 1:
            out.append(f"{name}=={next(iter(per_python.values()))}")
            continue
        out += [f'{name}=={v}; python_version == "{py}"' for py, v in per_python.items() if v]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="a Python version (default: 3.10, 3.11, 3.12)")
    args = parser.parse_args()
    extras = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    resolved = {}
    for version in args.python or PYTHONS:
        python = interpreter(version)
        if python is None:
            sys.exit(f"error: no Python {version} on this machine; pass --python for the ones there are")
        resolved[version] = resolve(python, extras)
        print(f"Python {version}: {len(resolved[version])} packages", file=sys.stderr)
    header = [
        "# Known-good versions: what every extra resolved to on " + ", ".join(f"Python {v}" for v in resolved)
        + ",", "# written by `python .ci/constraints.py`; the suite (`bash .ci/run`) runs on Python 3.11.",
        "# A reproducible install:  pip install -e \".[test]\" -c constraints.txt",
    ]
    (ROOT / "constraints.txt").write_text("\n".join(header + lines(resolved)) + "\n")


if __name__ == "__main__":
    main()
