"""Pairwise-mask secure aggregation on the worker: one SecAgg client per logical client.

A worker that trained its clients for a round (``fl.train`` with ``hold=``) keeps each
client's update here, unsent. These steps then run Bonawitz et al.'s rounds for all of
the worker's clients at once (:mod:`ppdl_nb.fl.secagg` holds the protocol math): public
keys out, encrypted Shamir shares relayed by the notebook, masked inputs out, and
finally the shares the notebook needs to remove the masks. The notebook, acting as
the server, learns the sum of the updates of clients that sent masked inputs, and
who dropped out; no single update.

>>> # notebook: adverts = keys.on(alice, round="r1", n_clients=6, threshold=4)
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb.dp import noise
from ppdl_nb.fl.secagg import SecAggClient
from ppdl_nb.fl.worker_steps import held
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.policy import PUBLIC
from ppdl_nb.workers.core.worker import Worker

__all__: list[str] = []  # protocol steps only; they register themselves


def _round(worker: Worker, round: str) -> dict[str, Any]:
    try:
        return held(worker)[round]
    except KeyError:
        raise KeyError(f"{worker.name} holds no client updates for round {round!r}; run "
                       "fl.train with hold= first (the worker may have restarted)") from None


@protocol_step("secagg.keys")
def keys(worker: Worker, caller: str, *, round: str, n_clients: int, threshold: int
         ) -> list[dict[str, Any]]:
    """Round 0: fresh key pairs for each held client; their public keys."""
    state = _round(worker, round)
    state["clients"] = {cid: SecAggClient(cid, n_clients, threshold)
                        for cid in state["updates"]}
    state["parties"] = n_clients
    return [c.advertise_keys() for c in state["clients"].values()]


@protocol_step("secagg.share")
def share(worker: Worker, caller: str, *, round: str, public_keys: dict
          ) -> dict[str, dict[str, bytes]]:
    """Round 1: each client's Shamir shares of its seeds, encrypted to each recipient."""
    clients = _round(worker, round)["clients"]
    return {cid: c.share_keys(public_keys) for cid, c in clients.items()}


@protocol_step("secagg.masked")
def masked(worker: Worker, caller: str, *, round: str, inboxes: dict,
           noise_std: float = 0.0) -> list[dict[str, Any]]:
    """Round 2: each client's masked update (with its part of the DP noise, if any)."""
    state = _round(worker, round)
    # row 'secure_aggregation': each update leaves masked, as a summand of the round's sum
    worker.declare_release("secure_aggregation", policies=[state.get("policy", PUBLIC)],
                           parties=state.get("parties", 0))
    out = []
    for cid, client in state["clients"].items():
        update: torch.Tensor = state["updates"].pop(cid)
        if noise_std:
            update = update + noise.gaussian_noise(update.shape, noise_std)
        out.append(client.masked_input(inboxes.get(cid, {}), update))
    return out


@protocol_step("secagg.unmask")
def unmask(worker: Worker, caller: str, *, round: str, survivors: list[str],
           dropped: list[str]) -> list[dict[str, Any]]:
    """Round 3: shares of survivors' self-mask seeds and of dropped clients' mask keys."""
    state = held(worker).pop(round, None)
    if state is None:
        raise KeyError(f"{worker.name} has no SecAgg round {round!r}")
    return [c.unmask(survivors, dropped) for cid, c in state["clients"].items()
            if cid in survivors]
