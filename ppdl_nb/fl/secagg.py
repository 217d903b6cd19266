"""Secure aggregation with pairwise and self masks (Bonawitz et al., CCS 2017), as pure logic.

Why: in federated averaging the server only needs the *sum* of the clients' updates, yet
it sees every update unless they are masked. Each pair of clients ``u < v`` agrees on a
seed ``s_uv`` (X25519 + HKDF) and expands it into a uniform ring vector; ``u`` adds it and
``v`` subtracts it, so the masks cancel in the sum. A second, private self-mask ``b_u``
stops the server from learning ``x_u`` when it is told, later, that ``u`` dropped out.
Both ``b_u`` and the mask key ``s_u_sk`` are Shamir-shared t-out-of-n, so the server can
remove the masks of clients that drop out: for every client it asks the survivors for
shares of ``b_v`` (``v`` survived) *or* of ``s_v_sk`` (``v`` dropped), never both.

Arithmetic is in the ring Z_2^64 (int64 wrap-around, as in ``ppdl_nb.mpc.ring``); updates
are fixed point with ``frac_bits`` fractional bits, so the decoded sum is exact up to
``n * 2^-(frac_bits+1)`` per element. Mask streams come from the AES-CTR
:class:`~ppdl_nb.mpc.prg.PRG`; every key and seed comes from :func:`new_seed`, so a run is
reproducible inside ``fixed_seeds`` (tests only). Client ids are strings (worker names);
Shamir points are derived from them by hashing, and the mask sign uses their order.

Share messages are encrypted end to end (AES-GCM under a key from the clients' X25519
"c" keys), so a server may relay them (:meth:`SecAggServer.route_shares`) without
learning them. Not implemented: signatures and the consistency round of the actively
secure variant, so the server is trusted to follow the protocol (honest but curious).

Rounds and messages (all plain dicts of str, bytes and int64 tensors, codec-safe):

0. ``client.advertise_keys() -> {"id", "c_pk": 32 B, "s_pk": 32 B}``;
   ``server.collect_keys(adverts) -> {id: {"c_pk", "s_pk"}}`` (broadcast to all)
1. ``client.share_keys(public_keys) -> {recipient_id: ciphertext}``;
   ``server.route_shares({sender_id: outbox}) -> {recipient_id: {sender_id: ciphertext}}``
2. ``client.masked_input(inbox, update) -> {"id", "y": int64 tensor}``;
   ``server.collect_masked(messages) -> {"survivors": [ids], "dropped": [ids]}`` (broadcast)
3. ``client.unmask(survivors, dropped) -> {"id", "b": {v: share}, "s_sk": {v: share}}``;
   ``server.finish(responses) -> float64 tensor``, the sum of the survivors' updates

:func:`ppdl_nb.fl.secagg_sim.simulate` runs all four rounds in one process.

>>> SecAggServer(5).threshold
3
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ppdl_nb.fl import shamir
from ppdl_nb.mpc.encoding import decode, encode
from ppdl_nb.mpc.prg import PRG, SEED_BYTES, new_seed
from ppdl_nb.mpc.ring import check_ring

__all__ = [
    "DEFAULT_FRAC_BITS", "SecAggAbort", "SecAggClient", "SecAggServer", "UnmaskRefused",
    "decode_sum", "default_threshold", "encode_update",
]

DEFAULT_FRAC_BITS = 20
_KEY_BYTES = 32
_TAG_BYTES = 16
_CIPHERTEXT_BYTES = 2 * shamir.SHARE_BYTES + _TAG_BYTES


class SecAggAbort(RuntimeError):
    """Fewer clients than the threshold took part in a round: the protocol cannot go on."""


class UnmaskRefused(PermissionError):
    """A client refused an unmasking request that would reveal a masked input."""


def default_threshold(n_clients: int) -> int:
    """``floor(n/2) + 1``: a strict majority of the clients."""
    return n_clients // 2 + 1


def _check_threshold(n_clients: int, threshold: int | None) -> int:
    if not isinstance(n_clients, int) or isinstance(n_clients, bool) or n_clients < 2:
        raise ValueError(f"secure aggregation needs n_clients >= 2, got {n_clients!r}")
    t = default_threshold(n_clients) if threshold is None else threshold
    if not isinstance(t, int) or isinstance(t, bool) or not 2 <= t <= n_clients:
        raise ValueError(
            f"threshold must be an int with 2 <= t <= n_clients = {n_clients}, got {t!r}; "
            f"the default is floor(n/2)+1 = {default_threshold(n_clients)}"
        )
    return t


def _abort_below(count: int, threshold: int, what: str) -> None:
    if count < threshold:
        raise SecAggAbort(
            f"only {count} clients {what}, below the threshold t = {threshold}: the protocol "
            "aborts (the masks of the missing clients could not be removed safely)"
        )


def encode_update(update: torch.Tensor, frac_bits: int = DEFAULT_FRAC_BITS,
                  n_clients: int = 1) -> torch.Tensor:
    """Encode a float update as int64 fixed point, with room for a sum of ``n_clients``.

    Raises ValueError if ``n_clients`` such values could overflow the signed 64-bit sum,
    i.e. unless ``|x| * 2^frac_bits * n_clients < 2^63``.
    """
    if not isinstance(update, torch.Tensor) or not update.is_floating_point():
        raise TypeError(f"an update must be a float tensor, got {update!r:.60}")
    enc = encode(update.detach().cpu(), frac_bits)
    limit = (2**63 - 1) // max(1, n_clients)
    if enc.numel() and int(enc.abs().max()) > limit:
        raise ValueError(
            f"update value {float(update.abs().max()):.6g} could overflow the sum of "
            f"{n_clients} clients in Z_2^64 with {frac_bits} fractional bits: need "
            f"|x| < 2^(63 - {frac_bits}) / {n_clients} = {limit / 2**frac_bits:.6g}. "
            "Clip or scale the updates, or use fewer frac_bits."
        )
    return enc


def decode_sum(total: torch.Tensor, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Decode a ring sum of encoded updates to float64 (exact for |sum| < 2^53 ulps)."""
    return decode(check_ring(total, "sum"), frac_bits)


