"""Figures that show in Jupyter without pyplot: register IPython's PNG display once.

Plot helpers return a plain ``matplotlib.figure.Figure`` (not tracked by pyplot, so
nothing pops up in scripts and nothing leaks). Jupyter shows such a figure as an image
only when IPython has a PNG formatter for it, which pyplot installs lazily; this does
it directly.

>>> from matplotlib.figure import Figure
>>> fig = new_figure(figsize=(3, 2))
>>> isinstance(fig, Figure)
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure", "png_base64", "show_figures_in_ipython", "show_in", "svg_png",
           "have_png_renderer"]

_done = False


def show_figures_in_ipython() -> None:
    """In an IPython shell, display Figure values as PNG (idempotent; no-op elsewhere)."""
    global _done
    if _done:
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})
        _done = True


def new_figure(**kwargs: Any) -> Any:
    """A constrained-layout Figure that Jupyter will draw as a cell's value."""
    from matplotlib.figure import Figure

    show_figures_in_ipython()
    return Figure(layout="constrained", **kwargs)


def png_base64(fig: Any, *, dpi: int = 90) -> str:
    """``fig`` as a PNG, base64-encoded (the form notebooks store images in)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def show_in(out: Any, fig: Any, text: str) -> None:
    """Make ``fig`` the only output of the Output widget ``out``, as a PNG; safe from any
    thread (capturing with ``with out:`` from a background thread loses the output).
    ``text`` is its plain-text form, for viewers without images."""
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": png_base64(fig), "text/plain": text}},)


def have_png_renderer() -> bool:
    """Whether :func:`svg_png` can render (the ``resvg-py`` package is installed)."""
    import importlib.util

    return importlib.util.find_spec("resvg_py") is not None


def svg_png(svg: str, *, zoom: float = 2.0) -> tuple[bytes, dict[str, int]] | None:
    """``svg`` as a PNG at ``zoom`` times its size, with the display size as metadata:
    what a ``_repr_png_`` returns, so that stored notebooks carry pictures that any viewer
    shows (and nbval does not compare as text). Fonts are matplotlib's DejaVu, so the
    picture is the same on every machine. None without the ``resvg-py`` renderer."""
    try:
        import resvg_py
    except ImportError:
        return None
    import os
    import re

    import matplotlib

    fonts = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    png = resvg_py.svg_to_bytes(svg_string=svg, skip_system_fonts=True, font_dirs=[fonts],
                                font_family="DejaVu Sans", sans_serif_family="DejaVu Sans",
                                monospace_family="DejaVu Sans Mono", zoom=zoom,
                                background="#ffffff")
    size = re.search(r'<svg[^>]* width="([\d.]+)" height="([\d.]+)"', svg)
    meta = {"width": round(float(size[1])), "height": round(float(size[2]))} if size else {}
    return bytes(png), meta
