"""The networks every synthetic-data method here shares: a conditional generator, a bank
of teacher discriminators, and the classifier that scores synthetic data.

Why one module: the benchmark compares *training methods* (DataLens, DP-MERF, a DP-SGD
GAN, no privacy) on the same generator, so a difference in accuracy is a difference in
how the generator was trained, not in its size.

* :class:`ConditionalGenerator` - ``G(z, y)``: noise and a class label in, a sample out
  (in ``[0, 1]`` for images, unbounded for standardised tables), so synthetic samples
  carry their labels.
* :class:`TeacherBank` - ``T`` small conditional discriminators held as one batched set
  of weights (``(T, in, hidden)``), so that ``T`` teachers cost a few batched matrix
  products instead of ``T`` modules. Teacher ``t`` only ever sees shard ``t``.
* :func:`fit_classifier` / :func:`accuracy` - the utility yardstick: train on (synthetic)
  labelled samples, test on real held-out ones.

>>> import torch
>>> g = ConditionalGenerator(dim=4, classes=3, z_dim=2, hidden=8)
>>> g.sample(torch.tensor([0, 2])).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BasisGenerator", "ConditionalGenerator", "TeacherBank", "accuracy", "dct_basis",
           "fit_classifier", "mlp_classifier"]


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: an MLP from ``[z, onehot(y)]`` to a sample of ``dim`` values.

    ``output="sigmoid"`` for pixels in [0, 1]; ``"linear"`` for standardised columns.
    """

    def __init__(self, *, dim: int, classes: int, z_dim: int = 32, hidden: int = 256,
                 output: str = "sigmoid") -> None:
        super().__init__()
        if output not in ("sigmoid", "linear"):
            raise ValueError(f"output must be 'sigmoid' or 'linear', got {output!r}.")
        self.dim, self.classes, self.z_dim, self.output = dim, classes, z_dim, output
        # Batch norm keeps a small MLP GAN from collapsing onto one blob (measured: the
        # same network without it produced one image per run). It sees only generated
        # batches, never private data; releases use its running statistics (eval mode).
        self.net = nn.Sequential(
            nn.Linear(z_dim + classes, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.LeakyReLU(0.2),
            nn.Linear(2 * hidden, dim),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([z, F.one_hot(y, self.classes).to(z.dtype)], 1))
        return torch.sigmoid(h) if self.output == "sigmoid" else h

    def sample(self, y: torch.Tensor, *, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Samples for the labels ``y`` (gradients flow; wrap in ``no_grad`` to release)."""
        z = torch.randn(len(y), self.z_dim, generator=generator)
        return self(z, y)

    @torch.no_grad()
    def release(self, n: int, *, class_weights: torch.Tensor | None = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labelled samples: labels drawn from ``class_weights`` (uniform if None)."""
        was_training = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        w = torch.ones(self.classes) if class_weights is None else class_weights.clamp_min(0)
        if float(w.sum()) <= 0:
            w = torch.ones(self.classes)
        y = torch.multinomial(w / w.sum(), n, replacement=True, generator=g)
        x = self.sample(y, generator=g)
        self.train(was_training)
        return x, y


def dct_basis(side: int, coefficients: int) -> torch.Tensor:
    """The ``coefficients`` lowest-frequency atoms of the orthonormal 2-D DCT-II of a
    ``side x side`` image, as columns of a ``(side^2, coefficients)`` matrix: fixed, public,
    independent of any data. Atoms are ordered by ``u + v`` (then ``u``), so the first
    ones are the coarse shape of a digit.

    >>> b = dct_basis(8, 10)
    >>> tuple(b.shape), bool(torch.allclose(b.T @ b, torch.eye(10), atol=1e-5))
    ((64, 10), True)
    """
    if not 1 <= coefficients <= side * side:
        raise ValueError(f"coefficients must be in [1, {side * side}], got {coefficients}.")
    n = torch.arange(side, dtype=torch.float64)
    c = torch.cos(math.pi * (n[None, :] + 0.5) * n[:, None] / side)  # (freq, position)
    c *= math.sqrt(2 / side)
    c[0] /= math.sqrt(2)
    order = sorted(((u, v) for u in range(side) for v in range(side)),
                   key=lambda t: (t[0] + t[1], t[0]))[:coefficients]
    atoms = [torch.outer(c[u], c[v]).reshape(-1) for u, v in order]
    return torch.stack(atoms, 1).to(torch.float32)


class BasisGenerator(ConditionalGenerator):
    """A :class:`ConditionalGenerator` whose network outputs ``m`` coefficients of a fixed
    basis (``basis``: ``(dim, m)``, e.g. :func:`dct_basis`); a sample is
    ``clamp(basis @ c, 0, 1)``. :meth:`coefficients` is what a method trains through;
    ``sample`` and ``release`` give images, like every generator here."""

    def __init__(self, *, basis: torch.Tensor, classes: int, z_dim: int = 32,
                 hidden: int = 256) -> None:
        super().__init__(dim=basis.shape[1], classes=classes, z_dim=z_dim, hidden=hidden,
                         output="linear")
        self.register_buffer("basis", basis.detach().clone())
        self.image_dim = basis.shape[0]

    def coefficients(self, y: torch.Tensor, *, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """The network's ``(len(y), m)`` coefficients (gradients flow)."""
        return super().sample(y, generator=generator)

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        return (c @ self.basis.T).clamp(0.0, 1.0)

    def sample(self, y: torch.Tensor, *, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        return self.decode(super().sample(y, generator=generator))


class TeacherBank(nn.Module):
    """``T`` conditional MLP discriminators ``D_t([x, onehot(y)]) -> logit``, batched.

    ``forward(x, y)`` takes ``x`` of shape ``(T, m, dim)`` (teacher t scores its own
    ``m`` rows) and returns ``(T, m)`` logits. The teachers share no weights: a
    gradient step on ``sum_t loss_t`` moves each teacher by its own loss only.
    ``generator`` draws the initial weights (torch's global generator if None).
    """

    def __init__(self, *, teachers: int, dim: int, classes: int, hidden: int = 32,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if teachers < 1:
            raise ValueError(f"teachers must be >= 1, got {teachers}.")
        self.classes = classes
        fan_in = dim + classes
        g = generator
        self.w1 = nn.Parameter(torch.randn(teachers, fan_in, hidden, generator=g)
                               / math.sqrt(fan_in))
        self.b1 = nn.Parameter(torch.zeros(teachers, 1, hidden))
        self.w2 = nn.Parameter(torch.randn(teachers, hidden, 1, generator=g) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(teachers, 1, 1))

    @property
    def teachers(self) -> int:
        return self.w1.shape[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, F.one_hot(y, self.classes).to(x.dtype)], -1)
        h = F.leaky_relu(torch.baddbmm(self.b1, h, self.w1), 0.2)
        return torch.baddbmm(self.b2, h, self.w2).squeeze(-1)


def mlp_classifier(dim: int, classes: int, hidden: int = 128) -> nn.Module:
    """The evaluation classifier: ``dim -> hidden -> classes`` (ReLU)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def fit_classifier(x: torch.Tensor, y: torch.Tensor, *, classes: int, epochs: int = 20,
                   batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """An :func:`mlp_classifier` trained with Adam on ``(x, y)``: the utility probe.

    >>> import torch
    >>> x = torch.cat([torch.zeros(20, 2), torch.ones(20, 2)])
    >>> y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    >>> accuracy(fit_classifier(x, y, classes=2, epochs=30), x, y)
    1.0
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as samples (> 0), got {len(x)} and {len(y)}.")
    torch.manual_seed(seed)
    model = mlp_classifier(x.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` labels as ``y``."""
    return float((model(x).argmax(1) == y).float().mean())
