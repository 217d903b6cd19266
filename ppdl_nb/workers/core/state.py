"""Where a worker keeps what must outlive a restart of its process (privacy ledgers).

Kernel workers inherit the notebook's root, so their ledgers outlive a restart of the
worker; set ``PPDL_NB_STATE_DIR`` to keep them across notebook sessions too.

>>> import os; os.environ["PPDL_NB_STATE_DIR"] = "/tmp/ppdl-doc"
>>> str(state_root())
'/tmp/ppdl-doc'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["state_dir", "state_root"]

def state_root() -> Path:
    """``$PPDL_NB_STATE_DIR``, or a directory for this notebook session.

    Kernel workers inherit the notebook's root, so their ledgers outlive a restart of the
    worker; set ``PPDL_NB_STATE_DIR`` to keep them across notebook sessions too.
    """
    root = os.environ.get("PPDL_NB_STATE_DIR")
    if not root:
        root = os.path.join(tempfile.gettempdir(), f"ppdl_nb-{os.getuid()}", str(os.getpid()))
        os.environ["PPDL_NB_STATE_DIR"] = root  # inherited by the workers this process starts
    return Path(root)


def state_dir(worker: Any) -> Path:
    """Where the worker keeps state that must outlive a restart (its privacy ledgers)."""
    path = state_root() / worker.name
    path.mkdir(parents=True, exist_ok=True)
    return path
