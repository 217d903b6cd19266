"""Handlers for the core message kinds: store, fetch, delete, call, send, info, step."""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb.workers.core import modules, ops, tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.messages import find_step, message
from ppdl_nb.workers.core.store import Entry
from ppdl_nb.workers.core.worker import Worker, describe

__all__ = ["stored_result"]


def _store_one(worker: Worker, obj: Any, private: bool, allowed: frozenset[str]) -> dict:
    obj_id = worker.store.put(obj, private=private, allow=allowed)
    return {"id": obj_id, "meta": describe(obj, private=private)}


def stored_result(
    worker: Worker, result: Any, private: bool = False, allowed: frozenset[str] = frozenset()
) -> Any:
    """Store an op's result (tensors, or tuples of them) and describe it for the caller."""
    if result is None:
        return None
    if isinstance(result, tuple | list):
        return [stored_result(worker, r, private, allowed) for r in result]
    return _store_one(worker, result, private, allowed)


@message("ping")
def _ping(worker: Worker, msg: dict, caller: str) -> str:
    return "pong"


@message("info")
def _info(worker: Worker, msg: dict, caller: str) -> dict:
    return {
        "name": worker.name,
        "objects": len(worker.store),
        "bytes": worker.store.nbytes(),
        **worker.counters.as_dict(),
    }


@message("store", optional={"private": bool, "allow": list}, obj=object)
def _store(worker: Worker, msg: dict, caller: str) -> dict:
    allow = msg.get("allow", [])
    if not all(isinstance(a, str) for a in allow):
        raise TypeError("'allow' must be a list of worker names")
    return _store_one(worker, msg["obj"], msg.get("private", False), frozenset(allow))


@message("store_module", optional={"private": bool}, spec=dict)
def _store_module(worker: Worker, msg: dict, caller: str) -> dict:
    module = modules.module_from_spec(msg["spec"])
    return _store_one(worker, module, msg.get("private", False), frozenset())


@message("fetch", id=int, optional={"keep": bool})
def _fetch(worker: Worker, msg: dict, caller: str) -> dict:
    entry = worker.store.check_fetch(msg["id"], caller)
    obj = entry.obj
    reply = {"module": modules.module_to_spec(obj)} if isinstance(obj, torch.nn.Module) else {
        "value": obj
    }
    if not msg.get("keep", False):
        worker.store.pop(msg["id"])
        _disown(obj)  # the fetcher now answers for anything the object pointed to
    return reply


@message("lookup", name=str)
def _lookup(worker: Worker, msg: dict, caller: str) -> dict:
    """Find an object the owner published by name (its id and metadata, not its value)."""
    obj_id = worker.names.get(msg["name"])
    if obj_id is None or obj_id not in worker.store:
        raise KeyError(f"{worker.name} has published no object named {msg['name']!r} "
                       f"(published: {sorted(worker.names)})")
    entry = worker.store.entry(obj_id)
    return {"id": obj_id, "meta": describe(entry.obj, private=entry.private)}


@message("delete", ids=list)
def _delete(worker: Worker, msg: dict, caller: str) -> int:
    return worker.store.delete(i for i in msg["ids"] if type(i) is int)


@message("call", fn=str, args=list, optional={"kwargs": dict})
def _call(worker: Worker, msg: dict, caller: str) -> Any:
    fn = ops.resolve(msg["fn"])
    inputs: list[Entry] = []
    args = _resolve_refs(worker, msg["args"], inputs)
    kwargs = _resolve_refs(worker, msg.get("kwargs", {}), inputs)
    private = any(e.private for e in inputs)
    allowed = frozenset.intersection(*[e.allowed for e in inputs if e.private]) if private else (
        frozenset()
    )
    wrappers = [a for a in (*args, *kwargs.values()) if _is_wrapper(a)]
    if wrappers:  # pointers onwards (a chain): let their __torch_function__ run the op
        result = torch.overrides.handle_torch_function(fn, wrappers, *args, **kwargs)
    else:
        result = fn(*args, **kwargs)
    if private and msg["fn"].endswith("_") and inputs:  # in place: the target now holds
        target = inputs[0]  # private information, so it becomes private too
        target.allowed = allowed if not target.private else target.allowed & allowed
        target.private = True
    return stored_result(worker, result, private, allowed)


def _is_wrapper(value: Any) -> bool:
    return not isinstance(value, torch.Tensor) and hasattr(type(value), "__torch_function__")


@message("send", id=int, to=str, optional={"move": bool})
def _send(worker: Worker, msg: dict, caller: str) -> dict:
    to = msg["to"]
    entry = worker.store.entry(msg["id"])
    if not entry.may_leave_to(to):
        worker.store.check_fetch(msg["id"], to)  # raises the explanatory PermissionError
    peer = worker.client_for(to)
    if isinstance(entry.obj, torch.nn.Module):
        request = {"kind": "store_module", "spec": modules.module_to_spec(entry.obj)}
    else:
        request = {"kind": "store", "obj": entry.obj}
    request["private"] = entry.private
    if entry.private and request["kind"] == "store":
        request["allow"] = sorted(entry.allowed)
    result = peer.request(request)
    if msg.get("move", False):
        worker.store.pop(msg["id"])
        _disown(entry.obj)
    return result


@message("step", name=str, optional={"kwargs": dict})
def _step(worker: Worker, msg: dict, caller: str) -> Any:
    return find_step(msg["name"])(worker, caller, **msg.get("kwargs", {}))


def _resolve_refs(worker: Worker, value: Any, inputs: list[Entry]) -> Any:
    if isinstance(value, Ref):
        entry = worker.store.entry(value.id)
        inputs.append(entry)
        return entry.obj
    if isinstance(value, list):
        return [_resolve_refs(worker, v, inputs) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve_refs(worker, v, inputs) for v in value)
    if isinstance(value, dict):
        return {k: _resolve_refs(worker, v, inputs) for k, v in value.items()}
    return value


def _disown(obj: Any) -> None:
    disown = getattr(type(obj), "disown", None)  # our pointer types; a fixed method name
    if disown is not None:
        disown(obj)


@message("trace", action=str)
def _trace(worker: Worker, msg: dict, caller: str) -> Any:
    """Start or stop recording the requests this worker's process makes to its peers."""
    recorder = worker.state.get("trace")
    if msg["action"] == "start":
        if recorder is None:
            recorder = worker.state["trace"] = tracing.Recorder()
            tracing.start(recorder)
        return None
    if msg["action"] == "stop":
        if recorder is None:
            return []
        tracing.stop(recorder)
        del worker.state["trace"]
        return recorder.records
    raise ValueError(f"trace action must be 'start' or 'stop', not {msg['action']!r}")
