"""The model owner's side of DataLens across workers: the generator here, teachers there.

:func:`load_parts` has each data owner's worker load its own disjoint part of a known
dataset (with its own ledger); :func:`train_datalens_on` runs the generator in this
process and asks the owners' workers for votes through :mod:`.worker_steps`. Per step
the notebook sends the generated batch to each owner, then adds the owners' partial sums
of shares: all it ever holds of the owners' data is the noisy total, thresholded.

>>> import ppdl_nb
>>> from ppdl_nb.workers.transport.virtual import VirtualNetwork
>>> net = VirtualNetwork()
>>> owners = [ppdl_nb.VirtualWorker(n, network=net) for n in ("clinic_a", "clinic_b")]
>>> [p["rows"] for p in load_parts(owners, "digits", epsilon=50.0, delta=1e-5,
...                                train_rows=400)]
[200, 200]
>>> res = train_datalens_on(owners, dataset="digits", classes=10, epsilon=10.0, delta=1e-5,
...                         teachers=4, steps=2, batch_size=4, k_per_sample=2)
>>> [round(e) for e in res.owner_epsilons], len(res.history)
([10, 10], 2)
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ppdl_nb.mpc.encoding import decode
from ppdl_nb.mpc.sharing import reconstruct
from ppdl_nb.synth import worker_steps as steps_
from ppdl_nb.synth.federated import AcrossResult, train_across
from ppdl_nb.synth.models import ConditionalGenerator, dct_basis

__all__ = ["load_parts", "train_datalens_on"]


def load_parts(workers: Sequence[Any], dataset: str, *, epsilon: float, delta: float,
               train_rows: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Owner ``i`` of ``n`` loads part ``i`` of the first ``train_rows`` shuffled rows of
    ``dataset``, private, with a ledger of ``(epsilon, delta)``; returns each reply."""
    return [steps_.load.on(w, dataset=dataset, part=i, parts=len(workers), epsilon=epsilon,
                           delta=delta, train_rows=train_rows, seed=seed)
            for i, w in enumerate(workers)]


def _setup(workers: Sequence[Any], session: str, setup: dict[str, Any], seed: int
           ) -> list[dict[str, Any]]:
    names = [w.name for w in workers]
    replies = [steps_.setup.on(w, session=session, holders=names, seed=seed + i, **setup)
               for i, w in enumerate(workers)]
    agreed = {(r["dim"], r["image_dim"], r["k"], round(r["noise_std"], 9)) for r in replies}
    if len(agreed) != 1:
        raise ValueError(f"the owners' datasets disagree (dim, image dim, k, noise std): "
                         f"{agreed}; "
                         "every owner must hold the same columns")
    return replies


def train_datalens_on(  # long: setup, the vote function and teardown read best together
    workers: Sequence[Any], *, dataset: str, classes: int, epsilon: float, delta: float,
    steps: int = 100, teachers: int = 20, batch_size: int = 16, k_per_sample: int = 5,
    threshold_sigmas: float = 1.0, lr: float = 1e-3, teacher_lr: float = 1e-3,
    teacher_hidden: int = 32, z_dim: int = 32, hidden: int = 256, output: str = "sigmoid",
    seed: int = 0, on_step: Callable[[int, ConditionalGenerator], None] | None = None,
    basis: int | None = None, teacher: str = "gan",
) -> AcrossResult:
    """DataLens with ``teachers`` teachers on each owner's worker (owner ``i`` seeded
    ``seed + i``), ``steps`` generator steps at ``(epsilon, delta)`` per owner.

    ``basis=m`` (square images) votes on ``m`` low-frequency DCT coefficients: each owner
    builds the public basis itself from ``m``, this process builds the same one for its
    :class:`~ppdl_nb.synth.models.BasisGenerator`; ``teacher="centroid"`` has each owner
    fit closed-form centroid teachers on its shards (see
    :func:`ppdl_nb.synth.datalens.train_datalens`). Each owner charges its own ledger at
    setup; the result's ``owner_epsilons`` are what they charged. Equal, for the same
    seeds and DP noise, to :func:`ppdl_nb.synth.federated.train_datalens_owners` on the
    same parts.
    """
    if len(workers) < 2:
        raise ValueError(f"DataLens across owners needs >= 2 owner workers, got "
                         f"{len(workers)}; with one owner use synth.datalens.train_datalens")
    session = f"datalens-{secrets.token_hex(6)}"
    setup = {"dataset": dataset, "classes": classes, "epsilon": epsilon, "delta": delta,
             "steps": steps, "teachers": teachers, "batch_size": batch_size,
             "k_per_sample": k_per_sample, "teacher_hidden": teacher_hidden,
             "teacher_lr": teacher_lr, "basis": basis, "teacher": teacher}
    replies = _setup(workers, session, setup, seed)
    noise_std, dim = float(replies[0]["noise_std"]), int(replies[0]["dim"])
    proj = None if basis is None else dct_basis(math.isqrt(int(replies[0]["image_dim"])), basis)

    calls = [0]

    def vote(fake: torch.Tensor, fake_y: torch.Tensor) -> torch.Tensor:
        step = calls[0]
        calls[0] += 1
        for w in workers:  # in turn: each owner's vote sends its shares to the others
            steps_.vote.on(w, session=session, step=step, fake=fake, fake_y=fake_y)
        partials = [steps_.partial.on(w, session=session, step=step) for w in workers]
        return decode(reconstruct(partials), steps_.FRAC_BITS).to(fake.dtype)

    try:
        gen, history = train_across(vote, dim=dim, classes=classes, steps=steps,
                                    batch_size=batch_size,
                                    threshold=threshold_sigmas * noise_std, lr=lr,
                                    z_dim=z_dim, hidden=hidden, output=output, seed=seed,
                                    on_step=on_step, basis=proj)
    finally:
        for w in workers:
            steps_.close.on(w, session=session)
    charged = [float(r["epsilon"]) for r in replies]
    return AcrossResult(gen, max(charged), delta, noise_std, charged, history)
