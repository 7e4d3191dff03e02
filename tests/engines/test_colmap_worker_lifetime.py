"""The COLMAP worker process ends when the process that started it is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import time
    from aetherscan.engines.colmap_sfm import _exit_with_parent
    _exit_with_parent(poll_s=0.1)
    time.sleep(60)
    """
)
# The parent dies at once, most likely before the worker has even finished importing.
PARENT = textwrap.dedent(
    f"""
    import os, signal, subprocess, sys
    from aetherscan.engines.colmap import PARENT_PID_VARIABLE
    env = {{**os.environ, PARENT_PID_VARIABLE: str(os.getpid())}}
    child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(child.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_worker_exits_when_its_parent_is_killed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.run(
        [sys.executable, "-c", PARENT], capture_output=True, text=True, env=env, timeout=60
    )
    assert parent.returncode == -9
    child_pid = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 20
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child_pid), "the worker outlived its killed parent"
