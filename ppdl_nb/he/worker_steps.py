"""Homomorphic encryption on the workers: keys stay home, ciphertexts travel as bytes.

Roles: a *key owner* (the data owner for inference, a named key holder for aggregation)
runs ``he.keygen`` and keeps the secret key in its worker state; nothing ever sends it.
An *evaluator* (the model owner, the aggregator, the FL clients) runs ``he.trust``: it
fetches the public context from the key owner itself, worker to worker, and checks it
against the fingerprint it was told, so the notebook cannot substitute its own key.
Ciphertexts cross the wire as TenSEAL's serialized bytes (never pickle), tagged with the
fingerprint of their context; a step refuses bytes under any other fingerprint.

Inference: ``he.infer`` on the data owner encrypts its private rows, streams them to the
model owner (``he.open``, ``he.absorb``, ``he.finish``), decrypts only the logits that
come back and keeps them private, readable by whom it allows, never by the model owner
(a party holding ciphertexts must not see CKKS decryptions of them: Li and Micciancio's
attack recovers the key from them). Aggregation: see :mod:`ppdl_nb.he.aggregation`.

>>> keygen.name, trust.name, infer.name
('he.keygen', 'he.trust', 'he.infer')
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import torch

from ppdl_nb.he import inference as inf
from ppdl_nb.he import keys, packed
from ppdl_nb.he.plan import compile_plan, features_from_description, image_shape, windows
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.worker import Worker

__all__ = ["absorb", "finish", "infer", "keygen", "open_session", "public_context", "trust"]

_sessions = itertools.count()


def he_state(worker: Worker) -> dict[str, Any]:
    return worker.state.setdefault("he", {"keys": {}, "public": {}, "trusted": {},
                                          "sessions": {}, "rounds": {}, "opened": set()})


def _held(worker: Worker, table: str, fingerprint: str, missing: str, fix: str) -> Any:
    got = he_state(worker)[table].get(fingerprint)
    if got is None:
        raise keys.HEKeyError(f"{worker.name} {missing} with fingerprint {fingerprint[:16]}...: "
                              f"{fix}")
    return got


def own_context(worker: Worker, fingerprint: str) -> Any:
    """The secret context ``fingerprint`` made on this worker, or HEKeyError."""
    return _held(worker, "keys", fingerprint, "holds no secret key",
                 "only the party that ran he.keygen can decrypt; use the fingerprint that "
                 "keygen returned there")


def trusted(worker: Worker, fingerprint: str) -> tuple[str, Any]:
    """(owner, public context) pinned on this worker by ``he.trust``, or HEKeyError."""
    return _held(worker, "trusted", fingerprint, "has not pinned a public context",
                 "run he.trust on it with the key owner's name and fingerprint first")


def stored_tensor(worker: Worker, ref: Any, what: str) -> torch.Tensor | torch.nn.Module:
    if not isinstance(ref, Ref):
        raise TypeError(f"{what} must be a reference to an object held by {worker.name}")
    return worker.resolve(ref, what, kind=(torch.Tensor, torch.nn.Module))


@protocol_step("he.keygen")
def keygen(worker: Worker, caller: str, *, preset: str = "cnn", rotations: bool = False
           ) -> dict[str, Any]:
    """KEY OWNER: a fresh key pair kept here; returns the public context's fingerprint."""
    ctx = keys.make_context(preset, rotations=rotations)
    public = keys.public_bytes(ctx)
    fp = keys.fingerprint(public)
    state = he_state(worker)
    state["keys"][fp], state["public"][fp] = ctx, public
    return {"fingerprint": fp, "owner": worker.name, "preset": preset, "bytes": len(public)}


#: bytes per message part (messages carry bytes in their header, capped at 16 MiB)
PART = 8 << 20


