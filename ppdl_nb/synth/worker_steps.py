"""DataLens on the data owners' workers: teachers where the data is, votes summed in shares.

Each data owner's worker holds its own records (a dataset with a privacy ledger, as
:mod:`ppdl_nb.dp.worker_steps` keeps them) and, per DataLens session, its teachers
(:class:`ppdl_nb.synth.federated.OwnerTeachers`: disjoint shards of its own records, one
discriminator each). The notebook, as the model owner, runs the generator:

1. ``synth.setup`` (each owner): build the teachers, calibrate the noise to the target
   epsilon for the agreed number of queries, and **charge the owner's ledger** for all of
   them before anything is answered; a session answers at most that many votes;
2. per generator step, ``synth.vote`` (each owner, in turn): train the teachers on their
   shards against the generated batch the notebook sent, sum their top-k sign votes, add
   this owner's part ``N(0, sigma^2/m)`` of the noise, and split the noisy sum into
   additive shares over Z_2^64, one per owner, sent straight to the other owners
   (``synth.take_share``) over the worker-to-worker channels; nothing comes back but a
   byte count;
3. ``synth.partial`` (each owner): the sum of the shares it holds for that step, uniformly
   random on its own; the notebook adds the partial sums and decodes the noisy total, the
   only thing it learns, and thresholds it.

Release rows (``ppdl_nb.workers.core.policy``): a vote leaves an owner only as shares of a
sum over every owner of the session (``secure_aggregation``, >= 2 parties) whose opening
is a Gaussian mechanism already charged to every owner's ledger (``dp``, charged at
setup). Only the notebook that set a session up may ask it for votes and partial sums;
shares are taken only from the session's owners, one per owner and step.

>>> from ppdl_nb.workers.core.messages import STEPS
>>> sorted(s for s in STEPS if s.startswith("synth."))  # doctest: +NORMALIZE_WHITESPACE
['synth.close', 'synth.load', 'synth.partial', 'synth.setup', 'synth.take_share',
 'synth.vote']
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb import datasets
from ppdl_nb.dp.worker_steps import attach_dataset, budget_of
from ppdl_nb.mpc.encoding import encode
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.ring import check_ring
from ppdl_nb.mpc.sharing import share
from ppdl_nb.synth.datalens import check_options
from ppdl_nb.synth.federated import OwnerTeachers, calibrate_owners, owner_epsilon
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.state import state_dir
from ppdl_nb.workers.core.worker import Worker

__all__ = ["FRAC_BITS"]

#: fixed-point bits of the shared vote sums (the in-process secure_sum uses the same)
FRAC_BITS = 16


def _sessions(worker: Worker) -> dict[str, dict[str, Any]]:
    return worker.state.setdefault("synth", {})


def _session(worker: Worker, session: str) -> dict[str, Any]:
    try:
        return _sessions(worker)[session]
    except KeyError:
        raise KeyError(f"{worker.name} has no DataLens session {session!r}; run synth.setup "
                       "first (the worker may have restarted)") from None


def _by_starter(worker: Worker, state: dict[str, Any], caller: str, what: str) -> None:
    if caller != state["by"]:
        raise PermissionError(f"{caller} may not ask {what} of DataLens session on "
                              f"{worker.name}: only {state['by']}, who set it up, may")


def _rows(worker: Worker, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's rows through the resolver, so the request carries their policy."""
    ids = worker.state.get("dp", {}).get("data", {}).get(dataset)  # dp.worker_steps' layout
    if ids is None:
        raise KeyError(f"{worker.name} holds no dataset {dataset!r}; load it first "
                       "(synth.load, dp.load, or attach_dataset on the worker)")
    return (worker.resolve(ids["x"], "x", kind=torch.Tensor),
            worker.resolve(ids["y"], "y", kind=torch.Tensor))


