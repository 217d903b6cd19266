"""Pointers: local handles on objects that live on a worker.

A :class:`PointerTensor` knows where its tensor lives, its id there, and its shape and
dtype (so ``.shape`` needs no round trip). Torch functions and operators on pointers
run on the owning worker through ``__torch_function__`` and return pointers; torch
itself is never patched. When the last pointer to a remote object is garbage
collected, the worker is told to free it (batched with the next request).

>>> from ppdl_nb import VirtualWorker, send
>>> alice = VirtualWorker("alice")
>>> x = send(torch.tensor([1.0, 2.0]), alice)
>>> (x * 2).get()
tensor([2., 4.])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ppdl_nb.errors import WorkerMismatchError
from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.tensors.remote_methods import TensorMethods
from ppdl_nb.tensors.shaped import Shaped
from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.modules import RebuiltModule, module_from_spec, module_to_spec
from ppdl_nb.workers.core.ops import op_name
from ppdl_nb.workers.core.policy import program_permit

__all__ = [
    "ModulePointer", "Pointer", "PointerTensor", "call_remote", "pointer_to", "send",
    "wrap_reply",
]

_local_ids = itertools.count(1)


class Pointer:
    """Base of remote handles: location, id there, metadata, lifetime."""

    def __init__(self, location: Any, id_at_location: int, meta: dict[str, Any], *,
                 owner: Any) -> None:
        self.location = location
        self.id_at_location = id_at_location
        self.meta = meta
        self.owner = owner
        self.local_id = next(_local_ids)
        self._owns = True  # responsible for freeing the remote object
        self._gone: str | None = None  # why this pointer may no longer be used

    # ---- identity and lifetime ---------------------------------------------------------
    @property
    def private(self) -> bool:
        return bool(self.meta.get("private", False))

    def _check(self) -> None:
        if self._gone is not None:
            raise ValueError(f"this pointer can no longer be used: {self._gone}")

    def disown(self) -> None:
        """Stop answering for the remote object (it was handed to another party)."""
        self._owns = False

    def __del__(self) -> None:
        if getattr(self, "_owns", False):
            try:
                self.location.schedule_delete(self.id_at_location)
            except Exception:  # interpreter shutdown: nothing left to free
                pass

    def describe(self) -> dict[str, Any]:
        """Metadata of this pointer as seen by whoever holds it (for chains)."""
        return {"kind": "pointer", "location": self.location.name, "id": self.id_at_location,
                "shape": self.meta.get("shape"), "dtype": self.meta.get("dtype"),
                "next": self.meta}

    def __repr__(self) -> str:
        return chain_text(self)

    # ---- moving objects ----------------------------------------------------------------
    def get(self) -> Any:
        """Bring the object here; it is removed from the worker (refused if private)."""
        self._check()
        reply = self.location.request({"kind": "fetch", "id": self.id_at_location})
        self._owns, self._gone = False, "its object was fetched with .get()"
        return self._unwrap(reply)

    def _unwrap(self, reply: dict[str, Any]) -> Any:
        return reply["value"]

    def copy(self) -> Pointer:
        """A new remote copy on the same worker (private stays private)."""
        self._check()
        return call_remote("object.copy", (self,), {})

    def move(self, worker: Any) -> Pointer:
        """Move the object to ``worker``, directly from its current worker; returns self."""
        self._check()
        target = _client(worker, self.owner)
        if target.name == self.location.name:
            return self
        reply = self.location.request(
            {"kind": "send", "id": self.id_at_location, "to": target.name, "move": True}
        )
        self.location, self.id_at_location, self.meta = target, reply["id"], reply["meta"]
        return self

    def send(self, worker: Any) -> Pointer:
        """Hand this pointer to ``worker``: returns a pointer to that pointer (a chain)."""
        self._check()
        target = _client(worker, self.owner)
        reply = target.request({"kind": "store", "obj": self})
        self._owns, self._gone = False, f"it was sent to {target.name}; use the returned pointer"
        return wrap_reply(target, reply, self.owner)


class PointerTensor(Pointer, TensorMethods, Shaped):
    """A pointer to a tensor (or to a pointer, forming a chain) on a worker.

    Torch functions (``torch.relu(p)``) and the tensor methods declared in
    :class:`~ppdl_nb.tensors.remote_methods.TensorMethods` (``p.sum()``, ``p + 1``) run on
    the worker and return pointers.
    """

    __hash__ = object.__hash__  # __eq__ is remote; identity hashing stays

    NO_TRUTH = ("a pointer's value lives on a worker, so Python cannot branch on it here; "
                "compute the condition remotely and .get() it if you are allowed to")

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.meta["shape"])

    @property
    def dtype(self) -> torch.dtype:
        return codec.DTYPES[self.meta["dtype"]]

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    @classmethod
    def __torch_function__(cls, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = op_name(func)
        if name is None:
            fname = getattr(func, "__qualname__", repr(func))
            raise TypeError(
                f"{fname} is not supported on pointers: workers run only allowlisted "
                "operations (ppdl_nb.workers.core.ops.OPS). Fetch the tensor with .get() if "
                "you may, or use an allowlisted equivalent"
            )
        return call_remote(name, args, kwargs or {})

    @property
    def T(self) -> PointerTensor:
        return call_remote("attr", (self, "T"), {})

    @property
    def grad(self) -> PointerTensor | None:
        return call_remote("attr", (self, "grad"), {})




class ModulePointer(Pointer):
    """A pointer to a model on a worker: call it on pointers, fetch it back with ``.get()``."""

    def __init__(self, *args: Any, origin: torch.nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._origin = origin

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return call_remote("module.call", (self, *args), kwargs)

    def parameters(self) -> tuple[PointerTensor, ...]:
        """Pointers to the model's parameters on the worker (the tensors themselves there)."""
        self._check()
        return call_remote("module.parameters", (self,), {})

    def get(self, *, into: torch.nn.Module | None = None) -> torch.nn.Module:
        """Bring the model here. It is a new module of your class with the worker's
        weights; the model you sent is untouched (PySyft 0.2 changed it in place). With
        ``into=model`` the weights are loaded into ``model`` itself, which is returned.

        >>> import ppdl_nb, torch
        >>> net = torch.nn.Linear(2, 1)
        >>> ptr = ppdl_nb.send(net, ppdl_nb.VirtualWorker("doc_get"))
        >>> ptr.get(into=net) is net
        True
        """
        if into is not None and not isinstance(into, torch.nn.Module):
            raise TypeError(f"into= takes the torch.nn.Module to load the weights into, got "
                            f"{type(into).__name__}")
        model = super().get()
        if into is None:
            return model
        try:
            into.load_state_dict(model.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"the fetched model does not fit into= ({exc}); pass a model "
                             "of the same architecture, or leave into= out") from None
        return into

    def _unwrap(self, reply: dict[str, Any]) -> torch.nn.Module:
        rebuilt = module_from_spec(reply["module"])
        if self._origin is None:
            return rebuilt
        import copy

        model = copy.deepcopy(self._origin)  # the user's own class, with the new weights
        model.load_state_dict(rebuilt.state_dict())
        return model


