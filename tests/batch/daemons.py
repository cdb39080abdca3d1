"""Waiting for and stopping the daemons a test harness started (each in its own session)."""
import os
import signal
import subprocess
import time


def wait_until(condition, what, timeout=30, procs=(), log_of=None):
    """Polls `condition` until it holds; TimeoutError after `timeout` s. With `log_of` (a process ->
    its log file), a RuntimeError with the end of that log as soon as one of `procs` has exited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        for p in procs if log_of else ():
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited while waiting for {what}: " + open(log_of(p)).read()[-2000:])
        time.sleep(0.2)
    raise TimeoutError(f"waiting for {what}")


def stop_all(procs, grace=15):
    """SIGTERM every process group (last started first), then SIGKILL what outlives `grace`."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in reversed(procs):
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
