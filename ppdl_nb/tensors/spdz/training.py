"""The party's side of encrypted training: SGD steps on shares, as one routine per request.

``mpc.run`` with op ``train`` runs :func:`ppdl_nb.mpc.train_step.train_step` on this
party's shares for each batch of the request: the forward, the loss gradient, the backward
and the update, every round peer to peer, the dealer's randomness for the whole request
dealt at once. The request names the *program* (layers, hyperparameters, epochs, batch
size, the seed of its batch schedule) and which of its steps to run: the party computes
the program's fingerprint and each step's rows itself (:func:`schedule`), so the readers
the data owners allowed for that fingerprint
(:func:`~ppdl_nb.workers.core.policy.program_policy`) read the results and nobody
else: a notebook that swaps in another graph, other hyperparameters or more epochs
gets a different fingerprint, which no owner allowed.

The reply's result is this party's shares of the new parameters, then the momentum
buffers, then (with ``open_loss``) of each step's summed loss; ``extra`` gives, per
step, ``[rounds, bytes this party sent, seconds]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb.mpc.train_layers import LAYERS
from ppdl_nb.mpc.train_step import TrainConfig, train_step
from ppdl_nb.tensors.spdz.graph import digest
from ppdl_nb.tensors.spdz.program import counted
from ppdl_nb.tensors.spdz.routines import Party, Routine, drive, routine, sub_label
from ppdl_nb.workers.core.policy import program_policy

__all__ = ["MAX_BATCH", "fingerprint", "schedule", "train"]

MAX_BATCH = 4096
_PROGRAM_KEYS = {"layers", "config", "epochs", "batch_size", "seed", "owner"}
NOTEBOOK = "me"  # the name a worker's channel gives the notebook


def fingerprint(program: dict[str, Any]) -> str:
    """The program's name in allowances: a hash of its layers, hyperparameters, epochs,
    batch size, the seed of its batch schedule and the weights' owner (16 hex digits)."""
    if not isinstance(program, dict) or set(program) != _PROGRAM_KEYS:
        raise ValueError(f"a training program is a dict of {sorted(_PROGRAM_KEYS)}")
    return digest(program)


def _check_program(program: dict[str, Any]) -> TrainConfig:
    cfg = TrainConfig.from_wire(program["config"])
    layers = program["layers"]
    if not isinstance(layers, list) or not layers or any(
            not isinstance(s, dict) or s.get("layer") not in LAYERS for s in layers):
        raise ValueError(f"a program's layers are dicts naming one of {', '.join(LAYERS)}")
    if type(program["seed"]) is not int:
        raise ValueError(f"a program's seed is an int, got {program['seed']!r}")
    for key in ("epochs", "batch_size"):
        v = program[key]
        if type(v) is not int or v < 1:
            raise ValueError(f"a program's {key} is a positive int, got {v!r}")
    if program["batch_size"] > MAX_BATCH:
        raise ValueError(f"batch_size is at most {MAX_BATCH}")
    return cfg


def schedule(program: dict[str, Any], rows: int) -> list[list[int]]:
    """Every step's rows: a fresh permutation of ``rows`` per epoch from the program's
    seed, cut into batches (the last of an epoch may be smaller). Public, and part of
    the program: the parties compute it themselves, so a notebook cannot pick which rows
    a step sees (a batch of one row would show that row in the update)."""
    g = torch.Generator().manual_seed(program["seed"])
    b, out = program["batch_size"], []
    for _ in range(program["epochs"]):
        order = torch.randperm(rows, generator=g).tolist()
        out.extend(order[i:i + b] for i in range(0, rows, b))
    return out


def _steps(program: dict[str, Any], rows: int, step: Any, count: Any) -> list[list[int]]:
    plan = schedule(program, rows)
    if type(step) is not int or type(count) is not int or step < 0 or count < 1 \
            or step + count > len(plan):
        raise ValueError(f"the program has {len(plan)} steps ({program['epochs']} epochs of "
                         f"{rows} rows); steps {step!r} to {step!r} + {count!r} exceed it")
    return plan[step:step + count]


@routine("train")
def train(p: Party, *, label: bytes, program: dict[str, Any], weights: list[Any],
          velocity: list[Any], data: list[Any], step: int, count: int = 1) -> Routine:
    """Run steps ``step`` to ``step + count - 1`` of ``program`` on the rows of ``data``
    (``[x, y]`` references per data owner, concatenated), their batches from the
    program's :func:`schedule`; see the module."""
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
    inputs = [e.policy for e in ws + vs] + [e.policy for pair in ds for e in pair]
    readers = frozenset(program_policy(inputs, fp).readers or ())
    if cfg.open_loss and NOTEBOOK not in readers:
        raise PermissionError(f"open_loss opens each step's loss to the notebook, which "
                              f"not every owner allowed for program {fp}: the owners allow "
                              f"it with allow_programs={{'{fp}': ['{NOTEBOOK}']}}, or train "
                              "without open_loss")
    w, v = [e.obj for e in ws], [e.obj for e in vs]
    losses, stats = [], []
    for k, rows in enumerate(_steps(program, x_all.shape[0], step, count)):
        rows = torch.tensor(rows, dtype=torch.int64)
        protocol = train_step(p.index, program["layers"], w, v, x_all[rows], y_all[rows], cfg,
                              parties=p.session.n)
        res = yield from counted(drive(p, sub_label(label, "s", k), protocol),
                                 p.session.n - 1, stats)
        w, v = res.weights, res.velocity
        if res.loss is not None:
            losses.append(res.loss.reshape(1))
    out = [*w, *v] + ([torch.cat(losses)] if losses else [])
    return out, readers, stats