@protocol_step("synth.load")
def load(worker: Worker, caller: str, *, dataset: str, part: int, parts: int,
         epsilon: float, delta: float, train_rows: int | None = None, seed: int = 0
         ) -> dict[str, Any]:
    """The worker loads a known dataset and keeps, private, only part ``part`` of ``parts``.

    Every owner computes the same shuffle from the public ``seed``; the first
    ``train_rows`` rows (all if None) are split into ``parts`` disjoint parts, so owners
    hold disjoint records. The ledger is the dataset's own (``dp.load``'s): if it exists,
    its totals and spending stand.
    """
    if not (isinstance(parts, int) and isinstance(part, int) and 0 <= part < parts):
        raise ValueError(f"part must be in [0, parts), got part={part}, parts={parts}")
    data = datasets.load_named(dataset)
    order = torch.randperm(len(data.y), generator=torch.Generator().manual_seed(int(seed)))
    if train_rows is not None:
        order = order[:train_rows]
    mine = order[part::parts]
    path = state_dir(worker) / f"budget-{dataset}.json"
    if path.exists():  # a ledger is never reset nor raised by a caller
        import json

        doc = json.loads(path.read_text())
        epsilon, delta = float(doc["total_epsilon"]), float(doc["total_delta"])
    return attach_dataset(worker, dataset, data.x[mine].float(), data.y[mine], epsilon=epsilon,
                          delta=delta)


@protocol_step("synth.setup")
def setup(worker: Worker, caller: str, *, session: str, dataset: str, holders: list,
          classes: int, epsilon: float, delta: float, steps: int, teachers: int = 20,
          batch_size: int = 16, k_per_sample: int = 5, scale: float = 1e-8,
          teacher_hidden: int = 32, teacher_lr: float = 1e-3, teacher_steps: int = 1,
          seed: int = 0, basis: int | None = None, teacher: str = "gan") -> dict[str, Any]:
    """Teachers on disjoint shards of ``dataset``; the whole session charged up front.

    The owner calibrates the total noise std for ``steps`` queries at ``(epsilon, delta)``
    against a curious fellow owner and charges its ledger what that costs; a session then
    answers at most ``steps`` votes. ``holders``: the session's owners (this one
    included), who hold the shares of every vote sum. ``basis=m``: the owner builds the
    public ``m``-coefficient DCT basis itself (from ``m`` and its images' side), projects
    its records onto it and votes on coefficients; ``teacher``: ``"gan"`` (trained
    discriminators) or ``"centroid"`` (closed form, on its own shard), see
    :class:`~ppdl_nb.synth.federated.OwnerTeachers`. The reply's ``dim`` is the votes'
    dimension per sample, ``image_dim`` the records'.
    """
    sessions = _sessions(worker)
    if not isinstance(session, str) or not session or session in sessions:
        raise ValueError(f"session must be a new, non-empty name; {session!r} is taken or "
                         "empty on " + worker.name)
    names = [str(h) for h in holders]
    if len(set(names)) != len(names) or len(names) < 2 or worker.name not in names:
        raise ValueError(f"holders must be >= 2 distinct owners including {worker.name}, "
                         f"got {holders}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps}")
    x, y = _rows(worker, dataset)
    if x.dim() != 2 or not 0 <= int(y.min()) <= int(y.max()) < classes:
        raise ValueError(f"{dataset} must be (rows, features) with labels in [0, {classes})")
    dim = check_options(basis=basis, teacher=teacher, image_dim=x.shape[1])
    k = min(k_per_sample * batch_size, batch_size * dim)
    noise_std = calibrate_owners(epsilon=epsilon, delta=delta, steps=steps, k=k,
                                 owners=len(names))
    owner = OwnerTeachers(x.float(), y.long(), classes=classes, teachers=teachers,
                          batch_size=batch_size, k_per_sample=k_per_sample,
                          noise_std=noise_std, owners=len(names), scale=scale,
                          hidden=teacher_hidden, lr=teacher_lr, teacher_steps=teacher_steps,
                          seed=seed, basis=basis, teacher=teacher)
    cost = owner_epsilon(noise_std=noise_std, k=k, owners=len(names), steps=steps, delta=delta)
    budget = budget_of(worker, dataset)
    on = "pixels" if basis is None else f"{basis} DCT coefficients"
    budget.charge(cost, delta, f"DataLens votes: {steps} queries, k {k}, {teachers} {teacher} "
                  f"teachers on {on}, noise_std {noise_std:.4g} ({caller})")
    sessions[session] = {"owner": owner, "holders": names, "left": steps, "by": caller,
                         "dataset": dataset, "shares": {}}
    return {"dim": dim, "image_dim": int(x.shape[1]), "basis": basis, "teacher": teacher,
            "k": k, "noise_std": noise_std, "teachers": teachers,
            "epsilon": cost, "delta": delta, "remaining_epsilon": budget.remaining_epsilon}


