"""Protocol traces: record the messages of a block, then read them as a table or a
sequence diagram (one lifeline per party, one arrow per message, grouped by round).

>>> import torch, ppdl_nb
>>> alice = ppdl_nb.VirtualWorker("alice")
>>> with trace() as t:
...     _ = ppdl_nb.send(torch.ones(2), alice)
>>> [(r["src"], r["dst"], r["kind"]) for r in t.records]
[('me', 'alice', 'store')]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from html import escape
from typing import Any

from ppdl_nb.viz.chain_diagram import worker_color
from ppdl_nb.viz.figures import have_png_renderer, svg_png
from ppdl_nb.viz.units import human_bytes
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.transport.party import local_party

__all__ = ["Trace", "trace"]

LANE_W, ROW_H, TOP, GUTTER = 130, 24, 40, 170
HEADER_ME = "#555"  # the notebook's lane title: its box grey is too pale for text


class Trace:
    """Messages recorded during a ``with trace():`` block."""

    def __init__(self, records: Sequence[dict[str, Any]] = ()) -> None:
        self.records = sorted(records, key=lambda r: r["t"])

    def parties(self) -> list[str]:
        names = {r["src"] for r in self.records} | {r["dst"] for r in self.records}
        return ["me", *sorted(names - {"me"})] if "me" in names else sorted(names)

    def summary(self) -> list[dict[str, Any]]:
        """Per party: messages sent and received, and bytes sent and received."""
        rows = {p: {"party": p, "sent": 0, "received": 0, "bytes_sent": 0,
                    "bytes_received": 0} for p in self.parties()}
        for r in self.records:
            rows[r["src"]]["sent"] += 1
            rows[r["src"]]["bytes_sent"] += r["bytes"]
            rows[r["src"]]["bytes_received"] += r["reply_bytes"]
            rows[r["dst"]]["received"] += 1
            rows[r["dst"]]["bytes_received"] += r["bytes"]
            rows[r["dst"]]["bytes_sent"] += r["reply_bytes"]
        return list(rows.values())

    def rounds(self) -> list[str]:
        return list(dict.fromkeys(r["round"] for r in self.records if r["round"]))

    def __repr__(self) -> str:
        lines = [f"Trace: {len(self.records)} messages, rounds: {', '.join(self.rounds()) or '-'}"]
        for row in self.summary():  # requests sent and received; bytes both ways, replies too
            lines.append(f"  {row['party']:<10} requests sent {row['sent']:>4}, received "
                         f"{row['received']:>4}; bytes out {human_bytes(row['bytes_sent']):>9}, "
                         f"in {human_bytes(row['bytes_received']):>9}")
        return "\n".join(lines)

    def _repr_png_(self) -> tuple[bytes, dict[str, int]] | None:
        return svg_png(self.diagram())

    def _repr_svg_(self) -> str | None:  # only where no PNG renderer is installed
        return None if have_png_renderer() else self.diagram()

    def diagram(self, *, max_messages: int = 60) -> str:
        """An SVG sequence diagram (deterministic: no times or ids in it)."""
        parties = self.parties()
        x = {p: GUTTER + LANE_W * i + LANE_W / 2 for i, p in enumerate(parties)}
        shown = self.records[:max_messages]
        rows: list[str] = []
        y, last_round = TOP, None
        for r in shown:  # a round's label once, where it starts (messages without one: none)
            if r["round"] and r["round"] != last_round:
                y += 8
                rows.append(f'<text x="4" y="{y + 8}" font-size="10" fill="#666">'
                            f'{escape(r["round"])}</text>')
                last_round = r["round"]
            y += ROW_H
            x1, x2 = x[r["src"]], x[r["dst"]]
            color = worker_color(r["src"])
            rows.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" '
                        f'stroke-width="2" marker-end="url(#ppdl-seq)"/>')
            rows.append(f'<text x="{(x1 + x2) / 2}" y="{y - 7}" font-size="10" '
                        f'text-anchor="middle">{escape(r["kind"])} '
                        f'({human_bytes(r["bytes"])})</text>')  # clear of the arrowhead
        height = y + 30
        width = GUTTER + 20 + LANE_W * len(parties)
        lanes = "".join(
            f'<text x="{x[p]}" y="24" text-anchor="middle" font-weight="bold" '
            f'fill="{HEADER_ME if p == "me" else worker_color(p)}">{escape(p)}</text>'
            f'<line x1="{x[p]}" y1="30" x2="{x[p]}" y2="{height - 10}" stroke="#bbb" '
            'stroke-dasharray="4,3"/>' for p in parties)
        more = ""
        if len(self.records) > max_messages:
            more = (f'<text x="10" y="{height - 2}" font-size="10">... '
                    f"{len(self.records) - max_messages} more messages</text>")
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'font-family="sans-serif" font-size="12"><defs><marker id="ppdl-seq" '
                'markerWidth="8" markerHeight="6" refX="8" refY="3" orient="auto">'
                '<path d="M0,0 L8,3 L0,6 z" fill="#333"/></marker></defs>'
                f"{lanes}{''.join(rows)}{more}</svg>")


@contextlib.contextmanager
def trace(workers: Sequence[Any] | None = None) -> Iterator[Trace]:
    """Record every message of the block, worker-to-worker traffic included.

    Workers in other processes record their own requests and hand them over at the end.
    """
    if workers is None:  # every worker this notebook reaches that is still up
        workers = [w for w in local_party().workers()
                   if getattr(w, "status", lambda: "running")() == "running"]
    remote = [w for w in workers if w.kind != "virtual"]
    result = Trace()
    with tracing.recording() as rec:
        for w in remote:
            w.request({"kind": "trace", "action": "start"})
        try:
            yield result
        finally:
            collected = list(rec.records)
            for w in remote:
                with contextlib.suppress(Exception):
                    collected.extend(w.request({"kind": "trace", "action": "stop"}))
    own = [r for r in collected if r["kind"] != "trace"]
    result.records = sorted(own, key=lambda r: r["t"])
