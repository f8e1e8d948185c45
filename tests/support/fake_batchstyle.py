"""``batchstyle`` with the fake backend, for the CLI tests and benchmarks: ``python -m
support.fake_batchstyle SPEC run ...`` in the tests (``tests/`` on ``PYTHONPATH``), ``python -m
tests.support.fake_batchstyle SPEC run ...`` from the repository root.

SPEC is the fake's options (``iters=8,sleep=0.03,scales=2``; see ``fake_backend``).
"""

import sys

from batchstyle.cli import main

from .fake_backend import Fake

if __name__ == "__main__":
    spec = sys.argv.pop(1)
    main(obj={"backend": Fake(spec)}, prog_name="batchstyle")
