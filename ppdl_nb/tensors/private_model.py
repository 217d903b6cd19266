"""Private models: a torch model whose weights are secret-shared, run on shared inputs.

:func:`encrypt` turns a ``torch.nn.Module`` built from ``Linear``, ``Conv2d``, ``ReLU``,
``MaxPool2d``, ``AvgPool2d``, ``Flatten``, ``Dropout`` (dropped: inference is eval) and
``BatchNorm1d/2d`` (folded into the ``Linear``/``Conv2d`` before it) into a
:class:`PrivateModel`. Its weights are shared among the parties, from the model owner's
worker when ``owner`` is given (the folded model travels there first as an allowlisted
graph, :func:`~ppdl_nb.workers.core.modules.module_to_spec`, never a pickle), else from
the notebook. Calling it on a shared input runs every layer with the shared-tensor ops
(Beaver products with exact truncation, the secure comparison for ReLU and max-pooling)
and returns a shared output that only the readers the owners allowed may open. Inference
has eval semantics whatever ``model.training`` says: BatchNorm uses its running
statistics, Dropout is left out.

A forward runs as **one program** (:mod:`ppdl_nb.tensors.private_program`): one request
to each party and one to the dealer; the parties run every layer peer to peer. With
``model(x, program=False)`` the notebook drives it layer by layer instead (one request per
op per party). The parties build the steps from the model's graph themselves, so an
allowance can name this forward (:attr:`PrivateModel.fingerprint`).

Each forward keeps per-layer figures in ``model.last_forward``: ``rounds`` (the
session's opening rounds), ``bytes`` (the requests the parties and the dealer received,
counted by them: openings, dealt corrections and the notebook's requests) and
``seconds``; :func:`ppdl_nb.viz.mpc_plots.plot_private_forward` draws them.

>>> import torch, ppdl_nb
>>> from ppdl_nb.workers.transport.virtual import VirtualNetwork
>>> net = VirtualNetwork()
>>> bob, charlie, dave = (ppdl_nb.VirtualWorker(n, network=net) for n in ("b", "c", "d"))
>>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
>>> pm = encrypt(m, parties=(bob, charlie), dealer=dave)
>>> y = pm(ppdl_nb.share(torch.ones(1, 2), bob, charlie, dealer=dave))
>>> bool((y.get() - m(torch.ones(1, 2)).detach()).abs().max() < 1e-3)
True
>>> [layer["layer"] for layer in pm.last_forward]
['Linear', 'ReLU']
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ppdl_nb import mpc
from ppdl_nb.tensors.fixed import FixedPrecisionTensor, share
from ppdl_nb.tensors.pointer import wrap_reply
from ppdl_nb.tensors.private_program import run_program
from ppdl_nb.workers.core.modules import module_to_spec

__all__ = ["PrivateModel", "encrypt", "fold_layers"]

SUPPORTED = ("Linear", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Dropout",
             "BatchNorm1d", "BatchNorm2d (after Linear/Conv2d)", "Identity")
_FUNCTIONS = {F.relu: lambda node: nn.ReLU(), torch.relu: lambda node: nn.ReLU(),
              torch.flatten: lambda node: nn.Flatten(*node.args[1:], **node.kwargs)}
_METHODS = {"relu": lambda node: nn.ReLU(),
            "flatten": lambda node: nn.Flatten(*node.args[1:], **node.kwargs)}


def _unsupported(what: str) -> TypeError:
    return TypeError(f"{what} cannot run privately: a private model is a chain of "
                     f"{', '.join(SUPPORTED)} (and F.relu / torch.flatten); rewrite the "
                     "model with those layers")


def _chain(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order; refuses branches and anything not supported."""
    if isinstance(model, nn.Sequential):
        return [layer for child in model for layer in _chain(child)]
    if type(model).__module__.startswith("torch.nn.modules"):
        return [model]  # a torch layer: fold_layers takes it or names it
    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 (fx raises many kinds)
        raise _unsupported(f"{type(model).__name__} (it could not be traced: {exc})") from None
    layers, previous = [], None
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            break
        if not node.args or node.args[0] is not previous or any(
                isinstance(a, torch.fx.Node) for a in (*node.args[1:], *node.kwargs.values())):
            raise _unsupported(f"the graph of {type(model).__name__} (node {node.name} is not "
                               "a plain chain)")
        if node.op == "call_module":
            layers.extend(_chain(graph.get_submodule(node.target)))
        elif node.op == "call_function" and node.target in _FUNCTIONS:
            layers.append(_FUNCTIONS[node.target](node))
        elif node.op == "call_method" and node.target in _METHODS:
            layers.append(_METHODS[node.target](node))
        else:
            raise _unsupported(f"{node.op} {getattr(node.target, '__name__', node.target)}")
        previous = node
    return layers


