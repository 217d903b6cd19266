"""Encrypted inference with CKKS: two packings, one plan.

``batched`` (throughput): slot ``b`` of every ciphertext holds image ``b`` (up to 4,096
images per ciphertext set); there is one ciphertext per input feature (an im2col patch
entry for a convolution), and every layer is scalar multiply-and-add over ciphertexts:
no rotations, so no Galois keys, and the cost per batch does not depend on the batch
size. The model owner folds each feature into the first layer's outputs as it arrives
(:meth:`BatchedSession.absorb`), so inputs are never all held at once.

``per_image`` (latency): one image per request, in a few ciphertexts, the first layer
for all channels at once and dense layers by baby-step giant-step diagonals (see
:mod:`ppdl_nb.he.packed`): 34 rotations for TenSEAL's tutorial CNN, where its
tutorial's one-ciphertext im2col approach (``conv2d_im2col`` per channel,
``pack_vectors``, ``mm``) rotates once per input of each dense layer (256 + 64) on top
of its convolutions'.

What leaves the model owner, and to whom: only ciphertexts, and only to the data owner,
who holds the key. What the data owner can decrypt is every slot of them, not only the
logits. Measured on TenSEAL's tutorial CNN without a mask: the other slots of an
unmasked per-image result hold other linear combinations of the last layer's weights
with hidden activations (the logits without the last bias, which gives that bias away,
and partial sums wrapped around the slot vector), that is, facts about the model beyond
its predictions. So the model owner zeroes them before the result is returned: batched
results by zero-padded last-layer plaintexts, per-image results by last-layer
diagonals that are zero past the logits (neither spends a level; a one-layer plan is
masked by a 0/1 plaintext, one more level); a run records ``masked``. What remains is
CKKS noise: CKKS without circuit privacy still leaks something about the model to the
data owner, because the noise of a decrypted result depends on the weights that
produced it. Decrypted values never go back to the model owner, who holds the
ciphertexts (that would reveal the secret key).

>>> cost_per_image("per_image", [784, 10], 1) > 0
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ppdl_nb.he.keys import CiphertextMismatchError, require_tenseal
from ppdl_nb.he.packed import Layout, PackedModel, pack_patches, vector_bytes
from ppdl_nb.he.plan import Plan, first_bias, first_matrix

__all__ = ["BatchedSession", "PerImageSession", "cost_per_image", "load_vector"]

def load_vector(ctx: Any, data: bytes) -> Any:
    """A CKKS vector from TenSEAL bytes, or a clear error if it is not of this context."""
    ts = require_tenseal()
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"ciphertexts travel as bytes, got {type(data).__name__}")
    try:
        return ts.ckks_vector_from(ctx, bytes(data))
    except Exception as exc:
        raise CiphertextMismatchError(
            f"a ciphertext does not load under this context ({exc}); it was made under "
            "another context or parameters: encrypt under the pinned public context") from None


@dataclass
class LayerStat:
    name: str
    kind: str
    seconds: float = 0.0
    ciphertexts: int = 0
    nbytes: int = 0


@dataclass
class _Stats:
    layers: list[LayerStat] = field(default_factory=list)

    def as_list(self) -> list[dict[str, Any]]:
        return [vars(s) for s in self.layers]


def cost_per_image(packing: str, shape: list[int], batch: int, nonzeros: int = 0,
                   rotations: int = 0, cts: int = 1) -> float:
    """A rough model of seconds per image, to choose a packing (measured on one core):
    per image, ``rotations`` and ``cts`` input ciphertexts of one image; batched, the
    ``nonzeros`` of the weights over the whole batch."""
    if packing == "per_image":
        return 0.006 * rotations + 0.0005 * sum(shape[1:]) + 0.015 * cts + 0.03
    return (0.0025 * nonzeros + 0.012 * shape[0]) / max(batch, 1)


class BatchedSession:
    """Model owner's side of batched inference: features in, masked logits out."""

    mask = True  # the last layer multiplies by zero-padded plaintexts

    def __init__(self, ctx: Any, plan: Plan, batch: int, n_features: int) -> None:
        self.ctx, self.plan, self.batch = ctx, plan, batch
        m = first_matrix(plan, n_features)
        self.rows = m.shape[0]
        self.bias = first_bias(plan, self.rows)
        nz = m.nonzero().tolist()
        self.cols: list[list[tuple[int, float]]] = [[] for _ in range(n_features)]
        for o, i in nz:
            self.cols[i].append((o, float(m[o, i])))
        self.acc: list[Any] = [None] * self.rows
        self.seen = 0
        self.stats = _Stats([LayerStat(plan.layers[0].name, plan.layers[0].kind)])

    def absorb(self, start: int, cts: list[bytes]) -> None:
        """Fold features ``start, start+1, ...`` into the first layer's outputs."""
        if start != self.seen:
            raise ValueError(f"features must arrive in order: expected {self.seen}, got {start}")
        if start + len(cts) > len(self.cols):
            raise ValueError(f"the plan takes {len(self.cols)} input features, got more")
        t0, stat = time.perf_counter(), self.stats.layers[0]
        for j, data in enumerate(cts):
            stat.nbytes += len(data)
            ct = load_vector(self.ctx, data)
            for o, coef in self.cols[start + j]:
                term = ct.mul(coef)
                self.acc[o] = term if self.acc[o] is None else self.acc[o].add_(term)
        self.seen += len(cts)
        stat.seconds += time.perf_counter() - t0

    def finish(self, observe: Callable[[int, list[Any]], None] | None = None) -> list[bytes]:
        """Run the remaining layers; the logits, one ciphertext per class, unused slots 0.

        ``observe(i, cts)``, if given, sees layer ``i``'s ciphertexts (for precision plots
        by a party holding the secret key, in a single-process demo)."""
        if self.seen != len(self.cols):
            raise ValueError(f"{self.seen} of {len(self.cols)} input features arrived")
        t0 = time.perf_counter()
        h = [self._affine_out(o, a) for o, a in enumerate(self.acc)]
        self.stats.layers[0].seconds += time.perf_counter() - t0
        self.stats.layers[0].ciphertexts = len(h)
        if observe is not None:
            observe(0, h)
        last = len(self.plan.layers) - 1
        for i, layer in enumerate(self.plan.layers[1:], start=1):
            t0 = time.perf_counter()
            if layer.kind == "square":
                h = [ct.square() for ct in h]
            else:
                h = [self._dot(h, w, float(b), masked=i == last)
                     for w, b in zip(layer.weight.tolist(), layer.bias.tolist(), strict=True)]
            self.stats.layers.append(LayerStat(layer.name, layer.kind,
                                               time.perf_counter() - t0, len(h)))
            if observe is not None:
                observe(i, h)
        out = [ct.serialize() for ct in h]
        self.stats.layers[-1].nbytes = sum(len(b) for b in out)
        return out

    def _affine_out(self, o: int, acc: Any) -> Any:
        if acc is None:  # an output no feature reaches: the bias alone
            ts = require_tenseal()
            return ts.ckks_vector(self.ctx, [float(self.bias[o])] * self.batch)
        return acc.add_(float(self.bias[o]))

    def _dot(self, h: list[Any], weights: list[float], bias: float, *, masked: bool) -> Any:
        total = None
        for ct, w in zip(h, weights, strict=True):
            if w == 0.0:
                continue
            # the last layer multiplies by zero-padded vectors: slots past the batch become 0
            term = ct.mul([w] * self.batch) if masked else ct.mul(w)
            total = term if total is None else total.add_(term)
        if total is None:
            total = h[0].mul([0.0] * self.batch)
        return total.add_([bias] * self.batch) if masked else total.add_(bias)


