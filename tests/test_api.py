"""The front door: a small pinned ``__all__``, and importing ppdl_nb leaves torch alone."""

from __future__ import annotations

import subprocess
import sys

import ppdl_nb

PINNED = [
    "FixedPrecisionTensor",
    "ModulePointer",
    "PointerTensor",
    "SharedTensor",
    "VirtualWorker",
    "WorkerMismatchError",
    "WorkerUnavailableError",
    "chain_of",
    "connect",
    "encrypt",
    "fix_precision",
    "launch",
    "send",
    "share",
    "trace",
]


def test_public_api_is_pinned():
    assert sorted(ppdl_nb.__all__) == sorted(PINNED)
    for name in ppdl_nb.__all__:
        assert getattr(ppdl_nb, name).__doc__, f"{name} needs a docstring"


SNAPSHOT = r"""
import json, sys, torch, torch.nn, torch.nn.functional as F
def snap():
    out = {}
    for label, obj in (("torch", torch), ("Tensor", torch.Tensor), ("F", F),
                       ("Module", torch.nn.Module), ("Parameter", torch.nn.Parameter)):
        out[label] = {k: repr(getattr(obj, k, None))[:80] for k in dir(obj)
                      if not k.startswith("__") or k in ("__add__", "__torch_function__")}
    return out
before = snap()
import ppdl_nb, ppdl_nb.magics
after = snap()
print(json.dumps([k + "." + n for k in before for n in set(before[k]) ^ set(after[k])
                  or [n for n in before[k] if before[k][n] != after[k].get(n)]]))
"""


def test_importing_ppdl_nb_does_not_modify_torch():
    out = subprocess.run([sys.executable, "-c", SNAPSHOT], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
