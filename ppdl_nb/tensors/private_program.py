"""The notebook's side of a private forward run as one program (``spdz/program.py``).

:func:`run_program` turns a private model's layers into program steps
(:func:`~ppdl_nb.tensors.spdz.graph.build_steps`, which the parties run too), takes the labels
(and the dealer's requests) of every product and comparison from the session, exactly as
the layer-by-layer ops would (so randomness dealt ahead with ``session.deal_ahead`` is
used), and sends one request to each party and one to the dealer. The parties run every
layer peer to peer; each replies with its share of the output and per-step figures, from
which the per-layer chart is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ppdl_nb.tensors.fixed import FixedPrecisionTensor
from ppdl_nb.tensors.pointer import wrap_reply
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.tensors.spdz.graph import build_steps, layer_specs, normalized
from ppdl_nb.tensors.spdz.session import NONLINEAR, MPCSession
from ppdl_nb.workers.core.codec import Ref

__all__ = ["model_graph", "run_program"]


def _labelled(session: MPCSession, steps: list[dict[str, Any]], f: int
              ) -> tuple[list[dict[str, Any]], list[Any]]:
    """The steps with the labels of their dealer requests (taken from the session, so
    randomness dealt ahead is used), and what the dealer must deal now."""
    out, deal = [], []
    for st in steps:
        if st["op"] == "bilinear":
            (label, tlabel), more = session.take(st["kind"], st["params"], f)
            st = {**st, "label": label, "trunc_label": tlabel}
        elif st["op"] == "nonlinear":
            (label, _), more = session.take(NONLINEAR + st["fn"], {
                "shapes": [st["in_shape"]], "params": st["params"]}, 0)
            st = {**st, "label": label}
        else:
            more = []
        deal.extend(more)
        out.append(st)
    return out, deal


def model_graph(layers: Sequence[nn.Module]) -> list[dict[str, Any]]:
    """The chain of layers as the parties' graph (options only, JSON-shaped)."""
    return normalized(layer_specs(layers))


def run_program(layers: Sequence[nn.Module], weights: Sequence[Sequence[FixedPrecisionTensor]],
                x: FixedPrecisionTensor, *, owner: str = "me"
                ) -> tuple[FixedPrecisionTensor, list[dict[str, Any]]]:
    """Run the chain ``layers`` (weights shared like ``x``) on ``x`` as one program; the
    output and, per layer, its rounds, the bytes of the openings the parties sent each
    other, and the seconds the parties spent in it (party 0's clock). The parties are
    sent the graph too: they check that the steps implement it, and the output opens to
    the readers every input's owner allowed, plus those allowed for this graph
    (:attr:`PrivateModel.fingerprint`)."""
    session, f = x.child.session, x.frac_bits
    inputs = [x] + [w for ws in weights for w in ws]
    graph = model_graph(layers)
    steps, layer_of, shapes = build_steps(graph, list(x.shape),
                                          [list(w.shape) for w in inputs[1:]], f)
    if not steps:  # a model of nothing but Dropout/Identity
        return x, []
    steps, deal = _labelled(session, steps, f)
    label = session.label()

    def args(i: int) -> dict[str, Any]:
        return {"label": label, "steps": steps, "graph": graph, "owner": owner, "frac_bits": f,
                "inputs": [Ref(t.child.shares[i].id_at_location) for t in inputs]}

    replies = session.run("program", args, deal, name="private forward")
    parts = [wrap_reply(p, r["result"], p.context)
             for p, r in zip(session.parties, replies, strict=True)]
    out = FixedPrecisionTensor(SharedTensor(parts, session), f)
    return out, _per_layer(layers, shapes, layer_of, replies[0].get("extra") or [],
                           session.n)


def _per_layer(layers: Sequence[nn.Module], shapes: list[list[int]], layer_of: list[int],
               figures: list[Any], n: int) -> list[dict[str, Any]]:
    stats = [{"layer": type(layer).__name__, "shape": shape, "rounds": 0, "bytes": 0,
              "seconds": 0.0} for layer, shape in zip(layers, shapes, strict=True)]
    for k, (rounds, sent, seconds) in zip(layer_of, figures, strict=False):
        stats[k]["rounds"] += int(rounds)
        stats[k]["bytes"] += int(sent) * n  # every party sends as much as party 0
        stats[k]["seconds"] += float(seconds)
    return stats
