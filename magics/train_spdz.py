"""``%%ppdl train spdz``: encrypted training (SGD on secret shares) from a cell.

The cell defines ``model`` (a ``torch.nn.Module`` the parties can train: ``Linear``,
``Conv2d``, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten``; or a
:class:`~ppdl_nb.tensors.private_model.PrivateModel` to go on training) and ``data``, a
list of ``(x, y)`` pairs, one per data owner: pointers to the owners' private tensors
(``y`` one-hot), which the magic shares among ``--parties`` from the owners' workers, or
tensors already shared. ``test = (x, y)`` (plain tensors) is evaluated if the notebook
may open the trained model. The magic calls :func:`ppdl_nb.encrypt`,
:meth:`~ppdl_nb.tensors.private_model.PrivateModel.training` and
:meth:`~ppdl_nb.tensors.private_training.EncryptedTraining.fit`: nothing a Python user
could not call. It prints the training program's fingerprint first (data owners allow
readers of the trained model for it; ``--fingerprint`` prints only that), follows the
steps live (rounds, bytes, time; the loss only with ``--open-loss``), and leaves
``<out>_model`` (the model, still shared), ``<out>_history``, ``<out>_training`` and
``<out>_fingerprint`` in the namespace; ``<out>_plain`` too when the data owners let the
notebook open the model::

    %%ppdl train spdz --parties p1 p2 --dealer dealer --lr 0.1 --momentum 0.9
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    data = [(x_alice, y_alice), (x_bob, y_bob)]
"""

from __future__ import annotations

import time
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.train import TRAINERS, run_training_cell
from ppdl_nb.magics.train_options import noise_options, option_group, training_options

from ppdl_nb.workers.transport.party import local_party

__all__ = ["train_spdz"]

FRAC_BITS = 20  # the training's default: at 16, lr x gradient nears the last place
_arg = magic_arguments.argument


def _worker(name: str, role: str) -> Any:
    try:
        return local_party().client_for(name)
    except (KeyError, ValueError, ConnectionError):
        raise UsageError(f"{role}: no worker named {name!r}: launch it first "
                         f"(%ppdl launch {name}) or create it") from None


def _api(exc: Exception, what: str) -> UsageError:
    """An API refusal (ValueError, TypeError) as a usage error that says where."""
    return UsageError(f"{what}: {exc}")


# ---- the model, the data, the program ------------------------------------------------------
def _private_model(model: Any, args: Any) -> Any:
    """The cell's model, encrypted among the parties (or already a PrivateModel)."""
    from torch import nn

    from ppdl_nb.tensors.private_model import PrivateModel, encrypt

    if isinstance(model, PrivateModel):
        if args.owner or args.allow or args.parties or args.dealer:
            raise UsageError("`model` is already encrypted (a PrivateModel): it keeps its "
                             "parties, dealer and owner; drop --parties, --dealer, --owner "
                             "and --allow, or give a torch.nn.Module to encrypt")
        return model
    if not isinstance(model, nn.Module):
        raise UsageError(f"`model` must be a torch.nn.Module (or a PrivateModel), not "
                         f"{type(model).__name__}")
    if not args.parties or len(args.parties) < 2 or not args.dealer:
        raise UsageError("encrypted training needs --parties NAME NAME ... (two or more "
                         "workers that hold the shares and train) and --dealer NAME (the "
                         "crypto provider), e.g. --parties p1 p2 --dealer dealer")
    if len(set(args.parties)) < len(args.parties) or args.dealer in args.parties:
        raise UsageError(f"the parties and the dealer must be different workers, got "
                         f"--parties {' '.join(args.parties)} --dealer {args.dealer}")
    if args.allow and not args.owner:
        raise UsageError("--allow names who the model owner lets read results from its "
                         "weights: it needs --owner NAME (without it the notebook shares "
                         "the weights and nothing is to allow)")
    parties = [_worker(n, "--parties") for n in args.parties]
    dealer = _worker(args.dealer, "--dealer")
    owner = _worker(args.owner, "--owner") if args.owner else None
    try:
        return encrypt(model, parties=parties, dealer=dealer, owner=owner,
                       allow=tuple(args.allow or ()), frac_bits=args.frac_bits or FRAC_BITS)
    except (TypeError, ValueError) as exc:
        raise _api(exc, "the model cannot be trained on shares") from None


