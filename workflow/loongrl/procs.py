"""Process-tree control shared by the kill/resume checks (tests/test_zero3.py, ``make gpu-smoke``)."""

from __future__ import annotations

import signal


def kill_tree(pid: int, timeout: float = 60.0) -> None:
    """SIGKILL the launcher ``pid`` and every process under it, and wait until all are gone.

    The ranks must die with the launcher, as in a SLURM job's cgroup: torch's elastic agent may start them in
    sessions of their own, where a group kill does not reach, and a surviving rank would keep training and
    writing beside the resumed run. Raises ``RuntimeError`` naming the survivors.
    """
    import psutil

    root = psutil.Process(pid)
    procs = [*root.children(recursive=True), root]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        raise RuntimeError(f"processes survived SIGKILL: {alive}")
