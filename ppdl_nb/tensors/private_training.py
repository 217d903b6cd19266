"""Encrypted training: SGD on a private model's shared weights, over shared data.

A model owner shares its model (:func:`~ppdl_nb.tensors.private_model.encrypt`); data
owners share their inputs and one-hot labels among the same parties; the parties train
on shares, each step a program they run peer to peer (:mod:`.spdz.training`): one request
to each party and one to the dealer per step, never one per op. Nobody sees a gradient,
an activation or a weight, and the model owner cannot tell whose data changed what.

The trained model is a function of every owner's data and is *not* differentially
private: it opens only to readers every data owner allowed for this training program,
named by its :attr:`EncryptedTraining.fingerprint` (graph, hyperparameters, epochs,
batch size, the weights' owner): ``send(x, alice, private=True,
allow_programs={training.fingerprint: ["me"]})``. A notebook that changes any of
those gets another fingerprint, which nobody allowed.

>>> import torch, ppdl_nb
>>> from ppdl_nb.workers.transport.virtual import VirtualNetwork
>>> net = VirtualNetwork()
>>> alice, p1, p2, dealer = (ppdl_nb.VirtualWorker(n, network=net)
...                          for n in ("alice", "p1", "p2", "dealer"))
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
>>> pm = ppdl_nb.encrypt(model, parties=(p1, p2), dealer=dealer, frac_bits=20)
>>> training = pm.training(lr=0.5, epochs=2, batch_size=4)
>>> x = ppdl_nb.send(torch.randn(8, 2), alice, private=True,
...                  allow_programs={training.fingerprint: ["me"]})
>>> y = ppdl_nb.send(torch.eye(2)[torch.arange(8) % 2], alice, private=True,
...                  allow_programs={training.fingerprint: ["me"]})
>>> share = lambda t: ppdl_nb.share(t, p1, p2, dealer=dealer, frac_bits=20)
>>> history = training.fit([(share(x), share(y))])
>>> len(history.steps), type(pm.get()[0]).__name__
(4, 'Linear')
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ppdl_nb.mpc import simulate
from ppdl_nb.mpc.train_step import TrainConfig, train_step
from ppdl_nb.tensors.fixed import FixedPrecisionTensor
from ppdl_nb.tensors.pointer import wrap_reply
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.tensors.spdz.graph import layer_specs
from ppdl_nb.tensors.spdz.routines import sub_label
from ppdl_nb.tensors.spdz.training import fingerprint, schedule
from ppdl_nb.workers.core.codec import Ref

__all__ = ["EncryptedTraining", "TrainingHistory", "fingerprint_of", "layer_specs",
           "training_program"]

def training_program(layers: Sequence[nn.Module], *, owner: str, frac_bits: int, lr: float,
                     momentum: float = 0.0, weight_decay: float = 0.0, epochs: int = 1,
                     batch_size: int = 64, loss: str = "cross_entropy",
                     open_loss: bool = False, max_grad_norm: float | None = None,
                     noise_multiplier: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """The program the parties run (what the fingerprint hashes), checked."""
    config = TrainConfig(lr=lr, momentum=momentum, weight_decay=weight_decay, loss=loss,
                         frac_bits=frac_bits, open_loss=open_loss,
                         max_grad_norm=max_grad_norm, noise_multiplier=noise_multiplier)
    if type(epochs) is not int or epochs < 1 or type(batch_size) is not int \
            or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive ints, got {epochs!r} "
                         f"and {batch_size!r}")
    if type(seed) is not int:
        raise ValueError(f"seed must be an int, got {seed!r}")
    return {"layers": layer_specs(layers), "config": config.to_wire(), "epochs": epochs,
            "batch_size": batch_size, "seed": seed, "owner": owner}


def fingerprint_of(model: nn.Module, *, owner: str = "me", frac_bits: int = 20,
                   **options: Any) -> str:
    """The fingerprint of training ``model`` with ``options`` (those of
    :class:`EncryptedTraining`), before anything is shared: what data owners allow
    readers for. ``owner``: the name of the worker that will share the weights (the
    notebook, ``"me"``, by default).

    >>> m = nn.Sequential(nn.Linear(4, 2))
    >>> fingerprint_of(m, lr=0.1) == fingerprint_of(m, lr=0.1) != fingerprint_of(m, lr=0.2)
    True
    """
    from ppdl_nb.tensors.private_model import fold_layers

    return fingerprint(training_program(list(fold_layers(model)), owner=owner,
                                        frac_bits=frac_bits, **options))


@dataclass
class TrainingHistory:
    """Per step: ``rounds``, ``bytes`` (the openings every party sent), ``seconds`` (the
    parties'), ``wall`` (the notebook's) and ``loss`` (None unless ``open_loss``)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def column(self, key: str) -> list[Any]:
        return [s[key] for s in self.steps]


