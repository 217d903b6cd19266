"""Homomorphic-encryption pictures: ciphertext sizes, precision per layer, time per layer.

They read plain data: byte counts by label; the rows of
:func:`ppdl_nb.he.precision.layer_errors`; an inference run's ``layers`` (each a dict
with ``name``, ``kind``, ``seconds``, ``ciphertexts``, ``nbytes``). Nothing is
registered and matplotlib is imported on the first drawing, not before.

>>> fig = plot_ciphertext_sizes({"public context": 2_000_000, "one ciphertext": 400_000})
>>> fig.axes[0].get_xlabel()
'bytes (log scale)'
>>> layers = [{"name": "fc", "kind": "linear", "seconds": 0.5, "ciphertexts": 10}]
>>> plot_layer_times(layers).axes[0].get_ylabel()
'seconds'
>>> rows = [{"name": "fc", "kind": "linear", "max_error": 1e-4, "max_value": 2.0, "bits": 14.3}]
>>> plot_layer_precision(rows).axes[0].get_ylabel()
'bits of precision'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ppdl_nb.viz.figures import new_figure

__all__ = ["plot_ciphertext_sizes", "plot_layer_precision", "plot_layer_times"]


def _labels(layers: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{la['name']}\n({la['kind']})" for la in layers]


def _layer_axes(layers: Sequence[Any], ax: Any, what: str) -> Any:
    """The axes to draw one value per layer on (a new figure unless ``ax``)."""
    if not layers:
        raise ValueError(f"no layers to draw: {what}")
    return ax if ax is not None else new_figure(figsize=(6.0, 3.0)).add_subplot()


def plot_ciphertext_sizes(sizes: Mapping[str, float], *, ax: Any = None,
                          title: str = "what crosses the wire") -> Any:
    """Horizontal bars of bytes per label (log scale); returns the Figure."""
    if not sizes:
        raise ValueError("no sizes to draw: pass {label: bytes}")
    if ax is None:
        ax = new_figure(figsize=(6.0, 0.8 + 0.4 * len(sizes))).add_subplot()
    labels, values = list(sizes), [float(v) for v in sizes.values()]
    bars = ax.barh(labels, values, color="#4c72b0")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("bytes (log scale)")
    ax.set_title(title)
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {_human(v)}",
                va="center", fontsize=8)
    return ax.figure


def plot_layer_precision(rows: Sequence[Mapping[str, Any]], *, ax: Any = None) -> Any:
    """Bits of precision left after each layer (CKKS noise against plaintext)."""
    ax = _layer_axes(rows, ax, "pass ppdl_nb.he.precision.layer_errors(...)")
    bits = [min(float(r["bits"]), 60.0) for r in rows]
    ax.plot(range(len(rows)), bits, marker="o", color="#dd8452")
    ax.set_xticks(range(len(rows)), _labels(rows), fontsize=8)
    ax.set_ylabel("bits of precision")
    ax.set_ylim(0, max(bits) + 4)
    ax.set_title("encrypted vs plaintext, after each layer")
    for i, r in enumerate(rows):
        ax.annotate(f"{float(r['max_error']):.1e}", (i, bits[i]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    return ax.figure


def plot_layer_times(layers: Sequence[Mapping[str, Any]], *, ax: Any = None) -> Any:
    """Seconds per layer (bars) with the ciphertexts each layer produced (labels)."""
    ax = _layer_axes(layers, ax, "pass an inference run's .layers")
    secs = [float(la["seconds"]) for la in layers]
    bars = ax.bar(range(len(layers)), secs, color="#55a868")
    ax.set_xticks(range(len(layers)), _labels(layers), fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("time per layer (model owner, on ciphertexts)")
    for bar, la in zip(bars, layers, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                f"{la.get('ciphertexts', '')} ct", ha="center", va="bottom", fontsize=7)
    return ax.figure


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
