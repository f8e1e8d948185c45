"""``batchstyle`` with the fake backend, for the CLI tests: ``python tests/fake_batchstyle.py SPEC run ...``

SPEC is the fake's options (``iters=8,sleep=0.03,scales=2``; see ``fake_backend``).
"""

import sys

from fake_backend import Fake

from batchstyle.cli import main

if __name__ == "__main__":
    spec = sys.argv.pop(1)
    main(obj={"backend": Fake(spec)}, prog_name="batchstyle")
