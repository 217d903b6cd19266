"""DataLens across data owners: each owner's teachers, the model owner's loop, the ledger.

Why a module of its own: the same two pieces run in one process (a simulation, and the
reference the worker path is tested against) and across workers
(:mod:`ppdl_nb.synth.worker_steps`, driven by :mod:`ppdl_nb.synth.remote`):

* :class:`OwnerTeachers` - what one data owner holds: its own records cut into disjoint
  shards, one teacher discriminator per shard, and the step that turns a generated batch
  into the owner's *noisy* vote sum (its teachers' top-k sign votes plus its part,
  ``N(0, sigma^2 / m)``, of the Gaussian noise); optionally on ``basis=m`` DCT
  coefficients and with closed-form ``teacher="centroid"`` teachers, as in
  :func:`ppdl_nb.synth.datalens.train_datalens`;
* :func:`train_across` - the model owner's loop: sample a batch, get the noisy total of
  every owner's vote sum (from a ``vote`` function: in one process, or from the workers
  through secure aggregation), threshold it, step the generator along it, nothing else;
* :func:`owner_epsilon` / :func:`calibrate_owners` - the accounting every owner runs for
  itself: one Gaussian query per step at the multiplier a curious owner faces,
  ``sigma sqrt((m-1)/m) / (2 sqrt(k))`` (see :mod:`ppdl_nb.synth.owners`).

>>> import torch
>>> x, y = torch.rand(60, 4), torch.arange(60) % 2
>>> res = train_datalens_owners([(x[:30], y[:30]), (x[30:], y[30:])], classes=2,
...                             epsilon=10.0, delta=1e-5, teachers=3, steps=2, batch_size=4,
...                             k_per_sample=2)
>>> len(res.owner_epsilons), res.epsilon <= 10.0 + 1e-6
(2, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ppdl_nb.dp.accounting import Accountant, check_delta, noise_multiplier_for
from ppdl_nb.dp.noise import generator
from ppdl_nb.dp.topagg import TopAgg
from ppdl_nb.synth.datalens import (
    centroid_gradients,
    centroid_teachers,
    check_options,
    generator_step,
    make_shards,
    per_sample_top_k,
    project,
    teacher_gradients,
    teacher_step,
)
from ppdl_nb.synth.models import BasisGenerator, ConditionalGenerator, TeacherBank, dct_basis
from ppdl_nb.synth.owners import owner_noise_std, secure_sum

__all__ = ["AcrossResult", "OwnerTeachers", "calibrate_owners", "owner_epsilon",
           "train_across", "train_datalens_owners"]

Vote = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def owner_epsilon(*, noise_std: float, k: int, owners: int, steps: int, delta: float) -> float:
    """The epsilon one owner charges for ``steps`` queries with total noise ``noise_std``.

    The owner knows its own noise part, so it counts only ``(m-1)/m`` of the variance (the
    view of a curious fellow owner; the notebook faces all of it). Data-independent.

    >>> from ppdl_nb.dp import epsilon
    >>> sigma = owner_noise_std(noise_multiplier=2.0, k=4, owners=2)  # 2 * 2 sqrt(4) sqrt(2)
    >>> mine = owner_epsilon(noise_std=sigma, k=4, owners=2, steps=10, delta=1e-5)
    >>> abs(mine - epsilon(noise_multiplier=2.0, sample_rate=1.0, steps=10, delta=1e-5)) < 1e-6
    True
    """
    if owners < 2:
        raise ValueError(f"DataLens across owners needs >= 2 owners, got {owners}; with one "
                         "owner use ppdl_nb.synth.datalens.train_datalens.")
    if not (math.isfinite(noise_std) and noise_std > 0) or k < 1 or steps < 1:
        raise ValueError(f"need noise_std > 0 (finite), k >= 1 and steps >= 1; got "
                         f"noise_std={noise_std}, k={k}, steps={steps}.")
    z = noise_std * math.sqrt((owners - 1) / owners) / (2 * math.sqrt(k))
    acc = Accountant()
    acc.step(noise_multiplier=z, sample_rate=1.0, steps=steps)
    return acc.epsilon(delta)


def calibrate_owners(*, epsilon: float, delta: float, steps: int, k: int, owners: int
                     ) -> float:
    """The total noise std that makes ``steps`` queries cost each owner ``epsilon``.

    >>> int(calibrate_owners(epsilon=10.0, delta=1e-5, steps=100, k=80, owners=2))
    134
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be positive and finite, got {epsilon}: a release "
                         "across owners is always noised.")
    z = noise_multiplier_for(target_epsilon=epsilon, sample_rate=1.0, steps=steps, delta=delta)
    return owner_noise_std(noise_multiplier=z, k=k, owners=owners)