@protocol_step("synth.vote")
def vote(worker: Worker, caller: str, *, session: str, step: int, fake: torch.Tensor,
         fake_y: torch.Tensor) -> int:
    """This owner's noisy vote sum on the batch, sent only as shares to the session's
    owners. Returns the bytes sent to the other owners."""
    state = _session(worker, session)
    _by_starter(worker, state, caller, "votes")
    owner: OwnerTeachers = state["owner"]
    owner.check_batch(fake, fake_y)
    if state["left"] < 1:
        raise PermissionError(f"DataLens session {session!r} on {worker.name} has answered "
                              "every vote its owner charged for; set up a new session (it "
                              "is charged again)")
    _rows(worker, state["dataset"])  # the teachers learnt from these: their policy applies
    state["left"] -= 1
    noisy = owner.noisy_votes(fake, fake_y)
    holders = state["holders"]
    # rows 'dp' (the opened total is a Gaussian mechanism, charged at setup) and
    # 'secure_aggregation' (the noisy sum leaves only as shares of a sum over the owners)
    worker.declare_release("dp", charged=True)
    worker.declare_release("secure_aggregation", parties=len(holders))
    pieces = share(encode(noisy, FRAC_BITS), len(holders), PRG())
    sent = 0
    for holder, piece in zip(holders, pieces, strict=True):
        if holder == worker.name:
            _keep_share(worker, state, session, int(step), worker.name, piece)
        else:
            take_share.on(worker.client_for(holder), session=session, step=int(step),
                          share=piece)
            sent += 8 * piece.numel()
    return sent


def _keep_share(worker: Worker, state: dict[str, Any], session: str, step: int,
                sender: str, piece: torch.Tensor) -> None:
    if sender not in state["holders"]:
        raise PermissionError(f"{sender} is not an owner of DataLens session {session!r} on "
                              f"{worker.name}; it cannot send shares to it")
    check_ring(piece, "share")
    size = state["owner"].batch_size * state["owner"].dim
    if piece.dim() != 1 or piece.numel() != size:
        raise ValueError(f"a vote share has {size} entries, got shape {tuple(piece.shape)}")
    got = state["shares"].setdefault(step, {})
    if sender in got:
        raise ValueError(f"{sender} already sent its share for step {step} of {session!r}")
    got[sender] = piece


@protocol_step("synth.take_share")
def take_share(worker: Worker, caller: str, *, session: str, step: int,
               share: torch.Tensor) -> None:
    """OWNER: keep the share of a vote sum that ``caller``, a fellow owner, sent."""
    _keep_share(worker, _session(worker, session), session, int(step), caller, share)


@protocol_step("synth.partial")
def partial(worker: Worker, caller: str, *, session: str, step: int) -> torch.Tensor:
    """The sum of the shares this owner holds for ``step``, one from every owner: uniformly
    random on its own; the notebook adds every owner's partial sum to open the total."""
    state = _session(worker, session)
    _by_starter(worker, state, caller, "partial sums")
    got = state["shares"].get(int(step), {})
    missing = [h for h in state["holders"] if h not in got]
    if missing:
        raise RuntimeError(f"{worker.name} holds no share from {missing} for step {step} of "
                           f"{session!r}: every owner must vote before a sum is opened")
    del state["shares"][int(step)]
    worker.declare_release("secure_aggregation", parties=len(state["holders"]))
    return sum(got[h] for h in state["holders"])


@protocol_step("synth.close")
def close(worker: Worker, caller: str, *, session: str) -> dict[str, Any]:
    """Forget a session's teachers and shares; returns the votes it had left."""
    state = _session(worker, session)
    _by_starter(worker, state, caller, "to close")
    del _sessions(worker)[session]
    return {"unused_votes": state["left"]}
