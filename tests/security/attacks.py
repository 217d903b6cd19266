"""Attacker helpers for the adversarial suite (see conftest.py for who attacks how)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

import ppdl_nb
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.transport.virtual import VirtualWorker

SECRET = torch.tensor([[1.5, -2.25, 3.125], [4.75, 5.5, -6.875]])  # no integer entries
NAMES = ("alice", "bob", "charlie", "dave")

__all__ = ["NAMES", "SECRET", "Ref", "attempt", "call", "contains_secret", "leak",
           "outcome", "peer", "private_on", "sweep_tensors"]


def leak(reason: str) -> pytest.MarkDecorator:
    """The marker of a test that today's code fails: the attack still works."""
    return pytest.mark.xfail(strict=True, reason=f"issue 12: {reason}")


def private_on(worker: Any, value: torch.Tensor = SECRET) -> Any:
    """The data owner's tensor on ``worker``, sent private (a pointer the notebook holds)."""
    return ppdl_nb.send(value.clone(), worker, private=True)


def peer(attacker: VirtualWorker, victim: str) -> Any:
    """A client speaking *as worker* ``attacker`` to worker ``victim`` (a curious peer)."""
    return attacker.owner.client_for(victim)


def call(client: Any, fn: str, *args: Any, **kwargs: Any) -> Any:
    """A raw ``call`` message: the allowlisted op ``fn`` on ``args`` (Refs for objects)."""
    return client.request({"kind": "call", "fn": fn, "args": list(args), "kwargs": kwargs})


def attempt(fn: Callable[[], Any]) -> Any:
    """Run an attack: its result, or the exception it raised (as a value)."""
    try:
        return fn()
    except Exception as exc:  # an attack's refusal is a result too
        return exc


def sweep_tensors(tree: Any) -> list[torch.Tensor]:
    """Every tensor in a reply (dicts, lists, tuples), modules' state included."""
    if isinstance(tree, torch.Tensor):
        return [tree.detach()]
    if isinstance(tree, torch.nn.Module):
        return [t.detach() for t in tree.state_dict().values()]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in sweep_tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in sweep_tensors(v)]
    return []


def contains_secret(result: Any, secret: torch.Tensor = SECRET) -> bool:
    """Whether ``result`` (a reply, a fetched value, an exception) carries ``secret``:
    the tensor itself (or a transposed/flattened copy), or its values in a message."""
    if isinstance(result, BaseException):
        text = str(result)  # the message and the worker's traceback
        numbers = {float(n) for n in re.findall(r"-?\d+\.\d+", text)}
        return any(v in numbers for v in secret.flatten().tolist() if v != int(v))
    flat = secret.flatten().double()
    for t in sweep_tensors(result):
        if not t.is_floating_point() and not t.dtype.is_signed:
            continue
        got = t.flatten().double()
        if got.numel() == flat.numel() and (torch.allclose(got, flat)
                                            or torch.allclose(got.sort().values,
                                                              flat.sort().values)):
            return True
    return False


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What the notebook observes of one request: ("ok", metadata) or ("error", type,
    message), with values the attacker chose left in; to compare two secrets' runs."""
    try:
        result = fn()
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc).split("--- traceback")[0])
    return ("ok", _observable(result))


def _observable(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return ("tensor", result.dtype, tuple(result.shape), result.tolist())
    if isinstance(result, dict):
        return {k: _observable(v) for k, v in result.items() if k != "id"}
    if isinstance(result, list | tuple):
        return [_observable(v) for v in result]
    return result
