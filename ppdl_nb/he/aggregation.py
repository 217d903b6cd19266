"""Federated updates summed under BFV: the aggregator adds, only a key holder decrypts.

Three roles, three different workers: the *clients* (the workers holding the round's
updates) quantise their update to integers (``round(clip(u) * scale)``) and encrypt it
under the key holder's public key, pinned by fingerprint; the *aggregator* adds the
ciphertexts, which it cannot decrypt; the *key holder* decrypts only the sum it is sent
and hands back the sum of the updates, exact (BFV decrypts integers exactly, so no
key-recovery attack from a returned plaintext applies). The notebook sees the sum only.
Trust: aggregator and key holder must not collude (together they could decrypt one
client's update); both follow the protocol (honest but curious).

Privacy-release row: "ciphertext under a key whose secret the receiver does not hold":
what clients send and what the aggregator holds; the sum is the release.

>>> q = quantize(torch.tensor([0.5, -0.25]), scale=4.0, bound=1.0)
>>> q, dequantize(q, scale=4.0)
([2, -1], tensor([ 0.5000, -0.2500]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ppdl_nb.workers.core.codec import Ref

__all__ = ["HEAggregation", "check_range", "dequantize", "quantize"]


def quantize(update: torch.Tensor, *, scale: float, bound: float) -> list[int]:
    """Integers ``round(clamp(u, -bound, bound) * scale)``, flat."""
    return torch.round(update.double().clamp(-bound, bound).reshape(-1) * scale).long().tolist()


def dequantize(total: Sequence[int], *, scale: float) -> torch.Tensor:
    return torch.tensor(list(total), dtype=torch.float64).div(scale).float()


def check_range(plain_modulus: int, *, clients: int, scale: float, bound: float) -> None:
    """ValueError unless a sum of ``clients`` quantised values fits the plaintext space."""
    top = clients * bound * scale
    if top >= plain_modulus // 2:
        raise ValueError(f"{clients} updates of |u| <= {bound} at scale {scale} sum up to "
                         f"{top:.3g}, beyond the plaintext space +-{plain_modulus // 2}: "
                         "lower the scale or the bound")


class HEAggregation:
    """Sum the updates the clients' workers hold, under BFV, through an aggregator.

    Given the workers holding client updates (references to private tensors on each),
    :meth:`aggregate` returns their sum, decrypted by ``key_holder`` only. Plugs into FL
    as a strategy through :meth:`total` (a round's ``RoundUpdates``: ``replies``,
    ``workers``, ``label``). ``scale`` and ``bound``: quantisation (``bound`` clips each
    coordinate; FedAvg updates weighted by rows are larger, raise it accordingly).
    """

    name = "he"
    keep = True
    hold = False

    def __init__(self, *, key_holder: Any, aggregator: Any, scale: float = 2.0 ** 12,
                 bound: float = 64.0) -> None:
        if key_holder is None or aggregator is None or key_holder.name == aggregator.name:
            raise ValueError("HE aggregation needs two different workers: key_holder= (decrypts "
                             "the sum only) and aggregator= (adds ciphertexts it cannot read)")
        self.key_holder, self.aggregator = key_holder, aggregator
        self.scale, self.bound = float(scale), float(bound)
        self.fingerprint: str | None = None
        self._trusting: set[str] = set()
        self.threshold = None

    def allow(self) -> list[str]:
        return []  # nobody fetches a client's sum: it is encrypted where it lies

    def describe(self) -> str:
        return f"BFV sum (aggregator {self.aggregator.name}, key holder {self.key_holder.name})"

    def setup(self, workers: Sequence[Any]) -> str:
        """Keys on the key holder; every client and the aggregator pin its public context."""
        from ppdl_nb.he import worker_steps as steps

        if self.fingerprint is None:
            self.fingerprint = steps.keygen.on(self.key_holder, preset="sum")["fingerprint"]
        for w in [self.aggregator, *workers]:
            if w.name == self.key_holder.name:
                raise ValueError(f"{w.name} is the key holder: it must hold no client update "
                                 "and must not aggregate")
            if w.name not in self._trusting:
                steps.trust.on(w, owner=self.key_holder.name, fingerprint=self.fingerprint)
                self._trusting.add(w.name)
        return self.fingerprint

    def aggregate(self, updates: dict[str, tuple[Any, Ref]], *, label: str) -> torch.Tensor:
        """``updates``: worker name -> (its client, Ref to its update); the decrypted sum."""
        from ppdl_nb.he import worker_steps as steps

        fp = self.setup([w for w, _ in updates.values()])
        for _name, (worker, ref) in sorted(updates.items()):
            steps.encrypt_update.on(worker, update=ref, fingerprint=fp,
                                    aggregator=self.aggregator.name, round=label,
                                    scale=self.scale, bound=self.bound, clients=len(updates))
        return steps.sum_round.on(self.aggregator, round=label, senders=sorted(updates),
                                  key_holder=self.key_holder.name, fingerprint=fp)

    def total(self, updates: Any) -> torch.Tensor:
        """Strategy hook: the sum of a round's kept updates (``fl.train`` with ``keep``)."""
        if getattr(updates, "noise_std", 0.0):
            raise ValueError("HE aggregation adds no DP noise yet: use aggregation='secure' "
                             "for DP-FedAvg, or HE without noise_multiplier")
        held = {name: (updates.workers[name], Ref(reply["update"]["id"]))
                for name, reply in updates.replies.items()}
        return self.aggregate(held, label=str(updates.label or updates.round))
