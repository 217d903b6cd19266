"""Secure aggregation in one process: every client and the server, for tests and teaching.

:func:`simulate` runs the four rounds of :mod:`ppdl_nb.fl.secagg` with clients dropping
out where asked; :func:`message_nbytes` and :func:`upload_bytes` count what a client
sends (the protocol's cost grows with the model only in the masked input).

>>> import torch
>>> ups = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.0])]
>>> simulate(ups, threshold=2, drop_before_masked={1}).tolist()
[3.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ppdl_nb.fl import shamir
from ppdl_nb.fl.secagg import (
    _CIPHERTEXT_BYTES,
    _KEY_BYTES,
    DEFAULT_FRAC_BITS,
    SecAggClient,
    SecAggServer,
)

__all__ = ["message_nbytes", "simulate", "upload_bytes"]


def message_nbytes(message: Any) -> int:
    """Payload bytes of a protocol message: bytes and tensor buffers (ids, keys of dicts
    and the codec's framing are not counted; msgpack adds a few bytes per entry)."""
    if isinstance(message, bytes):
        return len(message)
    if isinstance(message, torch.Tensor):
        return message.numel() * message.element_size()
    if isinstance(message, Mapping):
        return sum(message_nbytes(v) for v in message.values())
    if isinstance(message, list | tuple):
        return sum(message_nbytes(v) for v in message)
    return 0


def upload_bytes(n_clients: int, n_params: int) -> dict[str, int]:
    """Payload bytes one client uploads per round when all ``n_clients`` share keys
    (what :func:`message_nbytes` counts). Only ``masked_input`` grows with the model."""
    return {
        "advertise_keys": 2 * _KEY_BYTES,
        "share_keys": (n_clients - 1) * _CIPHERTEXT_BYTES,
        "masked_input": 8 * n_params,
        "unmask": n_clients * shamir.SHARE_BYTES,
    }


def simulate(
    updates: Sequence[torch.Tensor], threshold: int | None = None,
    drop_before_masked: Iterable[int] = frozenset(),
    drop_before_unmask: Iterable[int] = frozenset(),
    frac_bits: int = DEFAULT_FRAC_BITS, *, drop_before_shares: Iterable[int] = frozenset(),
) -> torch.Tensor:
    """Run all rounds in-process; returns the float64 sum of the surviving clients' updates.

    Clients are numbered by their position in ``updates``; the ``drop_*`` sets name the
    clients that go silent before that round (and stay silent). Survivors are the clients
    whose masked input arrived. Raises :class:`SecAggAbort` below the threshold.
    """
    n = len(updates)
    drops = [set(drop_before_shares), set(drop_before_masked), set(drop_before_unmask)]
    for d in drops:
        if any(not isinstance(i, int) or not 0 <= i < n for i in d):
            raise ValueError(f"dropped clients must be indices in [0, {n}), got {sorted(d)}")
    ids = [f"c{i}" for i in range(n)]
    clients = {c: SecAggClient(c, n, threshold, frac_bits=frac_bits) for c in ids}
    server = SecAggServer(n, threshold, frac_bits=frac_bits)

    def still(alive: list[str], gone: set[int]) -> list[str]:
        return [c for c in alive if int(c[1:]) not in gone]

    public = server.collect_keys([clients[c].advertise_keys() for c in ids])
    alive = still(ids, drops[0])
    inbox = server.route_shares({c: clients[c].share_keys(public) for c in alive})
    alive = still(alive, drops[1])
    request = server.collect_masked(
        [clients[c].masked_input(inbox[c], updates[int(c[1:])]) for c in alive]
    )
    alive = still(alive, drops[2])
    return server.finish(
        [clients[c].unmask(request["survivors"], request["dropped"]) for c in alive]
    )
