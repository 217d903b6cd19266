"""The party's side of encrypted training: SGD steps on shares, as one routine per request.

``mpc.run`` with op ``train`` runs :func:`ppdl_nb.mpc.train_step.train_step` on this
party's shares for each batch of the request: the forward, the loss gradient, the backward
and the update, every round peer to peer, the dealer's randomness for the whole request
dealt at once. The request names the *program* (layers, hyperparameters, epochs, batch
size) and its rows: the party computes the program's fingerprint itself and checks
every batch against it, so the readers the data owners allowed for that fingerprint
(:func:`~ppdl_nb.workers.core.policy.program_policy`) read the results and nobody
else: a notebook that swaps in another graph, other hyperparameters or more epochs
gets a different fingerprint, which no owner allowed.

The reply's result is this party's shares of the new parameters, then the momentum
buffers, then (with ``open_loss``) of each step's summed loss; ``extra`` gives, per
step, ``[rounds, bytes this party sent, seconds]``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import torch

from ppdl_nb.mpc.train_layers import LAYERS
from ppdl_nb.mpc.train_step import TrainConfig, train_step
from ppdl_nb.tensors.spdz.program import _counted
from ppdl_nb.tensors.spdz.routines import Party, Routine, drive, routine, sub_label
from ppdl_nb.workers.core.policy import program_policy

__all__ = ["MAX_BATCH", "fingerprint", "train"]

MAX_BATCH = 4096
_PROGRAM_KEYS = {"layers", "config", "epochs", "batch_size", "owner"}


def fingerprint(program: dict[str, Any]) -> str:
    """The program's name in allowances: a hash of its layers, hyperparameters, epochs,
    batch size and the weights' owner (16 hex digits)."""
    if not isinstance(program, dict) or set(program) != _PROGRAM_KEYS:
        raise ValueError(f"a training program is a dict of {sorted(_PROGRAM_KEYS)}")
    text = json.dumps(program, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_program(program: dict[str, Any]) -> TrainConfig:
    cfg = TrainConfig.from_wire(program["config"])
    layers = program["layers"]
    if not isinstance(layers, list) or not layers or any(
            not isinstance(s, dict) or s.get("layer") not in LAYERS for s in layers):
        raise ValueError(f"a program's layers are dicts naming one of {', '.join(LAYERS)}")
    for key in ("epochs", "batch_size"):
        v = program[key]
        if type(v) is not int or v < 1:
            raise ValueError(f"a program's {key} is a positive int, got {v!r}")
    if program["batch_size"] > MAX_BATCH:
        raise ValueError(f"batch_size is at most {MAX_BATCH}")
    return cfg


def _rows(batches: Any, program: dict[str, Any], n: int, step: Any) -> list[torch.Tensor]:
    """The requested batches as row indices into ``n`` rows, checked against the program."""
    per_epoch = -(-n // program["batch_size"])
    if type(step) is not int or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if not isinstance(batches, list) or not batches \
            or step + len(batches) > per_epoch * program["epochs"]:
        raise ValueError(f"the program has {per_epoch * program['epochs']} steps "
                         f"({program['epochs']} epochs); steps {step} to "
                         f"{step + len(batches) if isinstance(batches, list) else '?'} exceed it")
    out = []
    for rows in batches:
        if not isinstance(rows, list) or not 1 <= len(rows) <= program["batch_size"] \
                or any(type(r) is not int or not 0 <= r < n for r in rows):
            raise ValueError(f"a batch is a list of 1 to {program['batch_size']} row indices "
                             f"below {n}")
        out.append(torch.tensor(rows, dtype=torch.int64))
    return out


@routine("train")
def train(p: Party, *, label: bytes, program: dict[str, Any], weights: list[Any],
          velocity: list[Any], data: list[Any], step: int, batches: list[Any]) -> Routine:
    """Run ``batches`` (lists of row indices into the rows of ``data``, ``[x, y]``
    references per data owner, concatenated) as SGD steps ``step``, ``step + 1``, ... of
    ``program``; see the module."""
    cfg = _check_program(program)
    fp = fingerprint(program)
    if not isinstance(data, list) or not data or any(
            not isinstance(d, list) or len(d) != 2 for d in data):
        raise TypeError("data is a list of [x, y] references, one pair per data owner")
    ws = [p.entry(r, "a parameter") for r in weights]
    vs = [p.entry(r, "a momentum buffer") for r in velocity]
    ds = [[p.entry(x, "x"), p.entry(y, "y")] for x, y in data]
    x_all = torch.cat([x.obj for x, _ in ds]) if len(ds) > 1 else ds[0][0].obj
    y_all = torch.cat([y.obj for _, y in ds]) if len(ds) > 1 else ds[0][1].obj
    if x_all.shape[0] != y_all.shape[0]:
        raise ValueError(f"the data has {x_all.shape[0]} inputs and {y_all.shape[0]} targets")
    w, v = [e.obj for e in ws], [e.obj for e in vs]
    losses, stats = [], []
    for k, rows in enumerate(_rows(batches, program, x_all.shape[0], step)):
        tally, start = [0, 0], time.perf_counter()
        protocol = train_step(p.index, program["layers"], w, v, x_all[rows], y_all[rows], cfg,
                              parties=p.session.n)
        res = yield from _counted(drive(p, sub_label(label, "s", k), protocol), tally,
                                  p.session.n - 1)
        w, v = res.weights, res.velocity
        if res.loss is not None:
            losses.append(res.loss.reshape(1))
        stats.append([*tally, time.perf_counter() - start])
    inputs = [e.policy for e in ws + vs] + [e.policy for pair in ds for e in pair]
    readers = program_policy(inputs, fp).readers
    out = [*w, *v] + ([torch.cat(losses)] if losses else [])
    return out, frozenset(readers or ()), stats