def _training(private_model: Any, args: Any, ns: dict[str, Any]) -> Any:
    """The training program the options describe (``PrivateModel.training``)."""
    optimizer = args.optimizer or ns.get("optimizer")
    if optimizer not in (None, "sgd"):
        raise UsageError(f"encrypted training runs SGD, not {optimizer!r}: use --momentum "
                         "and --weight-decay for the rest (PyTorch's SGD semantics)")
    loss = args.loss or ns.get("loss") or "cross_entropy"
    if not isinstance(loss, str):
        raise UsageError("encrypted training takes the loss by name (cross_entropy or mse), "
                         f"not a {type(loss).__name__}: the parties run it on shares")
    try:
        return private_model.training(
            lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
            epochs=args.epochs, batch_size=args.batch_size, loss=loss,
            open_loss=args.open_loss, seed=args.seed, max_grad_norm=args.max_grad_norm,
            noise_multiplier=args.noise_multiplier or 0.0)
    except (TypeError, ValueError) as exc:
        raise _api(exc, "the training options") from None


def _pairs(data: Any) -> list[tuple[Any, Any]]:
    """``data`` as a list of (x, y) pairs: one pair alone is taken as one owner's."""
    def pair(p: Any) -> bool:
        return isinstance(p, tuple | list) and len(p) == 2
    if pair(data) and not any(isinstance(d, tuple | list) for d in data):
        data = [data]
    if not isinstance(data, tuple | list) or not data or not all(pair(p) for p in data):
        raise UsageError("the cell must set `data`: a list of (x, y) pairs, one per data "
                         "owner: pointers to the owners' private tensors (y one-hot), or "
                         "tensors already shared, e.g. data = [(x_alice, y_alice), "
                         "(x_bob, y_bob)]")
    return [tuple(p) for p in data]


def _owners(pairs: list[tuple[Any, Any]]) -> list[str]:
    """The workers that hold the data the cell pointed to (shared data: unknown here)."""
    from ppdl_nb.tensors.pointer import PointerTensor

    return sorted({t.location.name for p in pairs for t in p if isinstance(t, PointerTensor)})


def _share(pairs: list[tuple[Any, Any]], private_model: Any, frac_bits: int) -> list[tuple]:
    """Each owner's data shared among the model's parties (shared data left as it is)."""
    from ppdl_nb.tensors.fixed import FixedPrecisionTensor, share

    def shared(t: Any) -> Any:
        if isinstance(t, FixedPrecisionTensor) and t.shared:
            return t
        return share(t, *private_model.parties, dealer=private_model.dealer,
                             frac_bits=frac_bits)

    try:
        return [(shared(x), shared(y)) for x, y in pairs]
    except (TypeError, ValueError) as exc:
        raise _api(exc, "sharing `data` among the parties") from None


def _frac_bits(args: Any, private_model: Any) -> int:
    weights = [w for ws in private_model.weights for w in ws]
    return weights[0].frac_bits if weights else args.frac_bits or FRAC_BITS


def _check_test(test: Any) -> tuple[Any, Any] | None:
    import torch

    if test is None:
        return None
    if not (isinstance(test, tuple | list) and len(test) == 2
            and all(isinstance(t, torch.Tensor) for t in test)):
        raise UsageError("`test` must be (x_test, y_test), plain tensors in the notebook "
                         "(labels or one-hot): the opened model is evaluated on them")
    return test[0], test[1]


