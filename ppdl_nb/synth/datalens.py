"""DataLens (Wang et al., CCS 2021): a generator taught by noisy, compressed teacher votes.

Why: a GAN's generator never needs the private data, only a gradient telling each
generated sample which way to move. DataLens has ``T`` teacher discriminators, each
trained on a *disjoint shard* of the private data; per generator step every teacher
computes the gradient of its generator loss with respect to the ``B`` generated samples
(``B x dim`` values), keeps its top-k coordinates as stochastic signs, and the vote
vectors are summed, noised and thresholded (:class:`ppdl_nb.dp.TopAgg`). Only that
noisy aggregate in ``{-1, 0, +1}^(B x dim)`` reaches the generator.

Privacy (stated, and tested): one record lives in one shard, so it can change one
teacher's vote vector, whose k entries are +-1: L2 sensitivity ``2 sqrt(k)``
(``adjacency="teacher"``; add, remove or replace one record). Each generator step is
one Gaussian mechanism with noise multiplier ``noise_std / (2 sqrt(k))``, composed over
the steps by the data-independent RDP accountant; there is no subsampling credit (every
teacher votes every step). The teachers' own training is post-processing of their
shard and stays with the owner. The paper's data-dependent (PATE-style) bound is *not*
used: a released epsilon here never depends on the data.

This module is the engine in one process: ``shards`` stand for the data owners'
disjoint shards (across data owners, each owner's worker holds its own teachers and sends
its noisy vote sum only as shares: :mod:`ppdl_nb.synth.worker_steps`).
The maths are pure functions over tensors:

* :func:`make_shards` - disjoint equal shards ``(T, s, dim)``;
* :func:`teacher_gradients` - each teacher's ``d loss / d fake`` as ``(T, B * dim)``;
* :func:`generator_step` - the generator's update from the aggregate *only*;
* :func:`train_datalens` - the loop, calibrated to a target ``(epsilon, delta)``.

>>> import torch
>>> x, y = torch.rand(40, 4), torch.arange(40) % 2
>>> res = train_datalens(x, y, classes=2, epsilon=10.0, delta=1e-5, teachers=4, steps=3,
...                      batch_size=8, k_per_sample=2)
>>> res.accountant.steps, res.epsilon <= 10.0
(3, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from ppdl_nb.dp.accounting import Accountant, check_delta, noise_multiplier_for
from ppdl_nb.dp.topagg import TopAgg, top_k_indices
from ppdl_nb.synth.models import BasisGenerator, ConditionalGenerator, TeacherBank, dct_basis

__all__ = ["TEACHERS", "DataLensResult", "centroid_gradients", "centroid_teachers",
           "check_options", "generator_step", "make_shards", "per_sample_top_k", "project",
           "teacher_gradients", "teacher_step", "train_datalens"]


def make_shards(x: torch.Tensor, y: torch.Tensor, *, teachers: int, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint, equal shards: ``(T, s, dim)`` samples and ``(T, s)`` labels.

    ``s = len(x) // teachers``; the remainder (fewer than ``teachers`` records) is left
    out, so no record is in two shards.

    >>> xs, ys = make_shards(torch.zeros(10, 3), torch.zeros(10).long(), teachers=3)
    >>> tuple(xs.shape), tuple(ys.shape)
    ((3, 3, 3), (3, 3))
    """
    if teachers < 1 or len(x) < teachers:
        raise ValueError(f"need at least one record per teacher: {len(x)} records for "
                         f"{teachers} teachers; use fewer teachers.")
    s = len(x) // teachers
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    idx = order[: teachers * s].view(teachers, s)
    return x[idx], y[idx]


def teacher_step(bank: TeacherBank, opt: torch.optim.Optimizer, real: torch.Tensor,
                 real_y: torch.Tensor, fake: torch.Tensor, fake_y: torch.Tensor) -> float:
    """One discriminator step for every teacher on its own shard (``real``: ``(T, s, dim)``)
    against the shared generated batch ``fake`` (``(B, dim)``). Returns the mean loss."""
    t = bank.teachers
    out_real = bank(real, real_y)
    out_fake = bank(fake.detach().expand(t, *fake.shape), fake_y.expand(t, len(fake_y)))
    loss = (F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
            + F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake)))
    opt.zero_grad()
    (loss * t).backward()  # teacher t's parameters get the gradient of its own loss
    opt.step()
    return float(loss.detach())


def teacher_gradients(bank: TeacherBank, fake: torch.Tensor, fake_y: torch.Tensor
                      ) -> torch.Tensor:
    """Each teacher's gradient of its generator loss ``-log D_t(fake)`` with respect to
    the generated samples, flattened: ``(T, B * dim)``. Nothing of the generator is
    needed: the teachers see only the samples."""
    t = bank.teachers
    probe = fake.detach().expand(t, *fake.shape).clone().requires_grad_(True)
    out = bank(probe, fake_y.expand(t, len(fake_y)))
    loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out), reduction="sum")
    (grad,) = torch.autograd.grad(loss, probe)
    return grad.reshape(t, -1)


