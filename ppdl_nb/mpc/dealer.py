"""The dealer (crypto provider): correlated randomness for Beaver steps and truncation.

The dealer never sees the user's data and computes nothing of the user's computation: it
only makes random tensors with a known relation (a Beaver triple ``c = a * b``, a square
pair ``c = a^2``, a truncation mask ``(r, r >> f, msb(r))``) and hands out additive
shares of them.

Seeds cut the traffic to one tensor per derived value. Once, at setup, the dealer sends
party ``i`` a 32-byte seed ``s_i`` (:func:`dealer_seeds`). For a request with a unique
``label``, every party draws its shares of the random inputs (``a``, ``b`` / ``r``) from
``PRG(s_i, label)``, and parties ``0 .. n-2`` also draw their shares of the derived values
(``c``). The dealer replays all those streams, so it knows ``a``, ``b``, computes ``c``, and
sends only the last party's share of ``c`` (the *correction*). Bytes sent per request:
``8 * numel(c)`` to party ``n-1``; nothing to the others.

Request kinds (the ``kind`` argument), their parameters, and what :func:`expand` returns:

================  =============================================  =======================
kind              parameters                                     party gets
================  =============================================  =======================
``mul``           ``x_shape, y_shape`` (broadcasting as torch)   ``(a, b, c=a*b)``
``matmul``        ``x_shape, y_shape``                           ``(a, b, c=a@b)``
``conv2d``        ``x_shape, w_shape, stride, padding,           ``(a, b, c=conv(a,b))``
                  dilation, groups``
``conv2d_wgrad``  ``x_shape, y_shape`` (x, the output's          ``(a, b, c=dw(a,b))``
                  gradient), ``kernel_size, stride, padding,
                  dilation``: conv2d's weight gradient
``conv2d_xgrad``  ``x_shape, y_shape`` (the output's gradient,   ``(a, b, c=dx(a,b))``
                  w), ``input_size, stride, padding,
                  dilation``: conv2d's input gradient
``square``        ``shape``                                      ``(a, c=a*a)``
``trunc``         ``shape, frac_bits``                           ``(r, r>>f, msb(r))``
``cmp``           ``shape, test, products``                      see ``comparison.py``
================  =============================================  =======================

Truncation uses ``msb(r)`` only multiplied by ``2^(64-f)``, so its shares need only be
right modulo ``2^f``: the last party's correction for it travels as int16 (``f <= 16``)
or int32 (``f <= 32``), 2 or 4 bytes per element instead of 8. Its shares sum to
``msb(r)`` modulo ``2^f`` (not modulo 2^64).

A ``cmp`` request (secure comparison) also deals XOR-shared bits, as int64 words of a
few bits each (see ``bits.py``): every party draws its shares of random words from its
seed, and the last party's shares of derived words arrive as a correction in the
narrowest integer dtype that holds them (XORed, not subtracted).

A label must never be reused with the same seeds: a triple used twice leaks its inputs.

>>> seeds = dealer_seeds(2)
>>> fix = deal("mul", seeds, b"op-1", x_shape=(3,), y_shape=(3,))
>>> p0 = expand("mul", seeds[0], b"op-1", 0, 2, x_shape=(3,), y_shape=(3,))
>>> p1 = expand("mul", seeds[1], b"op-1", 1, 2, fix, x_shape=(3,), y_shape=(3,))
>>> bool(((p0[0] + p1[0]) * (p0[1] + p1[1]) == p0[2] + p1[2]).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ppdl_nb.mpc.beaver import ring_conv2d_wgrad, ring_conv2d_xgrad
from ppdl_nb.mpc.bits import xor_reconstruct
from ppdl_nb.mpc.comparison import cmp_spec
from ppdl_nb.mpc.limbs import ring_conv2d, ring_matmul
from ppdl_nb.mpc.prg import PRG, new_seed
from ppdl_nb.mpc.ring import msb, shift_right_logical

__all__ = ["KINDS", "check_correction", "deal", "dealer_bytes", "dealer_seeds", "expand",
           "expand_parts", "simulate_dealer"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class _Recipe:
    base_shapes: tuple[Shape, ...]  # random tensors: every party draws a share from its seed
    derived_shapes: tuple[Shape, ...]  # derived tensors: last party's share is sent
    derive: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    # dtype of each correction on the wire: int64, or narrower for values needed only
    # modulo 2^16 / 2^32 (their shares are then right only modulo that)
    derived_dtypes: tuple[torch.dtype, ...] | None = None
    # which bases / derived values are words of XOR-shared bits (see bits.py) and how many
    # bits wide (0: an additive ring element); a word correction travels in the narrowest
    # integer dtype that holds its bits
    base_bits: tuple[int, ...] = ()
    derived_bits: tuple[int, ...] = ()

    def dtypes(self) -> tuple[torch.dtype, ...]:
        if self.derived_bits:
            return tuple(_word_dtype(w) for w in self.derived_bits)
        return self.derived_dtypes or (torch.int64,) * len(self.derived_shapes)

    def width(self, derived: bool, i: int) -> int:
        flags = self.derived_bits if derived else self.base_bits
        return flags[i] if flags else 0


def _word_dtype(width: int) -> torch.dtype:
    return (torch.int64 if not width or width > 32 else torch.int32 if width > 16
            else torch.int16 if width > 8 else torch.uint8)


def _words(prg: PRG, shape: Shape, width: int) -> torch.Tensor:
    """Uniform words of the narrowest dtype holding ``width`` bits, as int64 (sign
    extended: every bit that dtype holds is uniform)."""
    dtype = _word_dtype(width)
    if dtype == torch.int64:
        return prg.int64(shape)
    n = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    raw = torch.frombuffer(bytearray(prg.random_bytes(n)), dtype=dtype) if n else \
        torch.zeros(0, dtype=dtype)
    return raw.to(torch.int64).reshape(shape)


def _draw(prg: PRG, shape: Shape, width: int) -> torch.Tensor:
    if not width or width >= 64:
        return prg.int64(shape)
    return _words(prg, shape, width) & ((1 << width) - 1)


def _shape(s: Sequence[int], name: str) -> Shape:
    try:
        out = tuple(int(d) for d in s)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {s!r}") from None
    if any(d < 0 for d in out):
        raise ValueError(f"{name} has a negative size: {out}")
    return out


def _meta(shape: Shape) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def _mul(*, x_shape: Sequence[int], y_shape: Sequence[int]) -> _Recipe:
    xs, ys = _shape(x_shape, "x_shape"), _shape(y_shape, "y_shape")
    out = tuple(torch.broadcast_shapes(xs, ys))
    return _Recipe((xs, ys), (out,), lambda t: [t[0] * t[1]])


def _matmul(*, x_shape: Sequence[int], y_shape: Sequence[int]) -> _Recipe:
    xs, ys = _shape(x_shape, "x_shape"), _shape(y_shape, "y_shape")
    out = tuple(torch.matmul(_meta(xs), _meta(ys)).shape)
    return _Recipe((xs, ys), (out,), lambda t: [ring_matmul(t[0], t[1])])


def _conv2d(
    *,
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> _Recipe:
    xs, ws = _shape(x_shape, "x_shape"), _shape(w_shape, "w_shape")
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    out = tuple(F.conv2d(_meta(xs), _meta(ws), **kw).shape)
    return _Recipe((xs, ws), (out,), lambda t: [ring_conv2d(t[0], t[1], **kw)])


def _conv_check(x_shape: Shape, w_shape: Shape, g_shape: Shape, kw: dict) -> None:
    """The output gradient must have the shape of ``conv2d(x, w)``'s output."""
    try:
        out = tuple(F.conv2d(_meta(x_shape), _meta(w_shape), **kw).shape)
    except RuntimeError as e:
        raise ValueError(f"no conv2d of x {x_shape} and a weight {w_shape}: {e}") from None
    if out != g_shape:
        raise ValueError(f"the output gradient has shape {g_shape}, conv2d of x {x_shape} "
                         f"and a weight {w_shape} gives {out}")


