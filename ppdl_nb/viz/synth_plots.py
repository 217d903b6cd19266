"""Synthetic-data pictures: sample grids, an epsilon slider over them, the privacy-utility
chart across generators, and the leakage table.

They read plain data: labelled samples ``(xs, ys)`` (square images, pixels in [0, 1]);
utility rows ``{"method", "epsilon", "accuracy"}`` (``epsilon = inf`` for a ceiling); and
leakage rows of :mod:`ppdl_nb.synth.leakage` results. The drawings are registered with
:mod:`ppdl_nb.plotting` under ``synth.*`` when this module is imported; matplotlib and
ipywidgets are imported on the first drawing, not before.

>>> import math, torch
>>> fig = plot_sample_grid(torch.rand(20, 16), torch.arange(20) % 2, per_class=3)
>>> fig.axes[0].get_ylabel()
'label'
>>> rows = [{"method": "DP-MERF", "epsilon": 1.0, "accuracy": 0.8},
...         {"method": "DP-MERF", "epsilon": 10.0, "accuracy": 0.9},
...         {"method": "real data", "epsilon": math.inf, "accuracy": 0.95}]
>>> plot_privacy_utility(rows).axes[0].get_xlabel()
'epsilon (log scale)'
>>> slider = EpsilonGrids({1.0: (torch.rand(4, 16), torch.arange(4) % 2)}, per_class=2)
>>> slider.slider.value
1.0
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ppdl_nb.plotting import register_plot
from ppdl_nb.viz.figures import new_figure

__all__ = ["EpsilonGrids", "leakage_table", "plot_privacy_utility", "plot_sample_grid"]


@register_plot("synth.grid")
def plot_sample_grid(xs: torch.Tensor, ys: torch.Tensor, *, per_class: int = 8,
                     title: str | None = None, ax: Any = None) -> Any:
    """One row per class, ``per_class`` samples each (square images, drawn as one mosaic);
    returns the Figure."""
    if len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(f"need as many labels as samples (> 0), got {len(xs)} and {len(ys)}")
    side = math.isqrt(xs.shape[1])
    if side * side != xs.shape[1]:
        raise ValueError(f"samples of {xs.shape[1]} values are not square images")
    classes = sorted(set(ys.tolist()))
    cell = side + 1  # one pixel of gap between tiles
    mosaic = torch.ones(len(classes) * cell - 1, per_class * cell - 1)
    for r, c in enumerate(classes):
        for j, i in enumerate((ys == c).nonzero().flatten()[:per_class].tolist()):
            mosaic[r * cell:r * cell + side, j * cell:j * cell + side] = \
                xs[i].detach().reshape(side, side)
    if ax is None:
        ax = new_figure(figsize=(0.4 * per_class + 0.4, 0.4 * len(classes) + 0.4)).add_subplot()
    ax.imshow(mosaic.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([r * cell + side / 2 for r in range(len(classes))], [str(c) for c in classes])
    ax.set_xticks([])
    ax.set_ylabel("label")
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class EpsilonGrids:
    """A slider over epsilon that shows the sample grid of the generator trained at it.

    ``grids``: epsilon -> ``(xs, ys)``, samples of generators trained beforehand (each grid
    is drawn once, to PNG, so moving the slider only swaps a picture). Display the object
    (or ``.widget``) in Jupyter.
    """

    def __init__(self, grids: Mapping[float, tuple[torch.Tensor, torch.Tensor]], *,
                 per_class: int = 8, label: str = "generator") -> None:
        import ipywidgets as widgets

        if not grids:
            raise ValueError("no grids to show: pass {epsilon: (samples, labels)}")
        self.epsilons = sorted(grids)
        self.pngs = {e: _png(plot_sample_grid(*grids[e], per_class=per_class,
                                              title=f"{label}, epsilon = {e:g}"))
                     for e in self.epsilons}
        self.slider = widgets.SelectionSlider(
            options=[(f"{e:g}", e) for e in self.epsilons], value=self.epsilons[0],
            description="epsilon", continuous_update=True)
        self.image = widgets.Image(value=self.pngs[self.epsilons[0]], format="png")
        self.slider.observe(self._show, names="value")
        self.widget = widgets.VBox([self.slider, self.image])

    def _show(self, change: Mapping[str, Any]) -> None:
        self.image.value = self.pngs[change["new"]]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, plus the first grid as a PNG for viewers without widget state."""
        import base64

        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        bundle["image/png"] = base64.b64encode(self.pngs[self.epsilons[0]]).decode()
        shown = ", ".join(f"{e:g}" for e in self.epsilons)
        bundle["text/plain"] = f"sample grids at epsilon {shown} (a slider; the first shown)"
        return bundle


