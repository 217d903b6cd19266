"""Homomorphic encryption: compute on ciphertexts that only the key owner can read.

* :mod:`.keys`: contexts, presets, fingerprints; the secret key never leaves its worker.
* :mod:`.plan`: which models HE can evaluate (affine layers and squares).
* :mod:`.inference`: CKKS inference, batched (one image per slot) or one image per
  request (:mod:`.packed`: a few ciphertexts, baby-step giant-step diagonals); slots
  past the logits are zeroed before a result leaves the model owner (what they would
  leak otherwise is written there).
* :mod:`.precision`: how far each encrypted layer is from plaintext (for pictures:
  :mod:`ppdl_nb.viz.he_plots`).
* :mod:`.aggregation`: FL updates summed under BFV; only a named key holder decrypts,
  and only the sum (the FL strategy ``HE``, registered as ``"he"``, is in
  :mod:`ppdl_nb.fl.he_aggregation`).
* :mod:`.remote`: the notebook's typed API over the worker steps (:mod:`.worker_steps`).

Needs the ``he`` extra (TenSEAL). Privacy release: a ciphertext under a key whose secret
the receiver does not hold reveals nothing to the receiver; what the key owner decrypts
(its predictions, the sum of updates) is the release. CKKS without circuit privacy can
leak something about the model to the data owner (the decrypted noise depends on the
weights), and a CKKS decryption must never reach a party holding the ciphertext.
"""

from ppdl_nb.he.keys import (
    PRESETS,
    CiphertextMismatchError,
    HEKeyError,
    fingerprint,
    has_tenseal,
    make_context,
)
from ppdl_nb.he.plan import UnsupportedLayerError, compile_plan

__all__ = [
    "PRESETS",
    "CiphertextMismatchError",
    "HEKeyError",
    "UnsupportedLayerError",
    "compile_plan",
    "fingerprint",
    "has_tenseal",
    "make_context",
]