def centroid_teachers(xs: torch.Tensor, ys: torch.Tensor, *, classes: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid teachers fitted on their shards (``xs``: ``(T, s, dim)``): each teacher's
    class means ``(T, classes, dim)`` and which classes its shard holds ``(T, classes)``.

    A centroid teacher is the fixed-form discriminator ``D_t(x, y) = exp(-|x - mu_ty|^2 / 2)``
    fitted in closed form on shard ``t`` (``mu_ty``: the mean of its records of class
    ``y``); it reads nothing but its own shard, like a trained teacher.

    >>> mu, has = centroid_teachers(torch.tensor([[[1.0], [3.0]]]), torch.tensor([[0, 0]]),
    ...                             classes=2)
    >>> mu.tolist(), has.tolist()
    ([[[2.0], [0.0]]], [[True, False]])
    """
    onehot = F.one_hot(ys, classes).to(xs.dtype)  # (T, s, C)
    count = onehot.sum(1)
    mu = torch.einsum("tsc,tsd->tcd", onehot, xs) / count.clamp_min(1)[..., None]
    return mu, count > 0


def centroid_gradients(mu: torch.Tensor, has: torch.Tensor, fake: torch.Tensor,
                       fake_y: torch.Tensor) -> torch.Tensor:
    """Each centroid teacher's gradient of its generator loss ``-log D_t(fake)``, i.e.
    ``fake - mu_{t, y}``, flattened ``(T, B * dim)``; zero (no opinion) on the samples of a
    class its shard does not hold."""
    g = (fake.detach()[None] - mu[:, fake_y]) * has[:, fake_y][..., None].to(fake.dtype)
    return g.reshape(mu.shape[0], -1)


def per_sample_top_k(grads: torch.Tensor, *, batch_size: int, k_per_sample: int
                     ) -> torch.Tensor:
    """Zero all but each generated sample's ``k_per_sample`` largest entries, per teacher.

    DataLens compresses per sample, so every sample in the batch gets votes. A teacher's
    vote vector still has ``batch_size * k_per_sample`` entries, so TopAgg with that
    ``k`` (and the same sensitivity ``2 sqrt(k)``) then keeps exactly these.

    >>> per_sample_top_k(torch.tensor([[1.0, -3.0, 2.0, 0.5]]), batch_size=2,
    ...                  k_per_sample=1).tolist()
    [[0.0, -3.0, 2.0, 0.0]]
    """
    t = grads.shape[0]
    rows = grads.reshape(t * batch_size, -1)
    idx = top_k_indices(rows, k_per_sample)
    return torch.zeros_like(rows).scatter_(1, idx, rows.gather(1, idx)).reshape(t, -1)


def generator_step(gen_opt: torch.optim.Optimizer, fake: torch.Tensor,
                   direction: torch.Tensor) -> None:
    """Move the generator along the released aggregate, and nothing else.

    ``direction`` (``B * dim``, in {-1, 0, +1}) is the thresholded noisy vote on the
    gradient of the teachers' generator loss; it is back-propagated through ``fake``
    (``fake.backward(direction)``), so the generator's parameters step against it.
    """
    gen_opt.zero_grad()
    fake.backward(direction.view_as(fake).to(fake.dtype))
    gen_opt.step()


@dataclass
class DataLensResult:
    """What training returns: the generator (the release), its ledger and figures."""

    generator: ConditionalGenerator
    accountant: Accountant
    epsilon: float
    delta: float
    noise_multiplier: float
    aggregator: TopAgg
    history: list[dict[str, float]] = field(default_factory=list)


def _calibrate(*, epsilon: float, delta: float, steps: int) -> float:
    if not math.isfinite(epsilon):
        return 0.0
    return noise_multiplier_for(target_epsilon=epsilon, sample_rate=1.0, steps=steps,
                                delta=delta)


#: the teacher models DataLens can use (see :func:`train_datalens`)
TEACHERS = ("gan", "centroid")


def check_options(*, basis: int | None, teacher: str, image_dim: int) -> int:
    """ValueError unless ``teacher`` is one of :data:`TEACHERS` and ``basis`` is None or an
    integer in ``[1, image_dim]`` for square images of ``image_dim`` values; returns the
    dimension the votes live in (``basis``, or ``image_dim`` without one).

    >>> check_options(basis=16, teacher="centroid", image_dim=64)
    16
    >>> check_options(basis=None, teacher="gan", image_dim=13)
    13
    """
    if not isinstance(teacher, str) or teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {teacher!r}")
    if basis is None:
        return image_dim
    side = math.isqrt(image_dim)
    if isinstance(basis, bool) or not isinstance(basis, int) or not 1 <= basis <= image_dim:
        raise ValueError(f"basis must be None (vote on the {image_dim} values) or an integer "
                         f"number of DCT coefficients in [1, {image_dim}], got {basis!r}")
    if side * side != image_dim:
        raise ValueError(f"basis= needs square images; got {image_dim} values a sample")
    return basis


def project(x: torch.Tensor, basis: int | None) -> torch.Tensor:
    """Each record's own ``basis`` lowest DCT coefficients (``x`` itself if None): the basis
    is public and built here from ``basis`` and the image side, so projecting is
    post-processing of each record alone."""
    if basis is None:
        return x
    return x @ dct_basis(math.isqrt(x.shape[1]), basis)


def train_datalens(  # long: the training loop reads best in one piece
    x: torch.Tensor, y: torch.Tensor, *, classes: int, epsilon: float, delta: float,
    teachers: int = 100, steps: int = 500, batch_size: int = 32, k_per_sample: int = 100,
    threshold_sigmas: float = 1.0, teacher_steps: int = 1, lr: float = 1e-3,
    teacher_lr: float = 1e-3, z_dim: int = 32, hidden: int = 256, teacher_hidden: int = 32,
    output: str = "sigmoid", per_sample: bool = True, seed: int = 0,
    basis: int | None = None, teacher: str = "gan",
) -> DataLensResult:
    """Train a conditional generator with DataLens at ``(epsilon, delta)``.

    ``k = k_per_sample * batch_size`` coordinates of each teacher's ``batch x dim``
    gradient are kept: the top ``k_per_sample`` of each sample (``per_sample=True``,
    as DataLens does) or the top ``k`` of the whole flattened gradient; the noise std is
    ``z * 2 sqrt(k)``, with ``z`` the noise multiplier that makes ``steps`` Gaussian
    queries spend ``epsilon`` at ``delta``; the threshold is ``threshold_sigmas`` noise
    stds. ``epsilon=float("inf")`` trains the same pipeline without noise (a diagnostic,
    not a release).

    ``basis=m`` (square images only) votes on the ``m`` lowest-frequency coefficients of
    the fixed 2-D DCT (:func:`ppdl_nb.synth.models.dct_basis`, public, data-independent)
    instead of on pixels: each record is projected onto it, the teachers and the votes
    live in ``R^m`` per sample, and the generator (a
    :class:`~ppdl_nb.synth.models.BasisGenerator`) outputs coefficients, released as
    images ``clamp(basis @ c, 0, 1)``. ``teacher="gan"`` trains ``T`` discriminators
    (:class:`~ppdl_nb.synth.models.TeacherBank`) against the generator;
    ``teacher="centroid"`` uses closed-form centroid teachers
    (:func:`centroid_teachers`): the generator then learns class means, not an adversarial
    game. Neither changes the accounting: each teacher's vote vector still has ``k``
    entries of +-1 and depends on its own shard only.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}.")
    check_options(basis=basis, teacher=teacher, image_dim=x.shape[1])
    check_delta(delta, len(x))
    torch.manual_seed(seed)
    proj = None if basis is None else dct_basis(math.isqrt(x.shape[1]), basis)
    x = project(x, basis)  # each record's own coefficients: per-record post-processing
    xs, ys = make_shards(x, y, teachers=teachers, seed=seed)
    dim = x.shape[1]
    k = min(k_per_sample * batch_size, batch_size * dim)
    z = _calibrate(epsilon=epsilon, delta=delta, steps=steps)
    sens = 2 * math.sqrt(k)
    acc = Accountant()
    noise_std = max(z * sens, 1e-12)
    agg = TopAgg(k=k, scale=1e-8, noise_std=noise_std, threshold=threshold_sigmas * z * sens,
                 adjacency="teacher", accountant=acc if z > 0 else None)
    if proj is None:
        gen = ConditionalGenerator(dim=dim, classes=classes, z_dim=z_dim, hidden=hidden,
                                   output=output)
        make = gen.sample
    else:
        gen = BasisGenerator(basis=proj, classes=classes, z_dim=z_dim, hidden=hidden)
        make = gen.coefficients
    g_opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    if teacher == "gan":
        bank = TeacherBank(teachers=teachers, dim=dim, classes=classes, hidden=teacher_hidden)
        t_opt = torch.optim.Adam(bank.parameters(), lr=teacher_lr, betas=(0.5, 0.999))
    else:
        mu, has = centroid_teachers(xs, ys, classes=classes)
    history: list[dict[str, float]] = []
    for step in range(steps):
        fy = torch.randint(0, classes, (batch_size,))
        fake = make(fy)
        d_loss = 0.0
        if teacher == "gan":
            for _ in range(teacher_steps):
                d_loss = teacher_step(bank, t_opt, xs, ys, fake, fy)
            grads = teacher_gradients(bank, fake, fy)
        else:
            grads = centroid_gradients(mu, has, fake, fy)
        if per_sample:
            grads = per_sample_top_k(grads, batch_size=batch_size, k_per_sample=k_per_sample)
        direction = agg(grads)  # the only thing that reaches the generator
        generator_step(g_opt, fake, direction)
        if step % max(1, steps // 10) == 0:
            history.append({"step": step, "teacher_loss": d_loss,
                            "kept": float(direction.abs().mean())})
    spent = acc.epsilon(delta) if z > 0 else math.inf
    return DataLensResult(gen, acc, spent, delta, z, agg, history)
