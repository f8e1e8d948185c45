"""The CLI as a user runs it, in real processes: ``batchstyle ...`` (or the same command with the fake
backend), a driver in its own session that can be killed with everything it started, waiting for what a
run writes, and a separate process that holds an output directory's run lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

FAKE = "iters=8,sleep=0.03,scales=2"  # the fake backend's options (support/fake_backend.py)
# ``python -m support.fake_batchstyle`` with the option and its module in one argument, so that
# ``[sys.executable, FAKE_CLI, SPEC, "run", ...]`` is the CLI with the fake backend ``Fake(SPEC)``.
FAKE_CLI = "-msupport.fake_batchstyle"


def command(args, fake: str | None) -> list[str]:
    """``batchstyle ARGS``, or with ``fake`` the same command with the fake backend."""
    return [sys.executable, *(["-m", "batchstyle"] if fake is None else [FAKE_CLI, fake]), *map(str, args)]


def batchstyle(*args: str, env: dict | None = None, timeout: float = 240, fake: str | None = None
               ) -> subprocess.CompletedProcess:
    return subprocess.run(command(args, fake), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start(*args: str, fake: str | None = None) -> subprocess.Popen:
    """A driver in its own session, so that everything it started can be cleaned up after a SIGKILL."""
    return subprocess.Popen(command(args, fake), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # Ray's helper processes outlive a killed driver
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


_HOLD_LOCK = """
import sys, time
from batchstyle.batch.outdir import open_output_dir
lock = open_output_dir(sys.argv[1]).lock().acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(outdir):
    """A separate process that holds the run lock of ``outdir`` until killed (a live run, to the lock)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(outdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc
