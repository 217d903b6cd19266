"""Handlers for the core message kinds: store, fetch, delete, call, send, info, step."""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb.workers.core import flows, modules, ops, tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.messages import find_step, message
from ppdl_nb.workers.core.policy import PUBLIC, Policy, combine, computed, uniform_refusal
from ppdl_nb.workers.core.worker import Worker, describe

__all__ = ["stored_result"]


def _store_one(worker: Worker, obj: Any, policy: Policy, holder: str | None) -> dict:
    obj_id = worker.keep(obj, policy, holder=holder)
    return {"id": obj_id, "meta": describe(obj, private=policy.private)}


def stored_result(worker: Worker, result: Any, private: bool = False,
                  allowed: frozenset[str] = frozenset(), *, policy: Policy | None = None,
                  holder: str | None = None) -> Any:
    """Store a result (tensors, or tuples of them) and describe it for the caller.

    Its policy: ``policy`` if given, else the worker's own private data readable by
    ``allowed`` if ``private``, else the policy of what the request read; its storages'
    policies join in (a view of private data is private)."""
    if result is None:
        return None
    if isinstance(result, tuple | list):
        return [stored_result(worker, r, private, allowed, policy=policy, holder=holder)
                for r in result]
    if policy is None:
        request = worker.request
        policy = (worker.private_policy(allowed) if private
                  else request.policy if request is not None else PUBLIC)
    policy = combine(policy, worker.store.flow_policy(result))
    return _store_one(worker, result, policy, holder)


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


_STORE_OPTIONS = {"private": bool, "allow": list, "owners": list, "permits": list,
                  "holder": str}


def _names(msg: dict, field: str) -> list[str]:
    names = msg.get(field, [])
    if not all(isinstance(a, str) for a in names):
        raise TypeError(f"{field!r} must be a list of worker names")
    return names


def _incoming_policy(worker: Worker, msg: dict, caller: str) -> Policy:
    """A stored object's policy: private data is owned by ``owners`` (by default this
    worker: the sender entrusts it to the worker), read by them and ``allow``."""
    if not msg.get("private", False):
        return PUBLIC
    owners = frozenset(_names(msg, "owners")) or frozenset({worker.name})
    readers = owners | frozenset(_names(msg, "allow"))
    return Policy(owners, readers, frozenset(_names(msg, "permits")))


@message("store", optional=_STORE_OPTIONS, obj=object)
def _store(worker: Worker, msg: dict, caller: str) -> dict:
    policy = _incoming_policy(worker, msg, caller)
    return _store_one(worker, msg["obj"], policy, msg.get("holder", caller))


@message("store_module", optional=_STORE_OPTIONS, spec=dict)
def _store_module(worker: Worker, msg: dict, caller: str) -> dict:
    module = modules.module_from_spec(msg["spec"])
    policy = _incoming_policy(worker, msg, caller)
    return _store_one(worker, module, policy, msg.get("holder", caller))


@message("fetch", id=int, optional={"keep": bool})
def _fetch(worker: Worker, msg: dict, caller: str) -> dict:
    entry = worker.store.check_read(msg["id"], caller)
    obj = entry.obj
    reply = {"module": modules.module_to_spec(obj)} if isinstance(obj, torch.nn.Module) else {
        "value": obj
    }
    if not msg.get("keep", False) and worker.store.may_free(msg["id"], caller):
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
    return {"id": obj_id, "meta": describe(entry.obj,
                                           private=worker.store.policy_of(entry).private)}


@message("delete", ids=list)
def _delete(worker: Worker, msg: dict, caller: str) -> int:
    """Free the listed objects ``caller`` holds (or owns); others are left alone."""
    return worker.store.delete(msg["ids"], caller)