def _grad_kw(stride: int | Sequence[int], padding: int | Sequence[int],
             dilation: int | Sequence[int]) -> dict:
    return {"stride": stride, "padding": padding, "dilation": dilation}


def _conv2d_wgrad(*, x_shape: Sequence[int], y_shape: Sequence[int],
                  kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
                  padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1
                  ) -> _Recipe:
    xs, gs = _shape(x_shape, "x_shape"), _shape(y_shape, "y_shape")
    if len(xs) != 4 or len(gs) != 4:
        raise ValueError(f"conv2d_wgrad takes 4-D x and g, got {xs} and {gs}")
    k = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
    w_shape = (gs[1], xs[1], *_shape(k, "kernel_size"))
    kw = _grad_kw(stride, padding, dilation)
    _conv_check(xs, w_shape, gs, kw)
    return _Recipe((xs, gs), (w_shape,),
                   lambda t: [ring_conv2d_wgrad(t[0], t[1], kernel_size=w_shape[2:], **kw)])


def _conv2d_xgrad(*, x_shape: Sequence[int], y_shape: Sequence[int],
                  input_size: Sequence[int], stride: int | Sequence[int] = 1,
                  padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1
                  ) -> _Recipe:
    gs, ws = _shape(x_shape, "x_shape"), _shape(y_shape, "y_shape")
    size = _shape(input_size, "input_size")
    if len(gs) != 4 or len(ws) != 4 or len(size) != 2:
        raise ValueError(f"conv2d_xgrad takes 4-D g and w and a 2-D input_size, got {gs}, "
                         f"{ws} and {size}")
    in_shape = (gs[0], ws[1], *size)
    kw = _grad_kw(stride, padding, dilation)
    _conv_check(in_shape, ws, gs, kw)
    return _Recipe((gs, ws), (in_shape,),
                   lambda t: [ring_conv2d_xgrad(t[0], t[1], input_size=size, **kw)])