def _fold(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """``bn(layer(x))`` as one layer (eval: running statistics)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(scale)
    folded = copy.deepcopy(layer)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(scale)
    folded.weight = nn.Parameter(layer.weight.detach() * scale.reshape(shape))
    folded.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return folded


def fold_layers(model: nn.Module) -> nn.Sequential:
    """The model as a plain ``nn.Sequential`` of what runs privately: BatchNorm folded
    into the layer before it, Dropout and Identity dropped, and ``ReLU`` before
    ``MaxPool2d`` moved after it (the same function, and the same gradients: max commutes
    with the monotone ReLU, and a window whose max is negative passes no gradient either
    way), so that the comparisons of ReLU run on a quarter of the values of a 2x2 pool.
    Raises TypeError naming any other layer.

    >>> [type(m).__name__ for m in fold_layers(nn.Sequential(
    ...     nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()))]
    ['Conv2d', 'MaxPool2d', 'ReLU', 'Flatten']
    """
    out: list[nn.Module] = []
    for layer in _chain(model):
        name = type(layer).__name__
        if name in ("Dropout", "Identity"):
            continue
        if name.startswith("BatchNorm"):
            if not out or not isinstance(out[-1], nn.Linear | nn.Conv2d) \
                    or not layer.track_running_stats:
                raise _unsupported(f"{name} not right after a Linear/Conv2d")
            out[-1] = _fold(out[-1], layer)
            continue
        if name not in SUPPORTED or not type(layer).__module__.startswith("torch.nn"):
            raise _unsupported(f"layer {type(layer).__qualname__}")
        _check_options(layer)
        out.append(layer)
    for i in range(len(out) - 1):
        if type(out[i]) is nn.ReLU and type(out[i + 1]) is nn.MaxPool2d:
            out[i], out[i + 1] = out[i + 1], out[i]
    return nn.Sequential(*out)


def _check_options(layer: nn.Module) -> None:
    if isinstance(layer, nn.MaxPool2d) and (layer.dilation not in (1, (1, 1))
                                            or layer.ceil_mode or layer.return_indices):
        raise _unsupported("MaxPool2d with dilation, ceil_mode or return_indices")
    if isinstance(layer, nn.AvgPool2d) and (layer.ceil_mode or not layer.count_include_pad
                                            or layer.divisor_override is not None):
        raise _unsupported("AvgPool2d with ceil_mode, count_include_pad=False or a divisor")
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        raise _unsupported(f"Conv2d with padding_mode={layer.padding_mode!r}")


def encrypt(model: nn.Module, *, parties: Sequence[Any], dealer: Any, owner: Any = None,
            allow: Sequence[str] = (), frac_bits: int = mpc.DEFAULT_FRAC_BITS
            ) -> PrivateModel:
    """Secret-share ``model``'s weights among ``parties`` (``dealer``: crypto provider).

    With ``owner`` (the model owner's worker) the folded model is sent there, private to
    it, as an allowlisted graph plus weights, and ``owner`` shares its weights straight
    to the parties; ``allow`` names who may read results computed from them (the data
    owner, to open its predictions). Without ``owner`` the notebook shares the weights.
    """
    plain = fold_layers(model)
    if owner is not None:
        # as send(plain, owner, private=True), with the readers (send drops allow for models)
        reply = owner.request({"kind": "store_module", "spec": module_to_spec(plain),
                               "private": True, "allow": list(allow)})
        at_owner = wrap_reply(owner, reply, owner.context)
        pointers = iter(at_owner.parameters())
        weights = [[share(next(pointers), *parties, dealer=dealer, frac_bits=frac_bits)
                    for _ in layer.parameters()] for layer in plain]
    else:
        weights = [[share(p.detach().double(), *parties, dealer=dealer, frac_bits=frac_bits)
                    for p in layer.parameters()] for layer in plain]
    return PrivateModel(plain, weights, parties=parties, dealer=dealer, owner=owner)


class PrivateModel:
    """A model whose weights are shared among the parties; call it on a shared input.

    The notebook keeps the architecture (layer types and options, never weights once an
    ``owner`` shared them) and drives each layer; see the module for what is missing.
    """

    def __init__(self, plain: nn.Sequential, weights: list[list[FixedPrecisionTensor]], *,
                 parties: Sequence[Any], dealer: Any, owner: Any = None) -> None:
        self.layers = [_skeleton(layer) for layer in plain]
        self.weights = weights
        self.parties, self.dealer, self.owner = list(parties), dealer, owner
        self.last_forward: list[dict[str, Any]] = []
        self.trained_by: str | None = None  # the fingerprint of its encrypted training

    def __repr__(self) -> str:
        names = " -> ".join(type(la).__name__ for la in self.layers)
        where = f"shared from {self.owner.name}" if self.owner is not None else "shared"
        return (f"PrivateModel({names}; weights {where} among "
                f"{', '.join(p.name for p in self.parties)}, dealer {self.dealer.name})")

    def __call__(self, x: FixedPrecisionTensor, *, program: bool = True
                 ) -> FixedPrecisionTensor:
        """The private forward: as one program the parties run (one request each, the
        dealer dealing for the whole forward), or with ``program=False`` layer by layer,
        the notebook starting each op (per-layer bytes then include the dealer's)."""
        if not (isinstance(x, FixedPrecisionTensor) and x.shared):
            raise TypeError("a private model takes a shared input: ppdl_nb.share(x, *parties, "
                            f"dealer=...) among {[p.name for p in self.parties]}, not "
                            f"{type(x).__name__}")
        names = [p.name for p in x.child.session.parties]
        if names != [p.name for p in self.parties]:
            raise ValueError(f"the input is shared among {names}, the model among "
                             f"{[p.name for p in self.parties]}; share both among the same")
        if program:
            x, self.last_forward = run_program(self.layers, self.weights, x,
                                               owner=self._owner_name)
            return x
        session, stats = x.child.session, []
        for layer, weights in zip(self.layers, self.weights, strict=True):
            rounds, sent, t0 = session.rounds, self._sent(), time.perf_counter()
            x = _run(layer, x, weights)
            seconds = time.perf_counter() - t0
            stats.append({"layer": type(layer).__name__, "shape": list(x.shape),
                          "rounds": session.rounds - rounds, "bytes": self._sent() - sent,
                          "seconds": seconds})
        self.last_forward = stats
        return x

    @property
    def _owner_name(self) -> str:
        return self.owner.name if self.owner is not None else "me"

    @property
    def fingerprint(self) -> str:
        """The name of this model's private forward in allowances: its graph, the
        weights' owner and the precision. A data owner that lets someone read the
        predictions of *this* model (and nothing else computed from its input) shares
        its input with ``send(..., allow_programs={pm.fingerprint: [reader]})``."""
        from ppdl_nb.tensors.private_program import model_graph
        from ppdl_nb.tensors.spdz.graph import fingerprint

        f = next((ws[0].frac_bits for ws in self.weights if ws), mpc.DEFAULT_FRAC_BITS)
        return fingerprint(model_graph(self.layers), self._owner_name, f)

    def training(self, *, lr: float, **options: Any) -> Any:
        """An :class:`~ppdl_nb.tensors.private_training.EncryptedTraining` of this model:
        SGD on its shared weights over shared data (``momentum``, ``weight_decay``,
        ``epochs``, ``batch_size``, ``loss``, ``open_loss``, ``seed``). Data owners allow
        readers of the result for its ``fingerprint``; ``.fit(data)`` trains."""
        from ppdl_nb.tensors.private_training import EncryptedTraining

        return EncryptedTraining(self, lr=lr, **options)

    def get(self) -> nn.Sequential:
        """The plain model with its weights opened here: refused unless every owner of
        what went into them (the model owner; after encrypted training, every data
        owner, for that training's program) allowed this notebook."""
        try:
            return _opened(self.layers, self.weights)
        except PermissionError:
            if self.trained_by is None:
                raise
            fp = self.trained_by
        raise PermissionError(
            f"this model was trained on shared data by program {fp}: it opens only to a "
            f"reader every data owner allowed for that program (and the model owner, if "
            f"one shared the weights). Each data owner allows the notebook with "
            f"send(x, owner, private=True, allow_programs={{'{fp}': ['me']}}); until then "
            "the trained model stays shared (it can still run private inference)")

    def _sent(self) -> int:
        """Bytes of the requests the parties and the dealer have received so far (their
        counters: peers' openings, the dealer's corrections, the notebook's requests),
        not counting the request that asks."""
        total = 0
        for w in (*self.parties, self.dealer):
            before = w.bytes_sent
            total += int(w.info()["bytes_in"]) - (w.bytes_sent - before)
        return total


def _skeleton(layer: nn.Module) -> nn.Module:
    """The layer's type and options without its weights (kept in the notebook)."""
    if isinstance(layer, nn.Linear | nn.Conv2d):
        return copy.deepcopy(layer).to("meta")
    return layer


def _run(layer: nn.Module, x: FixedPrecisionTensor, w: list[FixedPrecisionTensor]
         ) -> FixedPrecisionTensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, *w)
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, *w, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, groups=layer.groups)
    if isinstance(layer, nn.ReLU):
        return F.relu(x)
    if isinstance(layer, nn.MaxPool2d):
        return F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.AvgPool2d):
        return F.avg_pool2d(x, layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.Flatten):
        return x.flatten(layer.start_dim, layer.end_dim)
    raise _unsupported(f"layer {type(layer).__name__}")


def _opened(layers: Sequence[nn.Module], weights: Sequence[Sequence[FixedPrecisionTensor]]
            ) -> nn.Sequential:
    """The plain model with the opened weights (refused unless every owner allowed)."""
    out = []
    for layer, ws in zip(layers, weights, strict=True):
        plain = copy.deepcopy(layer)
        if ws:
            plain = plain.to_empty(device="cpu")
            with torch.no_grad():
                for p, w in zip(plain.parameters(), ws, strict=True):
                    p.copy_(w.get().to(p.dtype))
        out.append(plain)
    return nn.Sequential(*out)