class OwnerTeachers:
    """One data owner's teachers on disjoint shards of its own ``(x, y)``.

    ``noisy_votes(fake, fake_y)`` trains every teacher on its shard against the batch,
    takes each teacher's gradient on the batch, keeps ``k_per_sample`` coordinates per
    sample as stochastic signs, sums them over the owner's teachers, and adds this
    owner's noise part ``N(0, noise_std^2 / owners)``; one fresh DP generator
    (:func:`ppdl_nb.dp.noise.generator`) per call draws the signs and the noise.

    ``basis=m`` and ``teacher="centroid"`` mean what they mean in
    :func:`ppdl_nb.synth.datalens.train_datalens`: the owner projects each of its records
    onto the ``m`` lowest DCT coefficients (a basis it builds itself) and the batch it
    votes on is ``(batch_size, m)`` coefficients; centroid teachers are fitted in closed
    form on their own shard and not trained further.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, classes: int, teachers: int,
                 batch_size: int, k_per_sample: int, noise_std: float, owners: int,
                 scale: float = 1e-8, hidden: int = 32, lr: float = 1e-3,
                 teacher_steps: int = 1, seed: int = 0, basis: int | None = None,
                 teacher: str = "gan") -> None:
        self.dim = check_options(basis=basis, teacher=teacher, image_dim=x.shape[1])
        self.xs, self.ys = make_shards(project(x, basis), y, teachers=teachers, seed=seed)
        self.classes, self.batch_size, self.teacher = classes, batch_size, teacher
        self.k_per_sample, self.teacher_steps = k_per_sample, teacher_steps
        self.k = min(k_per_sample * batch_size, batch_size * self.dim)
        if teacher == "gan":
            self.bank = TeacherBank(teachers=teachers, dim=self.dim, classes=classes,
                                    hidden=hidden, generator=torch.Generator().manual_seed(seed))
            self.opt = torch.optim.Adam(self.bank.parameters(), lr=lr, betas=(0.5, 0.999))
        else:  # closed form, from its own shard only
            self.mu, self.has = centroid_teachers(self.xs, self.ys, classes=classes)
        self.agg = TopAgg(k=self.k, scale=scale, noise_std=noise_std, threshold=0.0,
                          adjacency="teacher")
        self.part_std = noise_std / math.sqrt(owners)

    def check_batch(self, fake: torch.Tensor, fake_y: torch.Tensor) -> None:
        """ValueError unless ``fake`` is ``(batch_size, dim)`` finite floats with labels in
        range (the teachers train on it: a NaN would ruin them)."""
        shape = (self.batch_size, self.dim)
        if not isinstance(fake, torch.Tensor) or tuple(fake.shape) != shape \
                or not fake.is_floating_point() or not bool(torch.isfinite(fake).all()):
            raise ValueError(f"the generated batch must be a finite float tensor of shape "
                             f"{shape}, as agreed at setup; got "
                             f"{getattr(fake, 'shape', type(fake))}")
        if not isinstance(fake_y, torch.Tensor) or tuple(fake_y.shape) != (self.batch_size,) \
                or fake_y.is_floating_point() or fake_y.numel() and (
                    int(fake_y.min()) < 0 or int(fake_y.max()) >= self.classes):
            raise ValueError(f"the batch's labels must be {self.batch_size} integers in "
                             f"[0, {self.classes})")

    def noisy_votes(self, fake: torch.Tensor, fake_y: torch.Tensor) -> torch.Tensor:
        """This owner's vote sum plus its noise part: ``(batch_size * dim,)``."""
        self.check_batch(fake, fake_y)
        fake, fake_y = fake.detach().to(torch.float32), fake_y.long()
        if self.teacher == "gan":
            for _ in range(self.teacher_steps):
                teacher_step(self.bank, self.opt, self.xs, self.ys, fake, fake_y)
            grads = teacher_gradients(self.bank, fake, fake_y)
        else:
            grads = centroid_gradients(self.mu, self.has, fake, fake_y)
        grads = per_sample_top_k(grads, batch_size=self.batch_size,
                                 k_per_sample=self.k_per_sample)
        gen = generator()
        votes = self.agg.votes(grads, gen)
        return votes + torch.randn(votes.shape, generator=gen, dtype=votes.dtype) * self.part_std


@dataclass
class AcrossResult:
    """A DataLens run across owners: the generator, what each owner charged, the history."""

    generator: ConditionalGenerator
    epsilon: float
    delta: float
    noise_std: float
    owner_epsilons: list[float]
    history: list[dict[str, float]] = field(default_factory=list)


