"""Share distributions: each party's share looks uniform over the ring, whatever the secret.

Each party histograms its own share (a protocol step; one share alone reveals nothing).
Where the notebook knows the secret (it shared it), the plot adds the secret's
distribution and one party's share against the secret, to show there is no correlation.

>>> import torch, ppdl_nb
>>> # fig = plot_shares(ppdl_nb.share(torch.randn(1000), bob, charlie, dealer=dave))
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch

from ppdl_nb.tensors.fixed import FixedPrecisionTensor
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.tensors.spdz.steps import histogram
from ppdl_nb.viz.chain_diagram import worker_color
from ppdl_nb.workers.core.codec import Ref

__all__ = ["plot_shares", "share_histograms"]


def _shared(x: Any) -> SharedTensor:
    if isinstance(x, FixedPrecisionTensor) and x.shared:
        return x.child
    if isinstance(x, SharedTensor):
        return x
    raise TypeError(f"expected a shared tensor, got {type(x).__name__}")


def share_histograms(x: Any, *, bins: int = 40) -> dict[str, torch.Tensor]:
    """Each party's histogram of its own share over the ring, scaled to [-1, 1)."""
    shared = _shared(x)
    return {p.name: histogram.on(p, x=Ref(s.id_at_location), bins=bins)
            for p, s in zip(shared.session.parties, shared.shares, strict=True)}


def plot_shares(x: Any, *, secret: torch.Tensor | None = None, bins: int = 40) -> Any:
    """A figure: the secret's distribution (if known here), each party's share histogram,
    and (if the notebook may see one share) that share against the secret."""
    hists = share_histograms(x, bins=bins)
    shared = _shared(x)
    panels = len(hists) + (1 if secret is not None else 0) + (1 if secret is not None else 0)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 2.8), squeeze=False)
    axes = list(axes[0])
    edges = torch.linspace(-1, 1, bins + 1)
    if secret is not None:
        ax = axes.pop(0)
        ax.hist(secret.reshape(-1).double().numpy(), bins=bins, color="#555")
        ax.set_title("secret")
    for name, counts in hists.items():
        ax = axes.pop(0)
        ax.bar(edges[:-1].numpy(), counts.numpy(), width=2 / bins, align="edge",
               color=worker_color(name))
        ax.set_title(f"{name}'s share")
        ax.set_xlabel("value / 2^63")
        ax.set_xlim(-1, 1)
    if secret is not None:
        ax = axes.pop(0)
        first = shared.shares[0]
        one_share = first.location.request({"kind": "fetch", "id": first.id_at_location,
                                            "keep": True})["value"]
        ax.scatter(secret.reshape(-1).double().numpy(),
                   (one_share.reshape(-1).double() / 2.0**63).numpy(), s=4,
                   color=worker_color(first.location.name))
        ax.set_title(f"{first.location.name}'s share vs secret")
        ax.set_xlabel("secret")
    fig.tight_layout()
    plt.close(fig)
    return fig