def _check_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id:
        raise TypeError(f"client ids must be non-empty strings, got {client_id!r}")
    return client_id


def _point(client_id: str) -> int:
    """The client's Shamir x-coordinate: 1 + SHA-256(id), distinct for distinct ids."""
    digest = hashlib.sha256(b"ppdl-secagg/point/" + client_id.encode()).digest()
    return 1 + int.from_bytes(digest, "big")


def _ids(*ids: str) -> bytes:
    return b"".join(len(i.encode()).to_bytes(4, "big") + i.encode() for i in ids)


def _kdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _public(sk: X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _pair_seed(sk: X25519PrivateKey, peer_pk: bytes, u: str, v: str) -> bytes:
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    return _kdf(shared, b"ppdl-secagg/mask" + _ids(*sorted((u, v))))


def _mask(seed: bytes, label: bytes, shape: Sequence[int]) -> torch.Tensor:
    return PRG(seed, label=b"secagg/" + label).int64(shape)


def _aead(sk: X25519PrivateKey, peer_pk: bytes, sender: str, recipient: str) -> AESGCM:
    # one key per (sender, recipient) direction, used for exactly one message: zero nonce ok
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    return AESGCM(_kdf(shared, b"ppdl-secagg/enc" + _ids(sender, recipient)))


def _check_keys(public_keys: Mapping[str, Mapping[str, bytes]]) -> dict[str, dict[str, bytes]]:
    if not isinstance(public_keys, Mapping):
        raise TypeError("public keys must be a dict {client_id: {'c_pk': ..., 's_pk': ...}}")
    keys, seen = {}, set()
    for cid, entry in public_keys.items():
        _check_id(cid)
        pair = {k: entry.get(k) if isinstance(entry, Mapping) else None for k in ("c_pk", "s_pk")}
        if any(not isinstance(k, bytes) or len(k) != _KEY_BYTES for k in pair.values()):
            raise ValueError(f"client {cid!r} must advertise 32-byte 'c_pk' and 's_pk' keys")
        if pair["c_pk"] in seen or pair["s_pk"] in seen or pair["c_pk"] == pair["s_pk"]:
            raise ValueError(f"client {cid!r} reuses a public key: keys must be distinct")
        seen.update(pair.values())
        keys[cid] = pair
    return keys


class SecAggClient:
    """One logical client's state across the four rounds (fresh keys per instance: one use).

    >>> c = SecAggClient("alice", n_clients=3)
    >>> sorted(c.advertise_keys())
    ['c_pk', 'id', 's_pk']
    """

    def __init__(self, client_id: str, n_clients: int, threshold: int | None = None, *,
                 frac_bits: int = DEFAULT_FRAC_BITS) -> None:
        self.id = _check_id(client_id)
        self.n_clients = n_clients
        self.threshold = _check_threshold(n_clients, threshold)
        self.frac_bits = frac_bits
        self._c_sk = X25519PrivateKey.from_private_bytes(new_seed())
        self._s_sk_raw = new_seed()
        self._s_sk = X25519PrivateKey.from_private_bytes(self._s_sk_raw)
        self._b = new_seed()
        self._keys: dict[str, dict[str, bytes]] = {}
        self._held: dict[str, tuple[bytes, bytes]] = {}  # sender -> (b share, s_sk share)
        self._stage = 0

    def __repr__(self) -> str:
        return f"SecAggClient({self.id!r}, t={self.threshold}, n={self.n_clients})"

    def _enter(self, stage: int, name: str) -> None:
        if self._stage != stage:
            raise RuntimeError(
                f"client {self.id!r}: {name}() is round {stage} but the client is at round "
                f"{self._stage}; rounds run once each, in order (make a new client per run)"
            )
        self._stage = stage + 1

    def advertise_keys(self) -> dict[str, Any]:
        """Round 0: the public keys to broadcast."""
        self._enter(0, "advertise_keys")
        return {"id": self.id, "c_pk": _public(self._c_sk), "s_pk": _public(self._s_sk)}

    def share_keys(self, public_keys: Mapping[str, Mapping[str, bytes]]) -> dict[str, bytes]:
        """Round 1: Shamir-share ``b_u`` and ``s_u_sk``; one ciphertext per other client."""
        self._enter(1, "share_keys")
        keys = _check_keys(public_keys)
        own = keys.get(self.id)
        if own != {"c_pk": _public(self._c_sk), "s_pk": _public(self._s_sk)}:
            raise ValueError(f"the key list does not hold client {self.id!r}'s own keys")
        if len(keys) > self.n_clients:
            raise ValueError(f"{len(keys)} clients advertised keys, n_clients is {self.n_clients}")
        _abort_below(len(keys), self.threshold, "advertised keys")
        self._keys = keys
        prg = PRG(new_seed(), label=b"secagg/shamir")
        points = {v: _point(v) for v in keys}
        b_sh = shamir.split(self._b, points.values(), self.threshold, prg)
        s_sh = shamir.split(self._s_sk_raw, points.values(), self.threshold, prg)
        out = {}
        for v, x in points.items():
            b, s = shamir.share_to_bytes(b_sh[x]), shamir.share_to_bytes(s_sh[x])
            if v == self.id:
                self._held[v] = (b, s)
            else:
                aead = _aead(self._c_sk, keys[v]["c_pk"], self.id, v)
                out[v] = aead.encrypt(bytes(12), b + s, _ids(self.id, v))
        return out

    def masked_input(self, inbox: Mapping[str, bytes], update: torch.Tensor) -> dict[str, Any]:
        """Round 2: decrypt the shares sent to us; return ``y_u`` = masked encoded update."""
        self._enter(2, "masked_input")
        for sender, ct in inbox.items():
            if sender == self.id or sender not in self._keys:
                raise ValueError(f"share message from unknown client {sender!r}")
            aead = _aead(self._c_sk, self._keys[sender]["c_pk"], sender, self.id)
            try:
                plain = aead.decrypt(bytes(12), ct, _ids(sender, self.id))
            except (InvalidTag, TypeError, ValueError):
                raise ValueError(f"share message from {sender!r} failed authentication") from None
            k = shamir.SHARE_BYTES
            self._held[sender] = (plain[:k], plain[k:])
        _abort_below(len(self._held), self.threshold, "shared their keys with this client")
        y = encode_update(update, self.frac_bits, self.n_clients)
        y = y + _mask(self._b, b"self", y.shape)
        for v in sorted(set(self._held) - {self.id}):
            seed = _pair_seed(self._s_sk, self._keys[v]["s_pk"], self.id, v)
            m = _mask(seed, b"pair", y.shape)
            y = y + m if v > self.id else y - m
        return {"id": self.id, "y": y}

    def unmask(self, survivors: Iterable[str], dropped: Iterable[str]) -> dict[str, Any]:
        """Round 3: shares of ``b_v`` for survivors and of ``s_v_sk`` for dropped clients.

        Refuses (:class:`UnmaskRefused`) any request naming a client in both sets, or this
        client as dropped: answering it would let the server unmask that client's input.
        Answers only once.
        """
        alive, gone = set(survivors), set(dropped)
        both = alive & gone
        if both:
            raise UnmaskRefused(
                f"client {self.id!r} refuses to reveal shares of both b and s_sk for "
                f"{sorted(both)}: together they unmask that client's input"
            )
        if self.id in gone:
            raise UnmaskRefused(f"client {self.id!r} is listed as dropped but sent its input")
        self._enter(3, "unmask")
        unknown = (alive | gone) - set(self._held)
        if unknown or self.id not in alive:
            raise ValueError(
                f"unmask request names clients that did not share keys with {self.id!r}: "
                f"{sorted(unknown)}, or omits this client from the survivors"
            )
        _abort_below(len(alive), self.threshold, "sent masked inputs")
        return {
            "id": self.id,
            "b": {v: self._held[v][0] for v in sorted(alive)},
            "s_sk": {v: self._held[v][1] for v in sorted(gone)},
        }


class SecAggServer:
    """The aggregator: routes messages and removes the masks from the sum.

    It learns the sum of the survivors' updates and who dropped, nothing else (honest but
    curious: it is trusted to send every client the same lists).
    """

    def __init__(self, n_clients: int, threshold: int | None = None, *,
                 frac_bits: int = DEFAULT_FRAC_BITS) -> None:
        self.n_clients = n_clients
        self.threshold = _check_threshold(n_clients, threshold)
        self.frac_bits = frac_bits
        self.keys: dict[str, dict[str, bytes]] = {}
        self.shared: list[str] = []  # U2
        self.inputs: dict[str, torch.Tensor] = {}  # U3 -> y
        self.dropped: list[str] = []

    def collect_keys(self, adverts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, bytes]]:
        """Round 0: gather the clients' public keys; returns the list to broadcast."""
        entries: dict[str, Mapping[str, Any]] = {}
        for a in adverts:
            cid = _check_id(a.get("id"))
            if cid in entries:
                raise ValueError(f"client {cid!r} advertised keys twice")
            entries[cid] = a
        if len(entries) > self.n_clients:
            raise ValueError(f"{len(entries)} clients advertised keys, expected {self.n_clients}")
        if len({_point(c) for c in entries}) != len(entries):
            raise ValueError("two client ids hash to the same Shamir point; rename one")
        self.keys = _check_keys(entries)
        _abort_below(len(self.keys), self.threshold, "advertised keys")
        return {c: dict(k) for c, k in self.keys.items()}

    def route_shares(self, outboxes: Mapping[str, Mapping[str, bytes]]) -> dict[str, dict]:
        """Round 1: forward each client's encrypted shares; records who shared (U2)."""
        for u, box in outboxes.items():
            expected = set(self.keys) - {u}
            if u not in self.keys or set(box) != expected:
                raise ValueError(f"client {u!r} must send one share message to each of the "
                                 f"other {len(expected)} clients that advertised keys")
        self.shared = sorted(outboxes)
        _abort_below(len(self.shared), self.threshold, "shared their keys")
        return {v: {u: outboxes[u][v] for u in self.shared if u != v} for v in self.shared}

    def collect_masked(self, messages: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Round 2: gather the masked inputs; returns the unmask request to broadcast."""
        inputs: dict[str, torch.Tensor] = {}
        for m in messages:
            cid = _check_id(m.get("id"))
            if cid not in self.shared or cid in inputs:
                raise ValueError(f"unexpected or repeated masked input from {cid!r}")
            y = check_ring(m.get("y"), f"masked input of {cid!r}")
            if inputs and y.shape != next(iter(inputs.values())).shape:
                raise ValueError(f"masked input of {cid!r} has shape {tuple(y.shape)}, "
                                 "unlike the others")
            inputs[cid] = y
        _abort_below(len(inputs), self.threshold, "sent masked inputs")
        self.inputs = inputs
        self.dropped = [v for v in self.shared if v not in inputs]
        return {"survivors": sorted(inputs), "dropped": list(self.dropped)}

    def finish(self, responses: Iterable[Mapping[str, Any]]) -> torch.Tensor:
        """Round 3: rebuild the seeds from >= t responses; return the float64 sum."""
        got: dict[str, Mapping[str, Any]] = {}
        asked = (set(self.inputs), set(self.dropped))
        for r in responses:
            cid = _check_id(r.get("id"))
            if cid not in self.inputs or cid in got:
                raise ValueError(f"unexpected or repeated unmask response from {cid!r}")
            if (set(r.get("b") or ()), set(r.get("s_sk") or ())) != asked:
                raise ValueError(f"unmask response from {cid!r} does not match the request")
            got[cid] = r
        _abort_below(len(got), self.threshold, "answered the unmask request")
        chosen = sorted(got, key=_point)[: self.threshold]
        lam = shamir.lagrange_at_zero([_point(c) for c in chosen])

        def rebuild(kind: str, v: str) -> bytes:
            pts = {_point(c): shamir.share_from_bytes(got[c][kind][v]) for c in chosen}
            return shamir.reconstruct(pts, self.threshold, SEED_BYTES, lam)

        ys = list(self.inputs.values())
        shape, z = ys[0].shape, ys[0].clone()
        for y in ys[1:]:
            z = z + y  # int64 addition wraps: arithmetic in Z_2^64
        for u in self.inputs:
            z = z - _mask(rebuild("b", u), b"self", shape)
        for v in self.dropped:
            sk = X25519PrivateKey.from_private_bytes(rebuild("s_sk", v))
            if _public(sk) != self.keys[v]["s_pk"]:
                raise ValueError(f"shares of {v!r}'s mask key are inconsistent with its s_pk")
            for u in self.inputs:  # u's y holds +mask if v > u, else -mask
                m = _mask(_pair_seed(sk, self.keys[u]["s_pk"], u, v), b"pair", shape)
                z = z - m if v > u else z + m
        return decode_sum(z, self.frac_bits)
