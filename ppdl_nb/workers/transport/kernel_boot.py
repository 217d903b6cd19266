"""Entry point of a worker kernel process: die with the notebook, then run ipykernel.

``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes Linux kill this process when the process
that launched it dies, so a crashed notebook leaves no orphan workers behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = int(os.environ.get("PPDL_NB_PARENT_PID", "0"))
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: shutdown and atexit still clean up
    if parent and os.getppid() != parent:
        sys.exit(1)  # the launcher died before we could register
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
