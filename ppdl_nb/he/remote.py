"""The notebook's side: typed calls for encrypted inference between two workers.

>>> # fp = make_keys(alice, rotations=True)          # alice: the data owner
>>> # pin(bob, owner=alice, fingerprint=fp)          # bob: the model owner
>>> # run = private_predict(x_ptr, model_ptr, fingerprint=fp)
>>> # run.logits: a pointer to alice's logits, private to alice
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppdl_nb.he import worker_steps as steps
from ppdl_nb.tensors.pointer import PointerTensor, wrap_reply
from ppdl_nb.workers.core.codec import Ref

__all__ = ["InferenceRun", "make_keys", "pin", "private_predict"]


def make_keys(owner: Any, *, preset: str = "cnn", rotations: bool = False) -> str:
    """Keys made and kept on ``owner``'s worker; returns the fingerprint to pin elsewhere."""
    return steps.keygen.on(owner, preset=preset, rotations=rotations)["fingerprint"]


def pin(evaluator: Any, *, owner: Any, fingerprint: str) -> int:
    """``evaluator`` fetches ``owner``'s public context itself and pins it; returns its bytes."""
    return steps.trust.on(evaluator, owner=owner.name, fingerprint=fingerprint)["bytes"]


@dataclass
class InferenceRun:
    """Logits (a pointer, private to the data owner) and what the run cost."""

    logits: PointerTensor
    packing: str
    seconds: float
    bytes_sent: int
    bytes_received: int
    layers: list[dict[str, Any]]
    encrypt_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    masked: bool = True  # slots past the logits zeroed by the model owner before return


def private_predict(data: PointerTensor, model: Any, *, fingerprint: str,
                    packing: str = "auto", allow: list[str] | None = None,
                    mask: bool | None = None) -> InferenceRun:
    """Encrypted inference of ``model`` (a pointer on the model owner) on ``data`` (a pointer
    on the data owner, whose key ``fingerprint`` is). The model owner sees ciphertexts only;
    the data owner decrypts only the logits, kept private there (readable by ``allow``).

    ``mask``: zero the slots past the logits. Batched results, and per-image results of
    two or more layers, always are (at no level); a one-layer plan per image spends one
    more level on it: None masks when the keys have that level, False declines.
    ``run.masked`` says whether it was done."""
    owner, model_owner = data.location, model.location
    reply = steps.infer.on(owner, data=Ref(data.id_at_location), model_owner=model_owner.name,
                           model=Ref(model.id_at_location), fingerprint=fingerprint,
                           packing=packing, allow=allow, mask=mask)
    logits = wrap_reply(owner, reply.pop("logits"), owner.context)
    return InferenceRun(logits, reply["packing"], reply["seconds"], reply["bytes_sent"],
                        reply["bytes_received"], reply["layers"], reply["encrypt_seconds"],
                        reply["decrypt_seconds"], reply["masked"])
