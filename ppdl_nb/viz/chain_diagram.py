"""Chain diagrams: wrappers as boxes, pointers as arrows to worker-coloured boxes.

The SVG is deterministic (no random ids, no dates). Jupyter shows it as a PNG rendered
from that SVG (:func:`~ppdl_nb.viz.figures.svg_png`), which every notebook viewer shows
and nbval does not compare as text; ``.svg()`` gives the SVG itself.

>>> import torch
>>> ChainDiagram.of(torch.ones(2)).svg().startswith("<svg")
True
"""

from __future__ import annotations

import zlib
from html import escape
from typing import Any

from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.viz.figures import have_png_renderer, svg_png

__all__ = ["ChainDiagram", "worker_color"]

_PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f"]
_NOTEBOOK = "#bab0ac"
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 200, 58, 44, 16, 10
CHAR_W = 6.0  # px per character at 12 px sans-serif (about 5.3 regular, 6.5 bold)


def worker_color(name: str) -> str:
    """A stable colour per worker name (the notebook, ``me``, is grey)."""
    if name == "me":
        return _NOTEBOOK
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


class ChainDiagram:
    """An SVG drawing of a chain; displays itself in Jupyter."""

    def __init__(self, links: list[Link], text: str = "") -> None:
        self.links = links
        self.text = text
        self._parts: list[str] = []
        self._width = 0.0
        self._box_w = BOX_W

    @classmethod
    def of(cls, obj: Any) -> ChainDiagram:
        return cls(chain_of(obj), chain_text(obj))

    def __repr__(self) -> str:
        return self.text or "\n".join(link.text() for link in self.links)

    def _repr_png_(self) -> tuple[bytes, dict[str, int]] | None:
        return svg_png(self.svg())

    def _repr_svg_(self) -> str | None:  # only where no PNG renderer is installed
        return None if have_png_renderer() else self.svg()

    def svg(self) -> str:
        self._parts, self._width = [], 0.0
        longest = max((len(t) for t in self._texts(self.links)), default=0)
        self._box_w = max(BOX_W, round(longest * CHAR_W + 20))  # no text past a box
        height = self._row(self.links, PAD, PAD)
        body = "".join(self._parts)
        w, h = self._width + PAD, height + 2 * PAD
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="sans-serif" font-size="12">'
            '<defs><marker id="ppdl-arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" '
            'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="#333"/></marker></defs>'
            f"{body}</svg>"
        )

    def _texts(self, links: list[Link]) -> list[str]:
        """Every line a box of ``links`` will hold (to size the boxes to the longest)."""
        out = []
        for link in links:
            out += [link.kind, self._sub(link)]
            if link.target is not None:
                detail = " ".join(p for p in (_shape(link.shape), link.dtype or "") if p)
                out += [f"data on {link.target} (private)" if link.private
                        else f"data on {link.target}", detail]
            for child in link.children or ():
                out += self._texts(child)
        return out

    # ---- layout ------------------------------------------------------------------------
    def _row(self, links: list[Link], x: float, y: float) -> float:
        """Draw ``links`` left to right from (x, y); return the height used."""
        height = BOX_H
        for i, link in enumerate(links):
            self._box(x, y, link.holder, link.kind, self._sub(link))
            if link.children:
                cy, child_x = y, x + self._box_w + GAP_X
                for child in link.children:
                    self._arrow(x + self._box_w, y + BOX_H / 2, child_x, cy + BOX_H / 2)
                    cy += self._row(child, child_x, cy) + GAP_Y
                height = max(height, cy - y - GAP_Y)
                return height
            if link.target is not None and i == len(links) - 1:
                tx = x + self._box_w + GAP_X
                self._arrow(x + self._box_w, y + BOX_H / 2, tx, y + BOX_H / 2)
                detail = " ".join(p for p in (_shape(link.shape), link.dtype or "") if p)
                self._box(tx, y, link.target, f"data on {link.target}", detail,
                          private=link.private)
                x = tx
            elif i < len(links) - 1:
                right = x + self._box_w
                self._arrow(right, y + BOX_H / 2, right + GAP_X, y + BOX_H / 2)
            x += self._box_w + GAP_X
        return height

    def _sub(self, link: Link) -> str:
        where = f"{link.holder}:{link.holder_id}" if link.holder_id is not None else link.holder
        if link.target is not None:
            return f"{where} \u2192 {link.target}:{link.target_id}"
        return " ".join(p for p in (where, link.note or _shape(link.shape)) if p)

    def _box(self, x: float, y: float, owner: str, title: str, sub: str,
             private: bool = False) -> None:
        color = worker_color(owner)
        dash = ' stroke-dasharray="5,3"' if private else ""
        self._parts.append(
            f'<g class="ppdl-link"><rect x="{x}" y="{y}" width="{self._box_w}" '
            f'height="{BOX_H}" '
            f'rx="8" fill="{color}" fill-opacity="0.18" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{x + 10}" y="{y + 22}" font-weight="bold">{escape(title)}'
            f'{" (private)" if private else ""}</text>'
            f'<text x="{x + 10}" y="{y + 42}" fill="#333">{escape(sub)}</text></g>'
        )
        self._width = max(self._width, x + self._box_w)

    def _arrow(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self._parts.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2 - 2}" y2="{y2}" stroke="#333" '
            'stroke-width="1.5" marker-end="url(#ppdl-arrow)"/>'
        )


def _shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else "(" + ", ".join(map(str, shape)) + ")"