# ---- plumbing --------------------------------------------------------------------------
def _client(worker: Any, party: Any) -> Any:
    if isinstance(worker, str):
        return party.client_for(worker)
    if not hasattr(type(worker), "request"):
        raise TypeError(f"expected a worker (or its name), got {type(worker).__name__}")
    return worker


def wrap_reply(location: Any, result: Any, owner: Any, origin: Any = None) -> Any:
    """Pointers for a worker's reply ``{"id", "meta"}`` (a tuple of them for a list; None
    for None): a ModulePointer for a model, a PointerTensor otherwise."""
    if result is None:
        return None
    if isinstance(result, list):
        return tuple(wrap_reply(location, r, owner) for r in result)
    meta = result["meta"]
    if meta.get("kind") == "module":
        return ModulePointer(location, result["id"], meta, owner=owner, origin=origin)
    return PointerTensor(location, result["id"], meta, owner=owner)


def call_remote(name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run the allowlisted op ``name`` where the pointers among ``args`` live; pointers back.

    All pointers must be on one worker (``WorkerMismatchError`` otherwise).
    """
    found: list[Pointer] = []
    wire_args = _to_refs(list(args), found)
    wire_kwargs = _to_refs(kwargs, found)
    location = found[0].location
    for p in found[1:]:
        if p.location.name != location.name:
            raise WorkerMismatchError(
                f"{name} mixes a tensor on {location.name} with one on {p.location.name}; "
                f"move one of them first, e.g. ptr.move({location.name})"
            )
    reply = location.request({"kind": "call", "fn": name, "args": wire_args,
                              "kwargs": wire_kwargs})
    return wrap_reply(location, reply, found[0].owner)


# Old private names, for callers not yet moved to the public ones (issue 11).
_wrap, _call = wrap_reply, call_remote


def _to_refs(value: Any, found: list[Pointer]) -> Any:
    if isinstance(value, Pointer):
        value._check()
        found.append(value)
        return Ref(value.id_at_location)
    if isinstance(value, list | tuple):
        items = [_to_refs(v, found) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _to_refs(v, found) for k, v in value.items()}
    return value


def send(obj: Any, worker: Any, *, private: bool = False, allow: tuple[str, ...] = (),
         allow_plain_updates: bool = False,
         allow_programs: Mapping[str, Sequence[str]] | None = None) -> Pointer:
    """Send a tensor, model or pointer to ``worker`` and return a pointer to it.

    ``private=True`` stores it as the worker's private data: ``.get()`` is refused for
    anyone not in ``allow``, and so is anything computed from it.
    ``allow_plain_updates=True``: as the data's owner, let model updates trained on it
    leave in the clear (plain FedAvg, a trusted aggregator).
    ``allow_programs={fingerprint: readers}``: as the data's owner, let ``readers`` read
    what one program computes from it (an encrypted training's model: the program's
    ``fingerprint``), and nothing else.
    """
    if isinstance(obj, Pointer):
        return obj.send(worker)
    if isinstance(obj, torch.nn.Module):
        reply = worker.request({"kind": "store_module", "spec": module_to_spec(obj),
                                "private": private, "allow": list(allow)})
        origin = None if isinstance(obj, RebuiltModule) else obj
        return wrap_reply(worker, reply, worker.context, origin)
    if not isinstance(obj, torch.Tensor):
        raise TypeError(f"send() takes a tensor, an nn.Module or a pointer, not "
                        f"{type(obj).__name__}")
    request = {"kind": "store", "obj": obj, "private": private, "allow": list(allow)}
    permits = ["plain_updates"] if allow_plain_updates else []
    permits += [program_permit(fp, r) for fp, rs in (allow_programs or {}).items()
                for r in ([rs] if isinstance(rs, str) else rs)]
    if private and permits:
        request["permits"] = permits
    reply = worker.request(request)
    return wrap_reply(worker, reply, worker.context)


def _pointer_to_wire(p: Pointer) -> list[Any]:
    p._check()
    return [p.location.name, p.id_at_location, p.meta]


def _pointer_from_wire(payload: Any, context: Any) -> PointerTensor:
    if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[0], str)
            and type(payload[1]) is int and isinstance(payload[2], dict)):
        raise codec.CodecError("a pointer must be [worker name, id, metadata]")
    if context is None:
        raise codec.CodecError("a pointer arrived where no party can hold it")
    location = context.client_for(payload[0])
    return PointerTensor(location, payload[1], payload[2], owner=context)


codec.register_type(16, PointerTensor, _pointer_to_wire, _pointer_from_wire)


def pointer_to(worker: Any, name: str) -> Pointer:
    """A pointer to data the worker's owner published under ``name``.

    The owner keeps the object: dropping this pointer does not delete it.
    """
    ptr = wrap_reply(worker, worker.request({"kind": "lookup", "name": name}), worker.context)
    ptr.disown()
    return ptr


# ---- chain links: a pointer and the pointers it leads to, walked from local metadata -----
@chain_of.register
def _pointer_chain(obj: PointerTensor) -> list[Link]:
    return _walk(obj, "PointerTensor")


@chain_of.register
def _module_pointer_chain(obj: ModulePointer) -> list[Link]:
    return _walk(obj, "ModulePointer")


def _shape(meta: dict[str, Any]) -> tuple[int, ...] | None:
    shape = meta.get("shape")
    return tuple(shape) if shape is not None else None


def _walk(obj: Pointer, kind: str) -> list[Link]:
    meta = obj.meta
    links = [Link(kind, obj.owner.name, obj.local_id, obj.location.name, obj.id_at_location,
                  _shape(meta), meta.get("dtype") or meta.get("type"), meta.get("private", False))]
    holder, holder_id = obj.location.name, obj.id_at_location
    while meta.get("kind") == "pointer":
        nxt = meta.get("next", {})
        links.append(Link("PointerTensor", holder, holder_id, meta["location"], meta["id"],
                          _shape(nxt), nxt.get("dtype"), nxt.get("private", False)))
        holder, holder_id, meta = meta["location"], meta["id"], nxt
    return links
