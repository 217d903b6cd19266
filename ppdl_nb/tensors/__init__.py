"""The tensor API: pointers to remote tensors and models, fixed-precision encoding and
secret-shared tensors, and the chains they form (fixed precision > shared > pointers).

Each wrapper integrates with torch through ``__torch_function__`` (torch is never
patched) and registers its own link with :func:`chain_of`.

* :mod:`.pointer`: :class:`PointerTensor`, :class:`ModulePointer`, :func:`send`.
* :mod:`.remote_methods`: the torch.Tensor methods a pointer offers.
* :mod:`.fixed`: :class:`FixedPrecisionTensor`, :func:`fix_precision`, :func:`share`;
  :mod:`.fixed_nonlinear`: its comparisons, ReLU, max/argmax and pooling (secure
  comparison among the parties when it is shared).
* :mod:`.shared`: :class:`SharedTensor` (SPDZ), driving the party routines of
  :mod:`.spdz` (one generator per operation, run by one runner on every party).
* :mod:`.private_model`: :func:`~ppdl_nb.tensors.private_model.encrypt` (``ppdl_nb.encrypt``):
  a torch model with secret-shared weights, run layer by layer on shared inputs.
* :mod:`.chain`: :func:`chain_of`, :func:`chain_text`, :class:`Link`.

>>> import torch, ppdl_nb.tensors as tensors
>>> print(tensors.chain_text(tensors.fix_precision(torch.ones(2))))
FixedPrecisionTensor me [shape (2,), 16 fractional bits]
> Tensor me [shape (2,), int64]
"""

from ppdl_nb.tensors import fixed_nonlinear  # noqa: F401  (registers comparisons, ReLU, max)
from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.tensors.fixed import FixedPrecisionTensor, fix_precision, share
from ppdl_nb.tensors.pointer import ModulePointer, Pointer, PointerTensor, pointer_to, send
from ppdl_nb.tensors.shared import SharedTensor

__all__ = [
    "FixedPrecisionTensor",
    "Link",
    "ModulePointer",
    "Pointer",
    "PointerTensor",
    "SharedTensor",
    "chain_of",
    "chain_text",
    "fix_precision",
    "pointer_to",
    "send",
    "share",
]