class EncryptedTraining:
    """SGD (PyTorch's, with momentum and weight decay) of ``model``'s shared weights.

    Privacy-relevant settings are keyword-only and part of the :attr:`fingerprint`:
    ``open_loss=True`` opens each step's mean loss to the notebook (a little about the
    data leaks with it; off by default); ``max_grad_norm`` and ``noise_multiplier`` make
    it DP-SGD inside the shares (:mod:`ppdl_nb.mpc.train_dp`; its epsilon:
    :func:`ppdl_nb.dp.accounting.encrypted_training_epsilon`).
    """

    def __init__(self, model: Any, *, lr: float, steps_per_request: int = 1,
                 **options: Any) -> None:
        if type(steps_per_request) is not int or steps_per_request < 1:
            raise ValueError(f"steps_per_request must be a positive int, got "
                             f"{steps_per_request!r}")
        frac_bits = next((ws[0].frac_bits for ws in model.weights if ws), 20)
        owner = model.owner.name if model.owner is not None else "me"
        self.program = training_program(model.layers, owner=owner, frac_bits=frac_bits,
                                        lr=lr, **options)
        self.config = TrainConfig.from_wire(self.program["config"])
        self.model, self.steps_per_request = model, steps_per_request
        self.velocity: list[FixedPrecisionTensor] = []
        self._plans: dict[tuple, list[tuple[str, dict[str, Any]]]] = {}

    @property
    def fingerprint(self) -> str:
        """The program's name: what data owners allow readers for (see the module)."""
        return fingerprint(self.program)

    def __repr__(self) -> str:
        c = self.config
        return (f"EncryptedTraining({self.model!r}; lr={c.lr}, momentum={c.momentum}, "
                f"weight_decay={c.weight_decay}, epochs={self.program['epochs']}, "
                f"batch_size={self.program['batch_size']}, loss={c.loss}, "
                f"open_loss={c.open_loss}; fingerprint {self.fingerprint})")

    # ---- the schedule and the dealer's plan ----------------------------------------------
    def batches(self, rows: int) -> list[list[int]]:
        """Every step's rows, as the parties compute them (:func:`~.spdz.training.schedule`:
        a fresh permutation per epoch from the seed; public, part of the program)."""
        return schedule(self.program, rows)

    def _plan(self, x_shape: list[int], y_shape: list[int]) -> list[tuple[str, dict]]:
        key = (tuple(x_shape), tuple(y_shape))
        if key not in self._plans:
            zeros = [torch.zeros(w.shape, dtype=torch.int64) for ws in self.model.weights
                     for w in ws]
            self._plans[key] = simulate.plan(train_step(
                0, self.program["layers"], zeros, [], torch.zeros(x_shape, dtype=torch.int64),
                torch.zeros(y_shape, dtype=torch.int64), self.config))
        return self._plans[key]

    # ---- training ------------------------------------------------------------------------
    def fit(self, data: Sequence[tuple[FixedPrecisionTensor, FixedPrecisionTensor]], *,
            callback: Callable[[dict[str, Any]], None] | None = None) -> TrainingHistory:
        """Train on ``data``: ``(x, y)`` pairs of shared tensors, one per data owner (``y``
        one-hot for cross-entropy). ``callback(step)`` after each request. Ctrl-C stops
        after the step the parties are running (they all finish it): the model stays
        shared, as trained so far."""
        pairs = self._check_data(data)
        session = pairs[0][0].child.session
        plan = self.batches(sum(x.shape[0] for x, _ in pairs))
        history, step = TrainingHistory(), 0
        shapes = (list(pairs[0][0].shape[1:]), list(pairs[0][1].shape[1:]))
        self.model.trained_by = self.fingerprint
        while step < len(plan) and not history.interrupted:
            chunk = plan[step:step + self.steps_per_request]
            start = time.perf_counter()
            try:
                entries = _uninterrupted(functools.partial(
                    self._steps, session, pairs, step, chunk, shapes))
            except KeyboardInterrupt as stop:
                history.interrupted = True
                entries = stop.args[0] if stop.args else []
            wall = time.perf_counter() - start
            for entry in entries:
                entry.update(of=len(plan), wall=wall / len(chunk))
            history.steps.extend(entries)
            step += len(entries)
            if callback is not None and entries:
                callback(history.steps[-1])
        return history

    def _steps(self, session: Any, pairs: list, step: int, chunk: list[list[int]],
               shapes: tuple[list[int], list[int]]) -> list[dict[str, Any]]:
        """One request (``chunk``'s steps), its new shares taken: the steps' figures."""
        replies = self._request(session, pairs, step, chunk, *shapes)
        self._take(session, replies)
        entries = [{"step": step + k + 1, "rounds": int(rounds),
                    "bytes": int(sent) * session.n, "seconds": float(seconds), "loss": None}
                   for k, (rounds, sent, seconds) in enumerate(replies[0].get("extra") or [])]
        if self.config.open_loss:
            self._open_losses(entries, chunk)
        return entries

    def _check_data(self, data: Any) -> list[tuple[FixedPrecisionTensor, FixedPrecisionTensor]]:
        if not isinstance(data, list | tuple) or not data:
            raise TypeError("fit takes a list of (x, y) pairs of shared tensors, one per "
                            "data owner")
        f, names = self.config.frac_bits, [p.name for p in self.model.parties]
        pairs = []
        for pair in data:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError("each data owner's data is an (x, y) pair")
            for t in pair:
                if not (isinstance(t, FixedPrecisionTensor) and t.shared):
                    raise TypeError(f"encrypted training takes shared tensors "
                                    f"(ppdl_nb.share(..., frac_bits={f})), not "
                                    f"{type(t).__name__}")
                if t.frac_bits != f:
                    raise ValueError(f"the model has {f} fractional bits, the data "
                                     f"{t.frac_bits}: share both with frac_bits={f}")
                if [p.name for p in t.child.session.parties] != names:
                    raise ValueError(f"share the data among the model's parties {names}")
            if self.config.loss == "cross_entropy" and pair[1].dim() != 2:
                raise ValueError("cross-entropy takes one-hot targets of shape (rows, "
                                 "classes): torch.nn.functional.one_hot(labels, C) before "
                                 "sharing")
            pairs.append((pair[0], pair[1]))
        return pairs

    def _request(self, session: Any, pairs: list, step: int, chunk: list[list[int]],
                 feature: list[int], target: list[int]) -> list[dict[str, Any]]:
        label, deal = session.label(), []
        for k, rows in enumerate(chunk):
            plan = self._plan([len(rows), *feature], [len(rows), *target])
            base = sub_label(label, "s", k)
            deal.extend((sub_label(base, "d", j), kind, params)
                        for j, (kind, params) in enumerate(plan))
        weights = [w for ws in self.model.weights for w in ws]

        def args(i: int) -> dict[str, Any]:
            ref = lambda t: Ref(t.child.shares[i].id_at_location)  # noqa: E731
            return {"label": label, "program": self.program, "step": step,
                    "count": len(chunk),
                    "weights": [ref(w) for w in weights],
                    "velocity": [ref(v) for v in self.velocity],
                    "data": [[ref(x), ref(y)] for x, y in pairs]}

        return session.run("train", args, deal, name=f"encrypted training step {step + 1}")

    def _take(self, session: Any, replies: list[dict[str, Any]]) -> None:
        """The new shares: parameters, momentum buffers, losses."""
        parts = [wrap_reply(p, r["result"], p.context)
                 for p, r in zip(session.parties, replies, strict=True)]
        f, at = self.config.frac_bits, 0
        shared = [FixedPrecisionTensor(SharedTensor([p[k] for p in parts], session), f)
                  for k in range(len(parts[0]))]
        for ws in self.model.weights:
            ws[:] = shared[at:at + len(ws)]
            at += len(ws)
        n = at
        self.velocity = shared[n:2 * n] if self.config.momentum else []
        self._losses = shared[-1] if self.config.open_loss else None

    def _open_losses(self, entries: list[dict[str, Any]], chunk: list[list[int]]) -> None:
        sums = self._losses.get()
        for entry, total, rows in zip(entries, sums.reshape(-1).tolist(), chunk, strict=True):
            entry["loss"] = total / len(rows)


def _uninterrupted(fn: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``fn()`` on a thread; a Ctrl-C while it runs waits for it to finish (every party
    completes the step it is in, and its new shares are taken) and is raised again with
    its result as the argument."""
    out: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 (handed to the caller)
            out["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name="ppdl-nb-encrypted-step", daemon=True)
    interrupted, started = False, False
    while True:  # an interrupted join() may return at once on the next call: wait on done
        try:
            if not started:
                started = True
                thread.start()
            done.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
    if "error" in out:
        raise out["error"]
    if interrupted:
        raise KeyboardInterrupt(out["value"])
    return out["value"]