def _square(*, shape: Sequence[int]) -> _Recipe:
    s = _shape(shape, "shape")
    return _Recipe((s,), (s,), lambda t: [t[0] * t[0]])


def _trunc(*, shape: Sequence[int], frac_bits: int) -> _Recipe:
    s = _shape(shape, "shape")
    if not isinstance(frac_bits, int) or not 1 <= frac_bits <= 61:
        raise ValueError(f"frac_bits for truncation must be an int in [1, 61], got {frac_bits!r}")
    narrow = torch.int16 if frac_bits <= 16 else torch.int32 if frac_bits <= 32 else torch.int64
    return _Recipe((s,), (s, s), lambda t: [shift_right_logical(t[0], frac_bits), msb(t[0])],
                   (torch.int64, narrow))


def _cmp(**params) -> _Recipe:
    bases, derived, derive = cmp_spec(**params)
    return _Recipe(tuple(s for s, _ in bases), tuple(s for s, _ in derived), derive,
                   base_bits=tuple(b for _, b in bases),
                   derived_bits=tuple(b for _, b in derived))


_RECIPES: dict[str, Callable[..., _Recipe]] = {
    "mul": _mul,
    "matmul": _matmul,
    "conv2d": _conv2d,
    "conv2d_wgrad": _conv2d_wgrad,
    "conv2d_xgrad": _conv2d_xgrad,
    "square": _square,
    "trunc": _trunc,
    "cmp": _cmp,
}
KINDS = tuple(_RECIPES)


