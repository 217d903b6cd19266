"""Protocol math for SPDZ-style additive secret sharing, as pure functions over torch tensors.

Nothing here sends a message: each function is one party's local step, and the layer above
(``ppdl_nb.tensors.SharedTensor``) ships openings between workers. Modules, bottom up:

* ``ring`` / ``encoding``: Z_2^64 in int64, fixed-point encode / exact decode.
* ``prg``: AES-CTR generator for shares and masks; seeds shared by parties give equal streams.
* ``sharing``: share / reconstruct, local linear ops, pack one round's openings.
* ``limbs``: exact mod-2^64 matmul and conv2d, via float64 limbs where that is faster.
* ``dealer``: Beaver triples, square pairs, truncation masks from seeds plus one correction.
* ``beaver`` / ``truncation``: the open / finish steps of multiplication and truncation.
* ``bits`` / ``comparison``: XOR-shared bits and secure comparison (``[x >= 0]``,
  ``[x == 0]``), exact, 4 rounds; a party's protocol is a generator yielding ``Draw`` /
  ``Dealt`` / ``Opening``.
* ``nonlinear``: ``<``, ``==``, ReLU, sign, abs, max / argmax, pooling, clamp on top.
* ``approx`` / ``approx_nn``: exp, reciprocal, inverse square root, log; sigmoid, tanh,
  softmax, each written once over an ops interface, with one :class:`ApproxConfig`
  (accuracy table: docs/MPC_APPROX.md, checked by tests); ``approx_party`` runs them as
  one party's protocol, ``sim_ops`` in one process.
* ``simulate``: all parties in one process, for tests, benchmarks and teaching.
"""

from ppdl_nb.mpc.approx import ApproxConfig
from ppdl_nb.mpc.beaver import (
    beaver_conv2d_finish,
    beaver_matmul_finish,
    beaver_mul_finish,
    beaver_open,
    beaver_square_finish,
    beaver_square_open,
)
from ppdl_nb.mpc.comparison import Dealt, Draw, Opening, compare
from ppdl_nb.mpc.dealer import deal, dealer_seeds, expand
from ppdl_nb.mpc.encoding import DEFAULT_FRAC_BITS, decode, encode
from ppdl_nb.mpc.limbs import ring_conv2d, ring_matmul
from ppdl_nb.mpc.prg import PRG, fixed_seeds, new_seed
from ppdl_nb.mpc.sharing import (
    add,
    add_public,
    mul_public,
    neg,
    pack,
    reconstruct,
    seeded_share,
    share,
    share_from_seeds,
    sub,
    unpack,
)
from ppdl_nb.mpc.truncation import trunc_finish, trunc_open

__all__ = [
    "ApproxConfig",
    "DEFAULT_FRAC_BITS",
    "PRG",
    "Dealt",
    "Draw",
    "Opening",
    "add",
    "add_public",
    "beaver_conv2d_finish",
    "beaver_matmul_finish",
    "beaver_mul_finish",
    "beaver_open",
    "beaver_square_finish",
    "beaver_square_open",
    "compare",
    "deal",
    "dealer_seeds",
    "decode",
    "encode",
    "expand",
    "fixed_seeds",
    "mul_public",
    "neg",
    "new_seed",
    "pack",
    "reconstruct",
    "ring_conv2d",
    "ring_matmul",
    "seeded_share",
    "share",
    "share_from_seeds",
    "sub",
    "trunc_finish",
    "trunc_open",
    "unpack",
]
