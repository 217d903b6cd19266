"""One image per request, fast: the whole image in a few ciphertexts, dense layers by
baby-step giant-step diagonals (the latency path, ``packing="per_image"``).

Layout (public: it follows from the model's shapes). The first layer has ``C`` outputs
per window (channels; a ``Linear`` first layer is one window, ``C`` = its outputs),
``W`` windows and ``K`` inputs per window (kernel entries). Its output ``[c * W + w]`` is
padded to a power of two ``B`` and repeated over the ``slots``: every later vector is
periodic, so a rotation reads the right values without masks. The data owner sends
``m`` ciphertexts; ciphertext ``j`` holds, in block ``kl`` of ``B`` slots, patch entry
``k = j * KB + kl`` of every window, repeated for every channel. The model owner
multiplies each by one plaintext of kernel entries, adds the ``m`` products and sums
the ``KB`` blocks with ``log2(KB)`` rotations: the convolution, every channel at once,
in one ciphertext (TenSEAL's tutorial: one ``conv2d_im2col`` per channel and a packing
step). With TenSEAL's tutorial CNN (``C*W`` = 256, ``K`` = 49, 4,096 slots): ``m`` = 4
ciphertexts, 4 rotations.

A dense layer ``[n_out, n_in]`` on a ``P``-periodic input is the hybrid diagonal method:
``P_out`` = pow2(``n_out``) diagonals, evaluated with baby steps (rotations by 1) and giant
steps (rotations by ``n1``, Horner), then folded from ``P`` to ``P_out`` slots: 16
rotations for 256 -> 64 (TenSEAL's ``mm``: one per input, 256). The last layer instead
takes the square diagonals restricted to the first ``n_out`` slots: its result is zero
(up to CKKS noise) past the logits without a level spent on a mask. A plan whose first
layer is also its last is masked by a 0/1 plaintext (one more level).

Rotations are powers of two only (the Galois keys TenSEAL makes by default). Levels: one
per affine layer and per square, as the batched path.

>>> lay = layout(4, 64, 49, 4096)
>>> (lay.block, lay.kblocks, lay.cts)
(256, 16, 4)
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from ppdl_nb.he.keys import require_tenseal
from ppdl_nb.he.plan import Plan, features_from_description, windows

__all__ = ["Layout", "PackedModel", "cached_model", "first_layout", "image_patches", "layout",
           "pack_patches", "rotations", "vector_bytes"]


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


@dataclass(frozen=True)
class Layout:
    """How one image's first-layer inputs fill ``cts`` ciphertexts of ``slots`` slots."""

    channels: int
    windows: int
    kernel: int
    slots: int
    block: int  # pow2(channels * windows): the period of the first layer's output
    kblocks: int  # blocks of patch entries per ciphertext (a power of two)
    cts: int