class PerImageSession:
    """Model owner's side of one-image-per-request inference (:mod:`ppdl_nb.he.packed`):
    each image arrives as ``layout.cts`` ciphertexts; its logits leave as one, zero past
    the logits."""

    def __init__(self, model: PackedModel) -> None:
        self.model, self.mask = model, model.masked
        self.per_image = model.lay.cts
        self.outputs: list[bytes] = []
        self.stats = _Stats([LayerStat(la.name, la.kind) for la in model.plan.layers])

    def absorb(self, start: int, cts: list[bytes]) -> None:
        """Take images ``start, start+1, ...``, ``layout.cts`` ciphertexts each."""
        if start != len(self.outputs):
            raise ValueError(f"images must arrive in order: expected {len(self.outputs)}")
        if len(cts) % self.per_image:
            raise ValueError(f"each image is {self.per_image} ciphertexts, got {len(cts)}")
        stats = self.stats.layers
        for i in range(0, len(cts), self.per_image):
            one = cts[i:i + self.per_image]
            stats[0].nbytes += sum(len(b) for b in one)
            seconds = [0.0] * len(stats)
            t0 = time.perf_counter()
            vecs = [load_vector(self.model.ctx, b).ciphertext()[0] for b in one]
            seconds[0] += time.perf_counter() - t0
            out = self.model.evaluate(vecs, seconds)
            t0 = time.perf_counter()
            self.outputs.append(vector_bytes(out, self.model.plan.outputs))
            seconds[-1] += time.perf_counter() - t0
            for stat, sec in zip(stats, seconds, strict=True):
                stat.seconds += sec
                stat.ciphertexts += 1
            stats[-1].nbytes += len(self.outputs[-1])

    def finish(self) -> list[bytes]:
        return self.outputs


def encrypt_features(ctx: Any, rows: torch.Tensor, start: int, stop: int) -> list[bytes]:
    """Data owner, batched packing: features ``start:stop`` of ``rows`` [batch, n], one
    ciphertext each (slot b = image b)."""
    ts = require_tenseal()
    cols = rows[:, start:stop].T.tolist()
    return [ts.ckks_vector(ctx, col).serialize() for col in cols]


def encrypt_images(ctx: Any, patches: list[torch.Tensor], lay: Layout) -> list[bytes]:
    """Data owner, per-image packing: each image's patches [K, W] as ``lay.cts``
    ciphertexts (see :func:`ppdl_nb.he.packed.pack_patches`)."""
    ts = require_tenseal()
    return [ts.ckks_vector(ctx, values).serialize()
            for p in patches for values in pack_patches(p, lay)]


def decrypt_batched(ctx: Any, outputs: list[bytes], batch: int) -> torch.Tensor:
    """Data owner: logits [batch, classes] from one ciphertext per class."""
    cols = [load_vector(ctx, b).decrypt()[:batch] for b in outputs]
    return torch.tensor(cols, dtype=torch.float64).T


def decrypt_images(ctx: Any, outputs: list[bytes]) -> torch.Tensor:
    """Data owner: logits [images, classes], one ciphertext per image."""
    rows = [load_vector(ctx, b).decrypt() for b in outputs]
    return torch.tensor(rows, dtype=torch.float64)
