"""What this machine gives the process, for sizing thread pools. Torch-free and import-free.

    from smoledge.host import local_cores
    threads = min(profile.threads, local_cores())
"""

from __future__ import annotations

import os


def local_cores() -> int:
    """Cores this process may run on: the affinity mask, which containers and taskset narrow, where the
    platform has one (Linux); else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