def layout(channels: int, windows: int, kernel: int, slots: int) -> Layout:
    """The packing of a first layer (``channels`` outputs per window) into ``slots``."""
    block = _pow2(channels * windows)
    if block > slots:
        raise ValueError(f"the first layer's {channels * windows} outputs exceed the "
                         f"{slots} slots of a ciphertext: use packing='batched'")
    per_ct = slots // block
    cts = -(-kernel // per_ct)
    return Layout(channels, windows, kernel, slots, block, _pow2(-(-kernel // cts)), cts)


def first_layout(plan: Plan, image: tuple[int, int], slots: int) -> Layout:
    """The layout of ``plan``'s first layer on ``image``-sized inputs (ValueError if the
    first layer's outputs do not fit a ciphertext)."""
    first = plan.layers[0]
    if first.kind == "conv":
        return layout(int(first.weight.shape[0]), windows(plan, image),
                      int(first.weight[0].numel()), slots)
    return layout(int(first.weight.shape[0]), 1, int(first.weight.shape[1]), slots)


def image_patches(first: dict[str, Any], x: torch.Tensor) -> list[torch.Tensor]:
    """Data owner: each image's first-layer inputs [K, W] (im2col patches for a
    convolution, described by ``first`` from ``Plan.describe``; the row for a linear)."""
    rows = features_from_description(first, x)
    if first["kind"] != "conv":
        return list(rows.unsqueeze(-1))
    k = int(torch.tensor(first["shape"][1:]).prod())
    return list(rows.reshape(rows.shape[0], -1, k).transpose(1, 2))


def pack_patches(patches: torch.Tensor, lay: Layout) -> list[list[float]]:
    """Data owner: one image's patches [K, W] as the slot values of its ``cts`` vectors."""
    k, w = patches.shape
    if (k, w) != (lay.kernel, lay.windows):
        raise ValueError(f"patches of shape {(k, w)}, the layout expects "
                         f"{(lay.kernel, lay.windows)}")
    grid = torch.zeros(lay.cts * lay.kblocks, lay.block, dtype=torch.float64)
    grid[:k, :lay.channels * w] = patches.double().repeat(1, lay.channels)
    out = []
    for j in range(lay.cts):
        period = grid[j * lay.kblocks:(j + 1) * lay.kblocks].reshape(-1)
        out.append(period.repeat(lay.slots // period.numel()).tolist())
    return out


def rotations(plan: Plan, lay: Layout) -> int:
    """Rotations one image costs (for the cost model)."""
    count = int(math.log2(lay.kblocks))
    period = lay.block
    layers = [la for la in plan.layers[1:] if la.kind == "linear"]
    for i, la in enumerate(layers):
        p_out = _pow2(la.weight.shape[0])
        p = max(period, p_out)
        diags = p if i == len(layers) - 1 else p_out
        n1 = 1 << math.ceil(math.log2(diags) / 2)
        count += n1 - 1 + diags // n1 - 1
        if i < len(layers) - 1:
            count += int(math.log2(p // p_out))
        period = p_out
    return count


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def vector_bytes(ct: Any, size: int) -> bytes:
    """A SEAL ciphertext as a serialized TenSEAL ``CKKSVector`` of ``size`` values (its
    protobuf: sizes, SEAL's own ciphertext bytes, scale), for ``ckks_vector_from``."""
    fd, path = tempfile.mkstemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        os.close(fd)
        ct.save(path)  # SEAL's Python binding saves to a path only
        with open(path, "rb") as f:
            raw = f.read()
    finally:
        os.unlink(path)
    sizes = _varint(size)
    return (b"\x0a" + _varint(len(sizes)) + sizes + b"\x12" + _varint(len(raw)) + raw
            + b"\x19" + struct.pack("<d", ct.scale))


def cached_model(cache: dict, ctx: Any, fingerprint: str, plan: Plan, lay: Layout, *,
                 mask: bool = True) -> PackedModel:
    """A :class:`PackedModel` from ``cache`` (the model owner's), encoded on first use:
    a server encodes its model once, not per request (the last 4 are kept)."""
    digest = hashlib.sha256()
    for la in plan.layers:
        digest.update(la.kind.encode())
        for t in (la.weight, la.bias):
            if t is not None:
                digest.update(t.double().contiguous().numpy().tobytes())
    key = (fingerprint, digest.hexdigest(), lay, mask)
    if key not in cache:
        while len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[key] = PackedModel(ctx, plan, lay, mask=mask)
    return cache[key]


class _Seal:
    """SEAL's evaluator, encoder and keys for a TenSEAL context."""

    def __init__(self, ctx: Any) -> None:
        require_tenseal()
        from tenseal import sealapi
        self.api = sealapi
        self.sc = ctx.seal_context().data
        self.ev = sealapi.Evaluator(self.sc)
        self.enc = sealapi.CKKSEncoder(self.sc)
        self.gk = ctx.galois_keys().data
        self.rk = ctx.relin_keys().data
        self.scale = ctx.global_scale
        self.slots = self.enc.slot_count()
        self.parms, data = [], self.sc.first_context_data()
        while data is not None:
            self.parms.append(data.parms_id())
            data = data.next_context_data()

    def encode(self, values: torch.Tensor, level: int, scale: float | None = None) -> Any:
        pt = self.api.Plaintext()
        self.enc.encode(values.tolist(), self.parms[level], scale or self.scale, pt)
        return pt

    def new(self) -> Any:
        return self.api.Ciphertext()

    def rotate(self, ct: Any, step: int) -> Any:
        out = self.new()
        self.ev.rotate_vector(ct, step, self.gk, out)
        return out

    def fold(self, ct: Any, start: int, stop: int) -> None:
        """ct[s] += ct[s + step] for step = start, start/2, ..., stop (in place)."""
        step = start
        while step >= stop:
            self.ev.add_inplace(ct, self.rotate(ct, step))
            step //= 2

    def add_bias(self, ct: Any, values: torch.Tensor) -> None:
        pt = self.api.Plaintext()
        self.enc.encode(values.tolist(), ct.parms_id(), ct.scale, pt)
        self.ev.add_plain_inplace(ct, pt)


@dataclass
class _Dense:
    """A dense layer's plaintexts: ``diags[g][b]`` (None where zero), fold, bias."""

    diags: list[list[Any]]
    n1: int
    fold: tuple[int, int] | None
    bias: torch.Tensor


class PackedModel:
    """Model owner: a plan's plaintexts encoded once for a context (reused per image)."""

    def __init__(self, ctx: Any, plan: Plan, lay: Layout, *, mask: bool = True) -> None:
        t0 = time.perf_counter()
        self.ctx, self.seal, self.plan, self.lay = ctx, _Seal(ctx), plan, lay
        if lay.slots != self.seal.slots:
            raise ValueError(f"layout for {lay.slots} slots, the context has {self.seal.slots}")
        self.mask = mask and len(plan.layers) == 1  # later last layers are masked for free
        self.masked = self.mask or len(plan.layers) > 1
        self.steps: list[Any] = [self._first()]
        level, period = 1, lay.block
        linears = [i for i, la in enumerate(plan.layers) if la.kind == "linear"]
        for i, la in enumerate(plan.layers[1:], start=1):
            if la.kind == "square":
                self.steps.append(None)
            else:
                dense = self._dense(la.weight, la.bias, level, period, last=i == linears[-1])
                self.steps.append(dense)
                period = _pow2(la.weight.shape[0])
            level += 1
        self.encode_seconds = time.perf_counter() - t0

    def _first(self) -> tuple[list[Any], torch.Tensor, Any]:
        lay, first = self.lay, self.plan.layers[0]
        kern = first.weight.reshape(lay.channels, lay.kernel).double()  # [C, K]
        grid = torch.zeros(lay.cts * lay.kblocks, lay.block, dtype=torch.float64)
        grid[:lay.kernel, :lay.channels * lay.windows] = \
            kern.T.repeat_interleave(lay.windows, dim=1)
        pts = []
        for j in range(lay.cts):
            period = grid[j * lay.kblocks:(j + 1) * lay.kblocks].reshape(-1)
            pts.append(self.seal.encode(period.repeat(lay.slots // period.numel()), 0))
        bias = torch.zeros(lay.block, dtype=torch.float64)
        bias[:lay.channels * lay.windows] = first.bias.double().repeat_interleave(lay.windows)
        mask = None
        if self.mask:
            ones = torch.zeros(lay.slots, dtype=torch.float64)
            ones[:lay.channels * lay.windows] = 1.0
            mask = self.seal.encode(ones, 1)
        return pts, bias.repeat(lay.slots // lay.block), mask

    def _dense(self, weight: torch.Tensor, bias: torch.Tensor, level: int, period: int, *,
               last: bool) -> _Dense:
        n_out, n_in = weight.shape
        slots, p_out = self.lay.slots, _pow2(n_out)
        p = max(period, p_out)
        if n_in > period or p > slots:
            raise ValueError(f"a {n_out}x{n_in} layer does not fit the per-image packing: "
                             "use packing='batched'")
        wide = torch.zeros(p, p, dtype=torch.float64)
        wide[:n_out, :n_in] = weight.double()
        r = torch.arange(p)
        n_diags = p if last else p_out  # last: square diagonals, rows past n_out zero
        n1 = 1 << math.ceil(math.log2(n_diags) / 2)
        diags: list[list[Any]] = []
        for g in range(-(-n_diags // n1)):
            row = []
            for d in range(g * n1, (g + 1) * n1):
                if d >= n_diags:
                    row.append(None)
                    continue
                if last:  # only the first p slots: the result is zero past the logits
                    vec = torch.cat([wide[r, (r + d) % p],
                                     torch.zeros(slots - p, dtype=torch.float64)])
                else:
                    vec = wide[r % p_out, (r + d) % p].repeat(slots // p)
                vec = torch.roll(vec, g * n1)  # pre-rotated for the giant step
                row.append(self.seal.encode(vec, level) if vec.abs().max() > 0 else None)
            diags.append(row)
        out_bias = torch.zeros(slots, dtype=torch.float64)
        if last:
            out_bias[:n_out] = bias.double()
        else:
            out_bias[:] = torch.cat([bias.double(), torch.zeros(p_out - n_out,
                                                                dtype=torch.float64)]
                                    ).repeat(slots // p_out)
        fold = None if last or p == p_out else (p // 2, p_out)
        return _Dense(diags, n1, fold, out_bias)

    def evaluate(self, cts: list[Any], seconds: list[float]) -> Any:
        """The logits' ciphertext from one image's ``cts`` (SEAL ciphertexts); adds each
        layer's time to ``seconds``."""
        seal = self.seal
        t0 = time.perf_counter()
        h = self._conv(cts)
        seconds[0] += time.perf_counter() - t0
        for i, step in enumerate(self.steps[1:], start=1):
            t0 = time.perf_counter()
            if step is None:
                seal.ev.square_inplace(h)
                seal.ev.relinearize_inplace(h, seal.rk)
                seal.ev.rescale_to_next_inplace(h)
            else:
                h = self._apply(step, h)
            seconds[i] += time.perf_counter() - t0
        return h

    def _conv(self, cts: list[Any]) -> Any:
        seal, lay = self.seal, self.lay
        pts, bias, mask = self.steps[0]
        acc = seal.new()
        seal.ev.multiply_plain(cts[0], pts[0], acc)
        for ct, pt in zip(cts[1:], pts[1:], strict=True):
            term = seal.new()
            seal.ev.multiply_plain(ct, pt, term)
            seal.ev.add_inplace(acc, term)
        seal.ev.rescale_to_next_inplace(acc)
        seal.fold(acc, lay.block * lay.kblocks // 2, lay.block)
        seal.add_bias(acc, bias)
        if mask is not None:
            seal.ev.multiply_plain_inplace(acc, mask)
            seal.ev.rescale_to_next_inplace(acc)
        return acc

    def _apply(self, step: _Dense, h: Any) -> Any:
        seal = self.seal
        baby = [h]
        for _ in range(1, step.n1):
            baby.append(seal.rotate(baby[-1], 1))
        acc = None
        for row in reversed(step.diags):
            if acc is not None:
                seal.ev.rotate_vector_inplace(acc, step.n1, seal.gk)
            for ct, pt in zip(baby, row, strict=True):
                if pt is None:
                    continue
                term = seal.new()
                seal.ev.multiply_plain(ct, pt, term)
                if acc is None:
                    acc = term
                else:
                    seal.ev.add_inplace(acc, term)
        seal.ev.rescale_to_next_inplace(acc)
        if step.fold is not None:
            seal.fold(acc, *step.fold)
        seal.add_bias(acc, step.bias)
        return acc