# ---- progress ------------------------------------------------------------------------------
class _Progress:
    """Per step: the bar, a status line and (``--progress plot``) a curve: the opened loss
    with ``--open-loss``, else the parties' seconds per step."""

    def __init__(self, mode: str, total: int) -> None:
        from ppdl_nb.magics.progress import LivePanel

        self.steps: list[dict[str, Any]] = []
        self.panel = LivePanel(mode, total=total, unit="steps")

    def step(self, record: dict[str, Any]) -> None:
        from ppdl_nb.viz.units import human_bytes

        self.steps.append(dict(record))
        loss = f", loss {record['loss']:.3f}" if record.get("loss") is not None else ""
        status = (f"step {record['step']}/{record['of']}: {record['rounds']} rounds, "
                  f"{human_bytes(record['bytes'])} sent, {record['wall']:.2f} s{loss}")
        fig = self._curve() if self.panel.mode == "plot" else None
        self.panel.step(record["step"], status, fig)

    def _curve(self) -> Any:
        from matplotlib.ticker import MaxNLocator

        from ppdl_nb.viz.figures import new_figure

        fig = new_figure(figsize=(5, 2.4))
        ax = fig.add_subplot()
        steps = [s["step"] for s in self.steps]
        if self.steps[-1].get("loss") is not None:
            ax.plot(steps, [s["loss"] for s in self.steps], "o-")
            ax.set_ylabel("loss")
        else:
            ax.plot(steps, [s["seconds"] for s in self.steps], "o-")
            ax.set_ylabel("seconds per step")
            ax.set_ylim(bottom=0)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{self.steps[-1]['rounds']} rounds per step, nothing opened"
                     if self.steps[-1].get("loss") is None else "loss opened each step")
        return fig


def _fit(training: Any, shared: list[tuple], args: Any) -> tuple[Any, bool]:
    """Train with live progress; the history and whether a Ctrl-C stopped it."""
    from ppdl_nb.tensors.private_training import TrainingHistory

    rows = sum(x.shape[0] for x, _ in shared)
    progress = _Progress(args.progress, len(training.batches(rows)))
    try:
        history = training.fit(shared, callback=progress.step)
    except KeyboardInterrupt:  # between steps (the running one was finished and taken)
        history = TrainingHistory(steps=progress.steps, interrupted=True)
    except PermissionError as exc:
        if not args.open_loss:
            raise
        raise UsageError(
            f"--open-loss: opening the loss after step {len(progress.steps) + 1} was refused "
            f"({type(exc).__name__}). The loss is computed from every owner's data, so it "
            f"opens only to readers every data owner allowed for program "
            f"{training.fingerprint}; train without --open-loss, or have each owner allow "
            f"'me' for it. The model stays shared in {args.out}_model") from None
    except (TypeError, ValueError) as exc:
        raise _api(exc, "encrypted training") from None
    finally:
        progress.panel.finish()
    return history, history.interrupted


# ---- opening ---------------------------------------------------------------------------------
def _open(shell: Any, private_model: Any, fingerprint: str, owners: list[str], args: Any,
          test: tuple[Any, Any] | None) -> None:
    """Open the model if every owner allowed the notebook; else say which allowance."""
    import torch

    try:
        plain = private_model.get()
    except PermissionError:
        who = f"each data owner ({', '.join(owners)})" if owners else "each data owner"
        model_owner = ""
        if private_model.owner is not None and "me" not in (args.allow or ()):
            model_owner = (f" The model owner {private_model.owner.name} must let the "
                           "notebook read results from its weights too (--allow me).")
        print(f"the notebook may not open the trained model: it is a function of every "
              f"owner's data (not differentially private), so it opens only to readers "
              f"every data owner allowed for this training program. To open it here, "
              f"{who} must allow 'me' for program {fingerprint} when sending its data, "
              f"send(x, owner, private=True, allow_programs={{'{fingerprint}': ['me']}}), "
              f"and the model be trained on that data.{model_owner} It stays shared in "
              f"{args.out}_model.")
        return
    shell.user_ns[f"{args.out}_plain"] = plain
    where = f"opened in {args.out}_plain (every data owner allowed 'me' for program " \
            f"{fingerprint})"
    if test is None:
        print(where)
        return
    x, y = test
    with torch.no_grad():
        predicted = plain(x.to(torch.get_default_dtype())).argmax(1)
    labels = y.argmax(1) if y.dim() == 2 else y
    accuracy = (predicted == labels).float().mean().item()
    print(f"{where}; test accuracy {accuracy:.3f} on {len(labels)} examples")


