"""Chains: the structure behind a tensor, one link per wrapper or pointer.

``chain_of(x)`` walks a chain locally (no round trips: pointers carry their targets'
metadata) and returns its links; ``chain_text(x)`` prints one line per link::

    PointerTensor me:3 -> alice:17 [shape (3,), float32]

This module is a registry and knows no tensor type but ``torch.Tensor``: each link
type registers itself with ``@chain_of.register`` where it is defined (pointers in
``pointer.py``, fixed precision in ``fixed.py``, shared tensors in ``shared.py``); a link
with ``children`` forks (a shared tensor points to one share on each party). The diagram
in ``ppdl_nb.viz`` draws the same links.

>>> chain_text(torch.ones(2, 3))
'Tensor me [shape (2, 3), float32]'
>>> chain_of("text")
Traceback (most recent call last):
  ...
TypeError: str is not a tensor chain; chain_of takes a tensor, a pointer, or a wrapper ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import torch

__all__ = ["Link", "chain_of", "chain_text"]


@dataclass
class Link:
    """One step of a chain: ``kind`` held by ``holder`` (and what it points to, if remote)."""

    kind: str
    holder: str
    holder_id: int | None = None
    target: str | None = None
    target_id: int | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    private: bool = False
    note: str = ""
    children: list[list[Link]] = field(default_factory=list)

    def text(self) -> str:
        where = f"{self.holder}:{self.holder_id}" if self.holder_id is not None else self.holder
        line = f"{self.kind} {where}"
        if self.target is not None:
            line += f" -> {self.target}:{self.target_id}"
        details = []
        if self.shape is not None:
            details.append(f"shape {self.shape}")
        if self.dtype:
            details.append(self.dtype)
        if self.note:
            details.append(self.note)
        if self.private:
            details.append("private")
        return line + (f" [{', '.join(details)}]" if details else "")


@singledispatch
def chain_of(obj: Any) -> list[Link]:
    """The links of ``obj``'s chain, outermost first."""
    if isinstance(obj, torch.Tensor):
        return [Link("Tensor", "me", shape=tuple(obj.shape),
                     dtype=str(obj.dtype).removeprefix("torch."))]
    raise TypeError(f"{type(obj).__name__} is not a tensor chain; chain_of takes a tensor, "
                    "a pointer, or a wrapper that registered itself with @chain_of.register")


def chain_text(obj: Any) -> str:
    """One line per link; forks are indented under their wrapper."""
    lines: list[str] = []

    def emit(links: list[Link], depth: int) -> None:
        for i, link in enumerate(links):
            prefix = "  " * depth + ("> " if i else "")
            lines.append(prefix + link.text())
            for child in link.children:
                emit(child, depth + 1)

    emit(chain_of(obj), 0)
    return "\n".join(lines)

