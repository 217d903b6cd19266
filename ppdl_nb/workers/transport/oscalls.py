"""The operating-system calls that are Linux-only, in one place, each with a fallback.

Students run the course on macOS too. Linux gives two conveniences: a child process can
ask to be killed when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and ``/proc`` tells
a live process from a zombie. Elsewhere a worker is stopped at the notebook's normal exit
(``atexit``) instead, and liveness comes from ``kill(pid, 0)`` (a zombie child of this
process is reaped first, so it does not count as running).

>>> process_running(os.getpid())
True
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

__all__ = ["LINUX", "die_with_parent", "process_running"]

LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the OS to send ``sig`` to this process when its parent dies; False where it
    cannot (not Linux), so the caller relies on the parent's ``atexit`` instead."""
    if not LINUX:
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig) == 0
    except (OSError, AttributeError):
        return False


def process_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed child not yet reaped)."""
    if LINUX:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
        except OSError:
            pass  # /proc not mounted: as elsewhere
    with contextlib.suppress(ChildProcessError, OSError):  # reap it if it is our zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True