@magic_arguments.magic_arguments()
@option_group("encrypted training (SPDZ)", [
    _arg("--parties", nargs="+", metavar="NAME",
         help="workers that hold the shares and train (two or more)"),
    _arg("--dealer", metavar="NAME",
         help="the crypto provider: deals correlated randomness, sees no inputs"),
    _arg("--owner", metavar="NAME",
         help="the model owner's worker: it shares the weights (default: the notebook)"),
    _arg("--allow", nargs="+", metavar="NAME",
         help="with --owner: who the model owner lets read results from its weights"),
    _arg("--momentum", type=float, default=0.0, help="SGD momentum (default 0)"),
    _arg("--weight-decay", type=float, default=0.0, help="SGD weight decay (default 0)"),
    _arg("--frac-bits", type=int, default=None,
         help=f"fractional bits of the fixed-point shares (default {FRAC_BITS})"),
    _arg("--open-loss", action="store_true",
         help="open each step's mean loss to the notebook (it leaks a little about the "
              "data; part of the fingerprint; off by default)"),
    _arg("--seed", type=int, default=0, help="the batch order (default 0)"),
    _arg("--max-grad-norm", type=float, default=None,
         help="DP-SGD inside the shares: clip each example's gradient to this norm "
              "(with --noise-multiplier; default: no DP)"),
    _arg("--fingerprint", action="store_true",
         help="only print the training program's fingerprint, for the data owners to "
              "allow readers for it before training"),
])
@noise_options()
@training_options(epochs=1, batch_size=64)
def train_spdz(shell: Any, args: Any, cell: str | None) -> None:
    """Encrypted training: SGD on the shared weights over the owners' shared data.

    The cell assigns `model` (Linear, Conv2d, ReLU, pooling, Flatten layers) and
    `data = [(x, y), ...]`,
    one pair per data owner: pointers to its private tensors (y one-hot), shared here
    among --parties, or tensors already shared; optionally `test = (x, y)`.
    """
    ns = run_training_cell(shell, cell)
    if ns is None:
        return
    test = _check_test(ns.get("test"))
    pairs = None if args.fingerprint else _pairs(ns.get("data"))
    private_model = _private_model(ns["model"], args)
    training = _training(private_model, args, ns)
    fingerprint = training.fingerprint
    out = shell.user_ns
    out[f"{args.out}_fingerprint"] = fingerprint
    print(f"training program {fingerprint} (the layers, hyperparameters, epochs, batch size "
          f"and model owner): data owners allow readers of the trained model for it, "
          f"send(..., allow_programs={{'{fingerprint}': ['me']}})")
    if pairs is None:
        return
    shared = _share(pairs, private_model, _frac_bits(args, private_model))
    out[f"{args.out}_model"], out[f"{args.out}_training"] = private_model, training
    started = time.perf_counter()
    history, stopped = _fit(training, shared, args)
    seconds = time.perf_counter() - started
    out[f"{args.out}_history"] = history
    results = f"results in {args.out}_model (shared), {args.out}_history, {args.out}_training"
    steps = history.steps
    if stopped:
        print(f"stopped after step {len(steps)} of {steps[0]['of'] if steps else '?'} "
              f"(Ctrl-C): the parties finished that step together; the model stays "
              f"shared, as trained so far; {results}")
    else:
        from ppdl_nb.viz.units import human_bytes

        last = steps[-1]
        print(f"encrypted training: {len(steps)} steps ({args.epochs} epoch"
              f"{'s' if args.epochs != 1 else ''}, batches of "
              f"{args.batch_size}) on {', '.join(p.name for p in private_model.parties)}, "
              f"dealer {private_model.dealer.name}: {last['rounds']} rounds and "
              f"{human_bytes(last['bytes'])} per step, {seconds:.1f} s in all; {results}")
    if args.noise_multiplier:
        rows = sum(x.shape[0] for x, _ in shared)
        from ppdl_nb.dp.accounting import encrypted_training_epsilon

        eps = encrypted_training_epsilon(training, delta=args.delta, steps=len(steps),
                                         rows=rows)
        print(f"DP-SGD inside the shares: epsilon {eps:.2f} at delta {args.delta:g} "
              f"(noise multiplier {args.noise_multiplier:g}, clipping norm "
              f"{args.max_grad_norm:g}, sample rate {args.batch_size}/{rows})")
    _open(shell, private_model, fingerprint, _owners(pairs), args, test)


TRAINERS["spdz"] = train_spdz
