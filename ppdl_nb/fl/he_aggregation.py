"""HE aggregation as an FL strategy: clients encrypt, an aggregator adds, a key holder decrypts.

``he`` (:class:`HE`) wraps :class:`ppdl_nb.he.aggregation.HEAggregation`: each worker keeps
its round's update private; it quantises the update, encrypts it under the key holder's
BFV public key (pinned by fingerprint) and sends it to the aggregator, worker to worker;
the aggregator adds the ciphertexts, which it cannot decrypt; the key holder decrypts
only that sum (exactly: BFV) and the notebook receives the sum. Nobody sees an individual
update, as long as the aggregator and the key holder do not collude. Both must be workers
that hold no client data. DP noise is not added yet (use ``secure`` for DP-FedAvg).

>>> HE.name, "key_holder" in HE.__init__.__code__.co_varnames
('he', True)
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb.fl.aggregation import Aggregation, RoundUpdates, aggregation
from ppdl_nb.he.aggregation import HEAggregation

__all__ = ["HE"]


@aggregation
class HE(Aggregation):
    """Sum under BFV: ``HE(key_holder=k, aggregator=a)``, two workers with no client data.

    ``scale`` and ``bound``: each worker's update (its clients' updates weighted by their
    rows) is rounded to multiples of ``1/scale`` and clipped to ``[-bound, bound]`` per
    coordinate, silently (saying so would tell the notebook something about a private
    update): the default bound fits a few thousand rows per worker at learning rates
    near 1. A sum that could overflow BFV's plaintext space is refused up front (lower
    ``scale`` or ``bound`` for many workers).
    """

    def __init__(self, key_holder: Any = None, aggregator: Any = None, *,
                 scale: float = 2.0 ** 12, bound: float = 4096.0) -> None:
        if key_holder is None or aggregator is None:
            raise ValueError("aggregation 'he' needs key_holder=<a worker> (the only one that "
                             "can decrypt, and only sums) and aggregator=<another worker> (adds "
                             "ciphertexts it cannot read), e.g. HE(key_holder=k, aggregator=a) "
                             "with workers launched for the purpose that hold no client data")
        self.inner = HEAggregation(key_holder=key_holder, aggregator=aggregator, scale=scale,
                                   bound=bound)

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        for name in updates.replies:
            if name in (self.inner.key_holder.name, self.inner.aggregator.name):
                raise ValueError(f"{name} holds client data: the key holder and the aggregator "
                                 "of HE aggregation must hold none")
        return self.inner.total(updates)

    def describe(self) -> str:
        return self.inner.describe()

    def __repr__(self) -> str:
        return (f"HE(key_holder={self.inner.key_holder.name!r}, "
                f"aggregator={self.inner.aggregator.name!r})")
