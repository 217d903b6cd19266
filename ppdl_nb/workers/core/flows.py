"""Run one allowlisted op on resolved objects so that its policy follows torch's flows.

The result's policy is the most restrictive of the inputs' (their storages' and
gradients' included). Whatever the op wrote into (an in-place target and its views,
an ``out=`` argument, a module's running statistics or parameters, the ``.grad`` of
every leaf a ``backward`` reached) is tainted with that policy, by storage, so a view
taken before the write carries it too. Ops whose output shape or failure depends on a
private value are refused before they run, whatever the value (:data:`VALUE_SHAPED`),
and any other failure on private inputs reaches the caller as one uniform refusal,
the reason going to the owner's log.

>>> from ppdl_nb.workers.core.store import ObjectStore, grad_of
>>> from ppdl_nb.workers.core.policy import private
>>> store = ObjectStore("alice")
>>> b, x = torch.zeros(3), torch.ones(3)
>>> view = b.view(3)
>>> _ = run_op(store, torch.Tensor.add_, "Tensor.add_", [b, x], {}, private("alice"), {id(x)})
>>> store.flow_policy(view).private
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ppdl_nb.workers.core.policy import Policy
from ppdl_nb.workers.core.store import ObjectStore, grad_of

__all__ = ["VALUE_SHAPED", "check_value_shaped", "opaque_result", "public_shape", "run_op"]

# op -> why it is refused when a private value decides its output's shape or its failure
VALUE_SHAPED: dict[str, str] = {
    "torch.nonzero": "its output shape is the number of non-zero entries",
    "torch.unique": "its output shape is the number of distinct values",
    "torch.masked_select": "its output shape is the number of selected entries",
    "F.one_hot": "without num_classes its width is the largest value, and values out of "
                 "range fail",
}
_INDEXING = {"Tensor.__getitem__", "operator.getitem", "F.embedding"}


def check_value_shaped(name: str, args: list, kwargs: dict, private_ids: set[int]) -> None:
    """Refuse (whatever the values) an op whose output shape or failure a private value
    would decide; run before the op, so the refusal carries a clear reason."""
    if not private_ids:
        return
    if name in VALUE_SHAPED:
        raise PermissionError(f"{name} is refused on private inputs: {VALUE_SHAPED[name]}, "
                              "which would reveal private values. Compute it where the data "
                              "may be seen, or ask for a differentially private count")
    if name == "torch.where" and len(args) + len(kwargs) == 1:
        raise PermissionError("torch.where(condition) is refused on private inputs: its "
                              "output shape counts the true entries; use where(c, a, b)")
    if name in _INDEXING:
        index = args[1:] if name != "F.embedding" else args[:1]
        if any(_holds_private(i, private_ids) for i in (*index, *kwargs.values())):
            raise PermissionError(
                f"{name} with a private index is refused: an out-of-range index fails and a "
                "boolean mask decides the output's shape, so either would reveal private "
                "values. Index with public values, or compute with masks (torch.where)")


_NO_DRY_RUN = {"Tensor.backward"}  # its outcome depends on the graph, not on the values


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_like(value, device="meta")
    if isinstance(value, list | tuple):
        return type(value)(_to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    return value


def _dry_runnable(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_dry_runnable(v) for v in value)
    if isinstance(value, dict):
        return all(_dry_runnable(v) for v in value.values())
    return not isinstance(value, torch.nn.Module) and (
        isinstance(value, torch.Tensor) or not hasattr(type(value), "__torch_function__"))


def public_shape(fn: Callable[..., Any], name: str, args: list, kwargs: dict) -> Any:
    """The op run on shape-only (meta) copies of its inputs: what its result looks like
    whatever the values. None when no dry run applies (modules, pointer chains,
    backward). Raises PermissionError, the same whatever the values, when the result's
    shape or the op's success needs values (a private number used as a size, a count);
    a shape error is raised as it is (it tells only the shapes the caller already sees).

    >>> public_shape(torch.add, "torch.add", [torch.ones(2), torch.ones(2)], {}).shape
    torch.Size([2])
    """
    if name in _NO_DRY_RUN or not (_dry_runnable(args) and _dry_runnable(kwargs)):
        return None
    try:
        return fn(*_to_meta(args), **_to_meta(kwargs))
    except Exception as exc:
        if not _needs_values(exc):
            raise  # a shape or type error: it depends on the inputs' metadata alone
    raise PermissionError(
        f"{name} is refused on private inputs: its result's shape, or whether it "
        "succeeds, cannot be told from its inputs' shapes alone, so it would reveal "
        "private values (a private number used as a size or an index, a count). Use "
        "public sizes, or compute where the data may be seen")


def _needs_values(exc: Exception) -> bool:
    """Whether a dry run failed because the op reads values (not because of shapes)."""
    return isinstance(exc, NotImplementedError) or "meta" in str(exc)


def opaque_result(shape_only: Any) -> Any:
    """A stand-in shaped like ``shape_only`` (NaN, or zeros for integers): what a caller
    who may not read the inputs gets when the op failed on their values."""
    if isinstance(shape_only, torch.Tensor):
        fill = float("nan") if shape_only.dtype.is_floating_point else 0
        return torch.full(shape_only.shape, fill, dtype=shape_only.dtype)
    if isinstance(shape_only, list | tuple):
        return type(shape_only)(opaque_result(v) for v in shape_only)
    return shape_only


def _holds_private(value: Any, private_ids: set[int]) -> bool:
    if id(value) in private_ids:
        return True
    if isinstance(value, list | tuple):
        return any(_holds_private(v, private_ids) for v in value)
    return False


def _written(objs: Iterable[Any]) -> list[tuple[torch.Tensor, int]]:
    """Every tensor an op could write into, with its version counter now."""
    seen: list[tuple[torch.Tensor, int]] = []
    for obj in objs:
        if isinstance(obj, torch.Tensor):
            seen.append((obj, obj._version))
            grad = grad_of(obj)
            if grad is not None:
                seen.append((grad, grad._version))
        elif isinstance(obj, torch.nn.Module):
            seen += [(t, t._version) for t in obj.state_dict(keep_vars=True).values()]
            seen += [(p.grad, p.grad._version) for p in obj.parameters() if p.grad is not None]
    return seen


def _leaves(root: Any) -> list[torch.Tensor]:
    """The leaves a backward from ``root`` accumulates gradients into."""
    fn = getattr(root, "grad_fn", None)
    if fn is None:
        return [root] if isinstance(root, torch.Tensor) else []
    stack, seen, leaves = [fn], set(), []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if isinstance(var, torch.Tensor):
            leaves.append(var)
        stack.extend(f for f, _ in node.next_functions)
    return leaves


def run_op(store: ObjectStore, fn: Callable[..., Any], name: str, args: list, kwargs: dict,
           policy: Policy, private_ids: set[int]) -> Any:
    """``fn(*args, **kwargs)`` with ``policy`` (the inputs') carried into what it wrote."""
    if not policy.private:
        return fn(*args, **kwargs)
    objs = [*args, *kwargs.values()]
    before = _written(objs)
    leaves = _leaves(args[0]) if name == "Tensor.backward" and args else []
    result = fn(*args, **kwargs)
    for t, version in before:
        if t._version != version:
            store.taint(t, policy)
    for leaf in leaves:
        if leaf.grad is not None:
            store.taint(leaf.grad, policy)
    return result
