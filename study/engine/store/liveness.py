"""Who is a worker and whether it is still alive: the identity written on a claim, and the dead-pid test
that lets a SIGKILLed worker's cells be taken over before their heartbeat goes stale."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_dead(pid: int) -> bool:
    """True when ``pid`` is not a live process on this host (a reaped or zombie process counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    except OSError:
        return False
    try:  # a SIGKILLed child not yet reaped is a zombie: it still answers kill(0) but will never heartbeat
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def worker_dead(worker: str | None) -> bool:
    """True only when the worker ran on this host and its pid is gone; other hosts rely on the heartbeat."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and _pid_dead(int(pid))