@register_plot("synth.utility")
def plot_privacy_utility(rows: Sequence[Mapping[str, Any]], *, ax: Any = None,
                         ylabel: str = "accuracy on real held-out data") -> Any:
    """Accuracy against epsilon, one line per method; ``epsilon = inf`` rows are dashed
    ceilings. Optional ``low``/``high`` keys draw a min-max bar. Returns the Figure."""
    if not rows:
        raise ValueError("no rows to draw: pass [{'method', 'epsilon', 'accuracy'}, ...]")
    if ax is None:
        ax = new_figure(figsize=(6.0, 3.6)).add_subplot()
    methods: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        methods.setdefault(str(r["method"]), []).append(r)
    for method, rs in methods.items():
        finite = sorted((r for r in rs if math.isfinite(r["epsilon"])),
                        key=lambda r: r["epsilon"])
        if finite:
            eps = [r["epsilon"] for r in finite]
            acc = [r["accuracy"] for r in finite]
            err = [[a - r.get("low", a) for a, r in zip(acc, finite, strict=True)],
                   [r.get("high", a) - a for a, r in zip(acc, finite, strict=True)]]
            ax.errorbar(eps, acc, yerr=err, marker="o", capsize=3, label=method)
        for r in rs:
            if not math.isfinite(r["epsilon"]):
                ax.axhline(r["accuracy"], linestyle="--", linewidth=1, color="gray")
                ax.text(ax.get_xlim()[0] if finite else 1.0, r["accuracy"],
                        f" {method} (no privacy)", fontsize=7, va="bottom", color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="center right")
    ax.set_title("privacy against utility: classifier trained on synthetic data only",
                 fontsize=9)
    return ax.figure


def _interval(result: Any, attr: str) -> str:
    value, (lo, hi) = getattr(result, attr), getattr(result, attr + "_ci")
    return f"{value:6.3f} [{lo:6.3f}, {hi:6.3f}]"


def leakage_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table of leakage results per release: ``{release: {"epsilon": e,
    "membership": MembershipResult, "singling_out"|"linkability"|"inference":
    RiskResult}}``; each figure with its 95% interval.

    >>> from ppdl_nb.synth.leakage import RiskResult, wilson
    >>> hit = RiskResult(wilson(9, 10), wilson(0, 10), 10)  # 9 of 10 members, no stranger
    >>> print(leakage_table({"copy": {"epsilon": float("inf"), "linkability": hit}}))
    release  epsilon  linkability
    copy         inf   0.900 [ 0.441,  0.982]
    """
    if not rows:
        raise ValueError("no releases to tabulate")
    risks = [k for k in ("membership", "singling_out", "linkability", "inference")
             if any(k in r for r in rows.values())]
    width = max(len("release"), *(len(k) for k in rows))
    head = f"{'release':<{width}}  {'epsilon':>7}" + "".join(
        f"  {('membership AUC' if k == 'membership' else k):<23}" for k in risks)
    lines = [head.rstrip()]
    for name, r in rows.items():
        cells = []
        for k in risks:
            res = r.get(k)
            cells.append("" if res is None else
                         _interval(res, "auc" if k == "membership" else "risk"))
        eps = r.get("epsilon", math.inf)
        lines.append((f"{name:<{width}}  {eps:>7g}" + "".join(f"  {c:<23}" for c in cells))
                     .rstrip())
    return "\n".join(lines)