def train_across(  # long: the model owner's loop reads best in one piece
    vote: Vote, *, dim: int, classes: int, steps: int, batch_size: int, threshold: float,
    lr: float = 1e-3, z_dim: int = 32, hidden: int = 256, output: str = "sigmoid",
    seed: int = 0, on_step: Callable[[int, ConditionalGenerator], None] | None = None,
    basis: torch.Tensor | None = None,
) -> tuple[ConditionalGenerator, list[dict[str, float]]]:
    """The model owner's side: ``vote(fake, fake_y)`` returns the owners' noisy vote total
    (``batch_size * dim``); it is thresholded at ``threshold`` and the generator steps
    along the result, the only thing of the owners' data it ever sees.

    With ``basis`` (``(image_dim, dim)``, public) the generator is a
    :class:`~ppdl_nb.synth.models.BasisGenerator`: the owners vote on its ``dim``
    coefficients per sample, and it releases images."""
    torch.manual_seed(seed)  # the generator's initial weights
    if basis is None:
        gen = ConditionalGenerator(dim=dim, classes=classes, z_dim=z_dim, hidden=hidden,
                                   output=output)
        make = gen.sample
    else:
        if basis.shape[1] != dim:
            raise ValueError(f"the basis has {basis.shape[1]} atoms; the votes have {dim}")
        gen = BasisGenerator(basis=basis, classes=classes, z_dim=z_dim, hidden=hidden)
        make = gen.coefficients
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    for step in range(steps):
        fy = torch.randint(0, classes, (batch_size,), generator=g)
        fake = make(fy, generator=g)
        total = vote(fake.detach(), fy)
        direction = torch.sign(total) * (total.abs() >= threshold)
        generator_step(opt, fake, direction.to(fake.dtype))
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            history.append({"step": step, "kept": float(direction.abs().mean())})
        if on_step is not None:
            on_step(step, gen)
    return gen, history


def train_datalens_owners(  # long: setup and loop of the in-process reference
    owners_data: Sequence[tuple[torch.Tensor, torch.Tensor]], *, classes: int,
    epsilon: float, delta: float, teachers: int = 20, steps: int = 100,
    batch_size: int = 16, k_per_sample: int = 5, threshold_sigmas: float = 1.0,
    lr: float = 1e-3, teacher_lr: float = 1e-3, teacher_hidden: int = 32, z_dim: int = 32,
    hidden: int = 256, output: str = "sigmoid", seed: int = 0, basis: int | None = None,
    teacher: str = "gan",
) -> AcrossResult:
    """DataLens across owners in one process: ``teachers`` per owner, owner ``i`` seeded
    ``seed + i``, noisy sums added through :func:`ppdl_nb.synth.owners.secure_sum`.
    ``basis`` and ``teacher`` as in :class:`OwnerTeachers` (and
    :func:`ppdl_nb.synth.datalens.train_datalens`).

    The worker path (:func:`ppdl_nb.synth.remote.train_datalens_on`) computes the same
    thing with each owner on its own worker.
    """
    m = len(owners_data)
    check_delta(delta, min(len(x) for x, _ in owners_data))
    image_dim = owners_data[0][0].shape[1]
    dim = check_options(basis=basis, teacher=teacher, image_dim=image_dim)
    k = min(k_per_sample * batch_size, batch_size * dim)
    noise_std = calibrate_owners(epsilon=epsilon, delta=delta, steps=steps, k=k, owners=m)
    owners = [OwnerTeachers(x, y, classes=classes, teachers=teachers, batch_size=batch_size,
                            k_per_sample=k_per_sample, noise_std=noise_std, owners=m,
                            hidden=teacher_hidden, lr=teacher_lr, seed=seed + i,
                            basis=basis, teacher=teacher)
              for i, (x, y) in enumerate(owners_data)]
    charged = [owner_epsilon(noise_std=noise_std, k=k, owners=m, steps=steps, delta=delta)
               for _ in owners]

    def vote(fake: torch.Tensor, fake_y: torch.Tensor) -> torch.Tensor:
        return secure_sum([o.noisy_votes(fake, fake_y) for o in owners])

    gen, history = train_across(vote, dim=dim, classes=classes, steps=steps,
                                batch_size=batch_size, threshold=threshold_sigmas * noise_std,
                                lr=lr, z_dim=z_dim, hidden=hidden, output=output, seed=seed,
                                basis=None if basis is None else dct_basis(
                                    math.isqrt(image_dim), basis))
    return AcrossResult(gen, max(charged), delta, noise_std, charged, history)