@message("call", fn=str, args=list, optional={"kwargs": dict})
def _call(worker: Worker, msg: dict, caller: str) -> Any:
    """Run an allowlisted op. On inputs the caller may not read, what the caller sees must
    not depend on their values: the result's shape comes from a shape-only dry run (or the
    op is refused, whatever the values), and an op that then fails on the values gives an
    opaque private result of that shape, the reason going to the owner's log."""
    name = msg["fn"]
    fn = ops.resolve(name)
    policies: list[Policy] = []
    private_ids: set[int] = set()
    args = _resolve_refs(worker, msg["args"], policies, private_ids)
    kwargs = _resolve_refs(worker, msg.get("kwargs", {}), policies, private_ids)
    policy = computed(combine(*policies)) if policies else PUBLIC
    hidden = policy.private and not policy.may_read(caller)
    flows.check_value_shaped(name, args, kwargs, private_ids if hidden else set())
    shape_only = flows.public_shape(fn, name, args, kwargs) if hidden else None
    wrappers = [a for a in (*args, *kwargs.values()) if _is_wrapper(a)]
    try:
        if wrappers:  # pointers onwards (a chain): let their __torch_function__ run the op
            result = torch.overrides.handle_torch_function(fn, wrappers, *args, **kwargs)
        else:
            result = flows.run_op(worker.store, fn, name, args, kwargs, policy, private_ids)
    except Exception as exc:
        if not hidden:
            raise
        worker.log_private_failure(f"{caller} called {name}", exc)
        if shape_only is None:
            failed = True
        else:
            result, failed = flows.opaque_result(shape_only), False
    else:
        failed = False
    if failed:  # raised outside the handler above, so no private message is chained
        raise uniform_refusal()
    return stored_result(worker, result, policy=policy)


def _is_wrapper(value: Any) -> bool:
    return not isinstance(value, torch.Tensor) and hasattr(type(value), "__torch_function__")


@message("send", id=int, to=str, optional={"move": bool})
def _send(worker: Worker, msg: dict, caller: str) -> dict:
    to = msg["to"]
    # the asker must know of it; the receiver must be a reader
    entry = worker.store.check_read(msg["id"], to, asker=caller)
    policy = worker.store.policy_of(entry)
    peer = worker.client_for(to)
    if isinstance(entry.obj, torch.nn.Module):
        request = {"kind": "store_module", "spec": modules.module_to_spec(entry.obj)}
    else:
        request = {"kind": "store", "obj": entry.obj}
    request["holder"] = caller  # whoever asked holds the new reference
    if policy.private:
        request.update(private=True, owners=sorted(policy.owners),
                       allow=sorted(policy.readers or ()), permits=sorted(policy.permits))
    result = peer.request(request)
    if msg.get("move", False) and worker.store.may_free(msg["id"], caller):
        worker.store.pop(msg["id"])
        _disown(entry.obj)
    return result


@message("step", name=str, optional={"kwargs": dict})
def _step(worker: Worker, msg: dict, caller: str) -> Any:
    """Run a protocol step. It reads stored objects only through ``worker.resolve``; a
    reply carrying tensors computed from inputs the caller may not read is refused unless
    the step declared a release (``worker.declare_release``), and torch's failures on
    private inputs reach the caller as the uniform refusal."""
    step = find_step(msg["name"])
    try:
        result = step(worker, caller, **msg.get("kwargs", {}))
    except (RuntimeError, IndexError) as exc:
        request = worker.request
        if request is None or not request.policy.private:
            raise
        worker.log_private_failure(f"{caller} ran step {step.name}", exc)
        failed = True
    else:
        failed = False
    if failed:
        raise uniform_refusal()
    _check_reply(worker, step.name, result)
    return result


def _check_reply(worker: Worker, name: str, result: Any) -> None:
    request = worker.request
    if request is None or not request.policies or request.released:
        return
    policy = request.policy
    if policy.private and not policy.may_read(request.caller) and _holds_tensor(result):
        raise PermissionError(
            f"step {name} replied with values computed from private inputs "
            f"{request.caller!r} may not read, through no declared release; the reply was "
            "withheld (see ppdl_nb.workers.core.policy.RELEASES)")


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_tensor(v) for v in value)
    return False


def _resolve_refs(worker: Worker, value: Any, policies: list[Policy],
                  private_ids: set[int]) -> Any:
    """Every Ref in ``value`` replaced by its object, through the worker's resolver."""
    if isinstance(value, Ref):
        if worker.request is not None:  # a private object the caller does not know of
            worker.store.entry_for(value.id, worker.request.caller)  # looks missing
        obj = worker.resolve(value)
        request = worker.request
        policy = request.policies[-1] if request is not None else worker.policy_of(value)
        policies.append(policy)
        if policy.private:
            private_ids.add(id(obj))
        return obj
    if isinstance(value, list):
        return [_resolve_refs(worker, v, policies, private_ids) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve_refs(worker, v, policies, private_ids) for v in value)
    if isinstance(value, dict):
        return {k: _resolve_refs(worker, v, policies, private_ids) for k, v in value.items()}
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