def _recipe(kind: str, params: dict) -> _Recipe:
    factory = _RECIPES.get(kind)
    if factory is None:
        raise ValueError(f"unknown dealer request kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return factory(**params)


def _stream(seed: bytes, kind: str, label: bytes) -> PRG:
    if not isinstance(label, bytes) or not label:
        raise TypeError(f"label must be non-empty bytes unique to this request, got {label!r}")
    return PRG(seed, label=b"dealer/" + kind.encode() + b"/" + label)


def dealer_seeds(n_parties: int) -> list[bytes]:
    """Fresh seeds, one per party, made by the dealer and sent once over a private channel."""
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ValueError(f"n_parties must be an int >= 2, got {n_parties!r}")
    return [new_seed() for _ in range(n_parties)]


def deal(kind: str, seeds: Sequence[bytes], label: bytes, **params) -> list[torch.Tensor]:
    """DEALER: the corrections to send to the last party (its shares of the derived values).

    ``seeds[i]`` is the seed shared with party ``i``; ``label`` names this request.
    """
    recipe = _recipe(kind, params)
    n = len(seeds)
    if n < 2:
        raise ValueError(f"the dealer needs one seed per party, at least 2, got {n}")
    bases: list[list[torch.Tensor]] = [[] for _ in recipe.base_shapes]
    others: list[list[torch.Tensor]] = [[] for _ in recipe.derived_shapes]
    for i, seed in enumerate(seeds):
        prg = _stream(seed, kind, label)
        for j, (acc, s) in enumerate(zip(bases, recipe.base_shapes, strict=True)):
            acc.append(_draw(prg, s, recipe.width(False, j)))
        if i < n - 1:
            for j, (acc, s) in enumerate(zip(others, recipe.derived_shapes, strict=True)):
                # whole words: the correction's unused high bits come out uniform too
                w = recipe.width(True, j)
                acc.append(_words(prg, s, w) if w else prg.int64(s))
    secrets = recipe.derive([xor_reconstruct(parts) if recipe.width(False, j) else _sum(parts)
                             for j, parts in enumerate(bases)])
    return [(v ^ xor_reconstruct(o) if recipe.width(True, j)
             else v.sub_(_sum(o))).to(dtype)  # derive() made fresh tensors: reuse them
            for j, (v, o, dtype) in enumerate(zip(secrets, others, recipe.dtypes(),
                                                  strict=True))]


def _sum(parts: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the parties' shares mod 2^64 (no copy for one part, one pass for two)."""
    if len(parts) == 1:
        return parts[0]
    out = torch.add(parts[0], parts[1])
    for p in parts[2:]:
        out += p
    return out


def expand(
    kind: str,
    seed: bytes,
    label: bytes,
    party_index: int,
    n_parties: int,
    correction: Sequence[torch.Tensor] | None = None,
    **params,
) -> tuple[torch.Tensor, ...]:
    """PARTY: its shares of one request, from its seed (last party: plus the correction)."""
    last = _check_party(party_index, n_parties)
    if last != (correction is not None):
        raise ValueError(
            "the last party (and only it) must pass the dealer's correction: party "
            f"{party_index} of {n_parties} got correction={'given' if correction else 'None'}"
        )
    bases, derived = expand_parts(kind, seed, label, party_index, n_parties, **params)
    if derived is None:
        derived = check_correction(kind, correction, **params)
    return tuple(bases + derived)


def expand_parts(
    kind: str, seed: bytes, label: bytes, party_index: int, n_parties: int, **params
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """PARTY: ``(bases, derived)``, its shares drawn from its seed, without the dealer.

    ``bases`` are its shares of the random inputs (``a, b`` / ``r``), which every party
    draws at once; ``derived`` its shares of the derived values (``c`` / ``r >> f``,
    ``msb(r)``), or ``None`` for the last party, whose derived shares are the dealer's
    correction (:func:`check_correction`). So every party can start a protocol round
    before the dealer's message arrives.
    """
    recipe = _recipe(kind, params)
    last = _check_party(party_index, n_parties)
    prg = _stream(seed, kind, label)
    bases = [_draw(prg, s, recipe.width(False, j)) for j, s in enumerate(recipe.base_shapes)]
    if last:
        return bases, None
    return bases, [_draw(prg, s, recipe.width(True, j))
                   for j, s in enumerate(recipe.derived_shapes)]


def check_correction(kind: str, correction: Sequence[torch.Tensor] | None, **params
                     ) -> list[torch.Tensor]:
    """The dealer's correction for a ``kind`` request, checked against its shapes."""
    recipe = _recipe(kind, params)
    corr = list(correction or [])
    want = list(zip(recipe.derived_shapes, recipe.dtypes(), strict=True))
    got = [(tuple(c.shape), c.dtype) if isinstance(c, torch.Tensor) else (None, type(c))
           for c in corr]
    if got != want:
        raise ValueError(f"correction must be tensors of shapes and dtypes {want}, got {got}")
    masks = [(1 << w) - 1 if 0 < w < 64 else 0 for w in recipe.derived_bits or [0] * len(corr)]
    return [c.to(torch.int64) & m if m else c if c.dtype == torch.int64 else c.to(torch.int64)
            for c, m in zip(corr, masks, strict=True)]


def _check_party(party_index: int, n_parties: int) -> bool:
    """Validate the party's index; True for the last party."""
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ValueError(f"n_parties must be an int >= 2, got {n_parties!r}")
    if not isinstance(party_index, int) or not 0 <= party_index < n_parties:
        raise ValueError(f"party_index must be in [0, {n_parties}), got {party_index!r}")
    return party_index == n_parties - 1


def dealer_bytes(kind: str, **params) -> int:
    """Bytes the dealer sends for one request (to the last party only)."""
    recipe = _recipe(kind, params)
    return sum(torch.Size(s).numel() * torch.empty((), dtype=d).element_size()
               for s, d in zip(recipe.derived_shapes, recipe.dtypes(), strict=True))


def simulate_dealer(kind: str, n_parties: int, **params) -> list[tuple[torch.Tensor, ...]]:
    """Dealer and all parties in one process: each party's ``expand`` result, in order.

    For tests, benchmarks and notebooks; a real run calls :func:`deal` on the dealer and
    :func:`expand` on each party.
    """
    seeds = dealer_seeds(n_parties)
    label = new_seed()  # fresh, unique label
    correction = deal(kind, seeds, label, **params)
    return [
        expand(kind, seeds[i], label, i, n_parties, correction if i == n_parties - 1 else None,
               **params)
        for i in range(n_parties)
    ]