@protocol_step("he.public_context")
def public_context(worker: Worker, caller: str, *, fingerprint: str, part: int = 0
                   ) -> dict[str, Any]:
    """KEY OWNER: part ``part`` of the public context (no secret key) with this fingerprint."""
    own_context(worker, fingerprint)
    data = he_state(worker)["public"][fingerprint]
    return {"data": data[part * PART:(part + 1) * PART], "parts": -(-len(data) // PART)}


@protocol_step("he.trust")
def trust(worker: Worker, caller: str, *, owner: str, fingerprint: str) -> dict[str, Any]:
    """EVALUATOR: fetch ``owner``'s public context directly and pin it by ``fingerprint``."""
    if fingerprint in he_state(worker)["keys"]:
        return {"fingerprint": fingerprint, "owner": worker.name, "bytes": 0}
    peer = worker.client_for(owner)
    first = public_context.on(peer, fingerprint=fingerprint)
    data = first["data"] + b"".join(
        public_context.on(peer, fingerprint=fingerprint, part=i)["data"]
        for i in range(1, first["parts"]))
    ctx = keys.load_public(data, fingerprint)
    he_state(worker)["trusted"][fingerprint] = (owner, ctx)
    return {"fingerprint": fingerprint, "owner": owner, "bytes": len(data)}


@protocol_step("he.open")
def open_session(worker: Worker, caller: str, *, model: Any, fingerprint: str, batch: int,
                 shape: list, packing: str = "auto", mask: bool | None = None
                 ) -> dict[str, Any]:
    """MODEL OWNER: start evaluating ``model`` on ``caller``'s ciphertexts under its key.

    ``shape``: one input's shape (public), e.g. [1, 28, 28] or [784]. ``mask``: zero the
    slots past the logits (batched, and per image after two or more layers: always, at
    no level; a one-layer plan per image: one more level, so None means "if the context
    has it", True insists, False declines).
    """
    owner, ctx = trusted(worker, fingerprint)
    if owner != caller:
        raise keys.HEKeyError(f"context {fingerprint[:16]}... belongs to {owner}, not {caller}: "
                              "a data owner evaluates under its own key only")
    module = stored_tensor(worker, model, "model")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"model must reference a module on {worker.name}")
    plan = compile_plan(module)
    image, n_features = _input_geometry(plan, [int(v) for v in shape])
    depth = plan.depth
    levels = ctx.seal_context().data.first_context_data().chain_index()
    if depth > levels:
        raise ValueError(f"the model needs {depth} multiplicative levels, the context has "
                         f"{levels}: make keys with a deeper preset (he.keygen preset='cnn') or "
                         "use fewer layers")
    if packing == "auto":
        packing = _auto_packing(ctx, plan, n_features, batch, image)
    if packing == "batched":
        if batch > ctx.seal_context().data.first_context_data().parms().poly_modulus_degree() // 2:
            raise ValueError("a batched session holds at most one image per slot (4,096 with "
                             "N=8192); split the batch")
        session: Any = inf.BatchedSession(ctx, plan, batch, n_features)
    elif packing == "per_image":
        session = _per_image_session(worker, ctx, fingerprint, plan, image, mask)
    else:
        raise ValueError(f"packing must be 'auto', 'batched' or 'per_image', not {packing!r}")
    sid = f"s{next(_sessions)}"
    he_state(worker)["sessions"][sid] = (caller, fingerprint, session)
    return {"session": sid, "packing": packing, "outputs": plan.outputs,
            "layers": plan.describe(), "masked": session.mask,
            "layout": dict(vars(session.model.lay)) if packing == "per_image" else None}


def _per_image_session(worker: Worker, ctx: Any, fingerprint: str, plan: Any,
                       image: tuple[int, int], mask: bool | None) -> Any:
    if not ctx.has_galois_keys():
        raise ValueError("per-image packing rotates: make keys with he.keygen(rotations=True)")
    levels = ctx.seal_context().data.first_context_data().chain_index()
    lay = packed.first_layout(plan, image, ctx.seal_context().data.first_context_data()
                              .parms().poly_modulus_degree() // 2)
    if len(plan.layers) == 1 and mask and plan.depth + 1 > levels:
        raise ValueError(f"masking this one-layer result takes one more level "
                         f"({plan.depth + 1}); the context has {levels}: make keys with a "
                         "deeper preset, or use packing='batched' (masked at no level)")
    cache = he_state(worker).setdefault("packed", {})
    return inf.PerImageSession(packed.cached_model(
        cache, ctx, fingerprint, plan, lay,
        mask=plan.depth + 1 <= levels if mask is None else bool(mask)))


def _auto_packing(ctx: Any, plan: Any, n_features: int, batch: int,
                  image: tuple[int, int]) -> str:
    """The packing the cost model expects to be faster (per image needs Galois keys)."""
    first = plan.layers[0]
    nz = int((first.weight != 0).sum()) * (n_features // max(first.weight[0].numel(), 1)
                                           if first.kind == "conv" else 1)
    nz += sum(int((la.weight != 0).sum()) for la in plan.layers[1:] if la.weight is not None)
    shape = [n_features] + [la.weight.shape[0] for la in plan.layers if la.kind != "square"]
    if not ctx.has_galois_keys():
        return "batched"
    try:
        lay = packed.first_layout(plan, image, ctx.seal_context().data.first_context_data()
                                  .parms().poly_modulus_degree() // 2)
    except ValueError:
        return "batched"
    per = inf.cost_per_image("per_image", shape, batch, rotations=packed.rotations(plan, lay),
                             cts=lay.cts)
    return "per_image" if per * batch < inf.cost_per_image("batched", shape, batch, nz) * batch \
        else "batched"


def _session(worker: Worker, caller: str, session: str, fingerprint: str) -> Any:
    got = he_state(worker)["sessions"].get(session)
    if got is None or got[0] != caller:
        raise KeyError(f"{worker.name} has no HE session {session!r} opened by {caller}")
    if got[1] != fingerprint:
        raise keys.CiphertextMismatchError(
            f"ciphertexts under context {fingerprint[:16]}... sent to a session pinned to "
            f"{got[1][:16]}...: encrypt under the session's context")
    return got[2]


@protocol_step("he.absorb")
def absorb(worker: Worker, caller: str, *, session: str, fingerprint: str, start: int,
           cts: list) -> int:
    """MODEL OWNER: take the next ciphertexts of a session (features or images)."""
    _session(worker, caller, session, fingerprint).absorb(start, cts)
    return len(cts)


@protocol_step("he.finish")
def finish(worker: Worker, caller: str, *, session: str, fingerprint: str) -> dict[str, Any]:
    """MODEL OWNER: the encrypted logits (unused slots masked) and per-layer statistics."""
    sess = _session(worker, caller, session, fingerprint)
    out = sess.finish()
    del he_state(worker)["sessions"][session]
    return {"cts": out, "stats": sess.stats.as_list()}


@protocol_step("he.infer")
def infer(worker: Worker, caller: str, *, data: Any, model_owner: str, model: Any,
          fingerprint: str, packing: str = "auto", chunk: int = 16,
          allow: list[str] | None = None, mask: bool | None = None) -> dict[str, Any]:
    """DATA OWNER: encrypted inference of the model owner's ``model`` on private ``data``.

    Returns a description of the logits, stored here private (readable by ``allow``;
    never by the model owner, who holds the ciphertexts), and timings and bytes.
    """
    allow = list(allow or [])
    if model_owner in allow:
        raise PermissionError(f"{model_owner} holds the ciphertexts: it must never see their "
                              "CKKS decryption (that reveals the secret key); leave it out of "
                              "allow")
    ctx = own_context(worker, fingerprint)
    x = stored_tensor(worker, data, "data")
    if not isinstance(x, torch.Tensor):
        raise TypeError("data must reference a tensor of inputs")
    peer = worker.client_for(model_owner)
    t0 = time.perf_counter()
    info = open_session.on(peer, model=model, fingerprint=fingerprint, batch=x.shape[0],
                           shape=list(x.shape[1:]), packing=packing, mask=mask)
    sid, sent, enc_s = info["session"], 0, 0.0
    plan_first = info["layers"][0]
    if info["packing"] == "batched":
        feats = features_from_description(plan_first, x)
        for start in range(0, feats.shape[1], chunk):
            t1 = time.perf_counter()
            cts = inf.encrypt_features(ctx, feats, start, start + chunk)
            enc_s += time.perf_counter() - t1
            sent += sum(len(c) for c in cts)
            absorb.on(peer, session=sid, fingerprint=fingerprint, start=start, cts=cts)
    else:
        lay = packed.Layout(**info["layout"])
        for start in range(0, x.shape[0], chunk):
            t1 = time.perf_counter()
            cts = inf.encrypt_images(ctx, packed.image_patches(plan_first, x[start:start + chunk]),
                                     lay)
            enc_s += time.perf_counter() - t1
            sent += sum(len(c) for c in cts)
            absorb.on(peer, session=sid, fingerprint=fingerprint, start=start, cts=cts)
    reply = finish.on(peer, session=sid, fingerprint=fingerprint)
    t1 = time.perf_counter()
    logits = (inf.decrypt_batched(ctx, reply["cts"], x.shape[0]) if info["packing"] == "batched"
              else inf.decrypt_images(ctx, reply["cts"]))[:, :info["outputs"]].float()
    dec_s = time.perf_counter() - t1
    return {"logits": stored_result(worker, logits, True, frozenset(allow)),
            "packing": info["packing"], "masked": info["masked"],
            "seconds": time.perf_counter() - t0,
            "encrypt_seconds": enc_s, "decrypt_seconds": dec_s, "bytes_sent": sent,
            "bytes_received": sum(len(c) for c in reply["cts"]), "layers": reply["stats"]}


def _input_geometry(plan: Any, shape: list[int]) -> tuple[tuple[int, int], int]:
    first = plan.layers[0]
    numel = int(torch.tensor(shape).prod())
    if first.kind == "linear":
        if numel != first.weight.shape[1]:
            raise ValueError(f"the model takes {first.weight.shape[1]} inputs, the data has "
                             f"{numel} per row")
        return (1, numel), numel
    image = image_shape(torch.zeros(1, *shape))
    return image, windows(plan, image) * first.weight[0].numel()


# ---- aggregation (see ppdl_nb.he.aggregation) -----------------------------------------
@protocol_step("he.encrypt_update")
def encrypt_update(worker: Worker, caller: str, *, update: Any, fingerprint: str,
                   aggregator: str, round: str, scale: float, bound: float, clients: int
                   ) -> int:
    """CLIENT: quantise the stored update, encrypt it under the pinned key, send it to the
    aggregator; the plaintext update is then dropped. Returns the bytes sent."""
    from ppdl_nb.he.aggregation import check_range, quantize

    ts = keys.require_tenseal()
    from tenseal import sealapi  # noqa: F401  (registers SEAL's Modulus type)

    owner, ctx = trusted(worker, fingerprint)
    if aggregator == owner:
        raise keys.HEKeyError(f"{aggregator} holds the secret key: it must not aggregate")
    value = stored_tensor(worker, update, "update")
    if not isinstance(value, torch.Tensor):
        raise TypeError("update must reference a tensor")
    slots = ctx.seal_context().data.first_context_data().parms().poly_modulus_degree()
    t = ctx.seal_context().data.first_context_data().parms().plain_modulus().value()
    check_range(t, clients=clients, scale=scale, bound=bound)
    q = quantize(value, scale=scale, bound=bound)
    cts = [ts.bfv_vector(ctx, q[i:i + slots]).serialize() for i in range(0, len(q), slots)]
    worker.declare_release("he", to=aggregator, key_owner=owner)
    worker.free(update)
    collect.on(worker.client_for(aggregator), round=round, fingerprint=fingerprint, cts=cts,
               length=len(q), scale=scale)
    return sum(len(c) for c in cts)


@protocol_step("he.collect")
def collect(worker: Worker, caller: str, *, round: str, fingerprint: str, cts: list,
            length: int, scale: float) -> None:
    """AGGREGATOR: keep ``caller``'s encrypted update for ``round`` (once per sender)."""
    trusted(worker, fingerprint)
    got = he_state(worker)["rounds"].setdefault((round, fingerprint), {})
    if caller in got:
        raise ValueError(f"{caller} already sent its update for round {round!r}")
    got[caller] = (cts, (length, float(scale)))


@protocol_step("he.sum_round")
def sum_round(worker: Worker, caller: str, *, round: str, senders: list, key_holder: str,
              fingerprint: str) -> torch.Tensor:
    """AGGREGATOR: add the senders' ciphertexts; the key holder decrypts only that sum."""
    ts = keys.require_tenseal()
    owner, ctx = trusted(worker, fingerprint)
    if owner != key_holder:
        raise keys.HEKeyError(f"context {fingerprint[:16]}... belongs to {owner}, not "
                              f"{key_holder}")
    got = he_state(worker)["rounds"].pop((round, fingerprint), {})
    missing = [s for s in senders if s not in got]
    if missing or len(senders) < 2:
        raise RuntimeError(f"round {round!r}: no encrypted update from {missing}; a sum needs "
                           ">= 2 senders")
    lengths = {got[s][1] for s in senders}
    if len(lengths) != 1:
        raise ValueError(f"round {round!r}: updates of different lengths or scales")
    length, scale = lengths.pop()
    total = None
    for s in senders:
        vecs = []
        for data in got[s][0]:
            try:
                vecs.append(ts.bfv_vector_from(ctx, bytes(data)))
            except Exception as exc:
                raise keys.CiphertextMismatchError(f"{s}'s update does not load under the "
                                                   f"pinned context: {exc}") from None
        total = vecs if total is None else [a.add_(b) for a, b in zip(total, vecs, strict=True)]
    return decrypt_sum.on(worker.client_for(key_holder), round=round, fingerprint=fingerprint,
                          cts=[v.serialize() for v in total], length=length,
                          count=len(senders), scale=scale)


@protocol_step("he.decrypt_sum")
def decrypt_sum(worker: Worker, caller: str, *, round: str, fingerprint: str, cts: list,
                length: int, count: int, scale: float) -> torch.Tensor:
    """KEY HOLDER: decrypt a sum of ``count`` >= 2 updates (once per round), dequantised."""
    from ppdl_nb.he.aggregation import dequantize

    ts = keys.require_tenseal()
    ctx = own_context(worker, fingerprint)
    if count < 2:
        raise PermissionError("the key holder decrypts sums of >= 2 updates only")
    opened = he_state(worker)["opened"]
    if (round, fingerprint) in opened:
        raise PermissionError(f"the sum of round {round!r} was already decrypted once")
    opened.add((round, fingerprint))
    values: list[int] = []
    for data in cts:
        try:
            values += ts.bfv_vector_from(ctx, bytes(data)).decrypt()
        except Exception as exc:
            raise keys.CiphertextMismatchError(f"a ciphertext is not under key "
                                               f"{fingerprint[:16]}...: {exc}") from None
    return dequantize(values[:length], scale=scale)
