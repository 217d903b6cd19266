"""Options of the ``%%ppdl train ALGORITHM`` parsers: one shared group, one per algorithm.

Each algorithm (``dp`` here, ``fl`` in :mod:`ppdl_nb.magics.train_fl`) has its own
IPython ``magic_arguments`` parser; what every algorithm takes (epochs, batch size,
learning rate, optimizer, loss, seed, progress, where the results land) is declared once,
in :func:`training_options`, and stacked onto each parser as a decorator (an algorithm
adds its own ``--seed`` where it has a seeded sampler). Privacy noise
(``--noise-multiplier``, ``--delta``) is shared the same way by :func:`noise_options`.
The names are the Python API's: ``--noise-multiplier`` is ``noise_multiplier=``,
``--max-grad-norm`` is ``max_grad_norm=``.

>>> @magic_arguments.magic_arguments()
... @training_options(epochs=5, batch_size=64)
... def demo(shell, args, cell):
...     "A demo parser."
>>> args = magic_arguments.parse_argstring(demo, "--lr 0.5 --loss mse --progress bar")
>>> (args.epochs, args.batch_size, args.lr, args.loss, args.optimizer, args.progress)
(5, 64, 0.5, 'mse', None, 'bar')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from IPython.core import magic_arguments

__all__ = ["PROGRESS", "dp_options", "noise_options", "option_group", "training_options"]

PROGRESS = ("plot", "bar", "none")  # live plot and bar, bar only, nothing


def option_group(title: str, arguments: Sequence[magic_arguments.ArgDecorator]
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One decorator adding ``arguments`` under ``title``, in the order given."""
    decorators = [magic_arguments.argument_group(title), *arguments]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for deco in reversed(decorators):  # decorators apply bottom-up; keep source order
            fn = deco(fn)
        return fn

    return decorate


def training_options(*, epochs: int, batch_size: int, epochs_help: str = "epochs"
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every ``train`` algorithm takes, with that algorithm's defaults."""
    arg = magic_arguments.argument
    return option_group("training", [
        arg("--epochs", type=int, default=epochs, help=f"{epochs_help} (default {epochs})"),
        arg("--batch-size", type=int, default=batch_size,
            help=f"examples per batch (default {batch_size})"),
        arg("--lr", type=float, default=0.1, help="learning rate (default 0.1)"),
        arg("--optimizer", default=None,
            help="optimizer by name, e.g. sgd, momentum or adam (default: the cell's "
                 "`optimizer`, else the algorithm's)"),
        arg("--loss", default=None,
            help="loss by name, e.g. cross_entropy, mse or bce_with_logits (default: the "
                 "cell's `loss`, else cross_entropy)"),
        arg("--progress", choices=PROGRESS, default="plot",
            help="live progress: plot (bar and curves), bar, or none (default plot)"),
        arg("--out", default=None,
            help="prefix of the results in the namespace (default: the algorithm's name)"),
    ])


def noise_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Gaussian noise and the delta it is accounted at (DP-SGD, DP-FedAvg)."""
    arg = magic_arguments.argument
    return option_group("privacy noise", [
        arg("--noise-multiplier", "--noise", dest="noise_multiplier", type=float, default=None,
            help="noise multiplier: Gaussian noise std over the clipping norm"),
        arg("--delta", type=float, default=1e-5, help="delta (default 1e-5)"),
    ])


def dp_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What ``train dp`` (DP-SGD) adds: a target epsilon, clipping, a data owner."""
    arg = magic_arguments.argument
    return option_group("differential privacy (DP-SGD)", [
        arg("--epsilon", type=float, default=None,
            help="target epsilon: the noise is calibrated to spend at most this "
                 "(give it or --noise-multiplier)"),
        arg("--max-grad-norm", type=float, default=1.0,
            help="per-example gradient clipping norm (default 1)"),
        arg("--worker", metavar="NAME",
            help="train on this data owner's dataset; its budget pays"),
        arg("--dataset", metavar="NAME", help="the worker's dataset (with --worker)"),
    ])
