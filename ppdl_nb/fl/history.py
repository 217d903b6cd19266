"""``History``: what happened in each round of a federated run, handed back to the user.

A run appends one record per round (loss, accuracy, bytes moved, which clients reported,
epsilon spent, ...) and notes events such as a worker dropping out. The user gets one
object that prints briefly, shows as a table in Jupyter, plots itself, and saves as plain
JSON, so runs (IID against non-IID, plain against secure aggregation) can be compared.

>>> h = History()
>>> h.append(1, loss=0.9, accuracy=0.71, bytes_moved=1_200_000, clients=["alice", "bob"])
>>> h.append(2, loss=0.5, accuracy=0.88, bytes_moved=1_200_000, clients=["alice"],
...          dropped=["bob"])
>>> h.event(2, "worker bob died mid-round; 1 of 2 reported")
>>> h
History(2 rounds, accuracy 0.880, 1.2 MB/round, 1 event)
>>> h["accuracy"]
[0.71, 0.88]
>>> h.last["dropped"]
['bob']
>>> History.from_dict(h.to_dict()) == h
True
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ppdl_nb.plotting import draw

__all__ = ["History", "compare"]

_HTML_ROWS = 12  # above this many rounds the HTML table shows the first and last few


def _plain(name: str, value: Any) -> Any:
    """``value`` as JSON-able Python (0-d tensors and numpy scalars unwrapped)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # tensor / numpy scalar
        return _plain(name, value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    raise TypeError(f"metric {name!r}: {type(value).__name__} is not a number, string, None "
                    f"or list of those")


def _check_round(round: Any) -> int:
    if isinstance(round, bool) or not isinstance(round, numbers.Integral):
        raise TypeError(f"round must be an int, got {type(round).__name__}")
    return int(round)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(name: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    if name.startswith("bytes") and _is_number(v):
        return _human_bytes(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class History:
    """Per-round records of a federated run, plus notable events.

    Each round is a dict with ``"round"`` and the metrics given to :meth:`append`.
    ``history["accuracy"]`` is that metric over the rounds (None where a round lacks it),
    ``history[-1]`` a round's dict; ``len`` and iteration go over rounds.
    """

    def __init__(self, rounds: Sequence[Mapping[str, Any]] = (),
                 events: Sequence[Mapping[str, Any]] = ()) -> None:
        self.rounds: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        for rec in rounds:
            rec = dict(rec)
            if "round" not in rec:
                raise ValueError(f"a round record needs a 'round' key: {rec!r}")
            self.append(rec.pop("round"), **rec)
        for ev in events:
            self.event(ev["round"], ev["text"])

    def append(self, round: int, **metrics: Any) -> None:
        """Record ``metrics`` for ``round``.

        Rounds go forward. Appending to the latest round again adds metrics to it (test
        accuracy measured after aggregation, say) but does not overwrite one.
        Values must be numbers, strings, None, or lists of those (0-d tensors are unwrapped).
        """
        round = _check_round(round)
        clean = {k: _plain(k, v) for k, v in metrics.items()}
        if self.rounds and round == self.rounds[-1]["round"]:
            again = sorted(set(clean) & set(self.rounds[-1]))
            if again:
                raise ValueError(f"round {round} already has {', '.join(again)}")
            self.rounds[-1].update(clean)
            return
        if self.rounds and round < self.rounds[-1]["round"]:
            raise ValueError(f"round {round} comes before the last recorded round "
                             f"{self.rounds[-1]['round']}")
        self.rounds.append({"round": round, **clean})

    def event(self, round: int, text: str) -> None:
        """Note something notable that happened in ``round`` (shown in the table and plots)."""
        self.events.append({"round": _check_round(round), "text": str(text)})

    @property
    def metrics(self) -> list[str]:
        """Metric names, in the order they first appear."""
        seen: dict[str, None] = {}
        for rec in self.rounds:
            seen.update((k, None) for k in rec if k != "round")
        return list(seen)

    @property
    def last(self) -> dict[str, Any]:
        """The latest round's record."""
        if not self.rounds:
            raise IndexError("History is empty: no rounds recorded yet")
        return self.rounds[-1]

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            if key != "round" and key not in self.metrics:
                raise KeyError(f"no metric {key!r}; recorded: {', '.join(self.metrics) or 'none'}")
            return [rec.get(key) for rec in self.rounds]
        if isinstance(key, int) and not isinstance(key, bool):
            return self.rounds[key]
        raise TypeError(f"History indices are metric names or ints, not {type(key).__name__}")

    def __len__(self) -> int:
        return len(self.rounds)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rounds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self.rounds == other.rounds and self.events == other.events

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ``{"rounds": [...], "events": [...]}`` (copies)."""
        return {"rounds": [{k: list(v) if isinstance(v, list) else v for k, v in rec.items()}
                           for rec in self.rounds],
                "events": [dict(ev) for ev in self.events]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "rounds" not in data:
            raise ValueError("expected a mapping with 'rounds' (and optionally 'events')")
        return cls(data["rounds"], data.get("events", ()))

    def _headline(self) -> str | None:
        for name in ("accuracy", "test_accuracy", "loss", "test_loss"):
            values = [v for v in self[name] if _is_number(v)] if name in self.metrics else []
            if values:
                return f"{name} {values[-1]:.3f}"
        return None

    def __repr__(self) -> str:
        parts = [_plural(len(self), "round")]
        if (head := self._headline()) is not None:
            parts.append(head)
        if "bytes_moved" in self.metrics:
            moved = [v for v in self["bytes_moved"] if _is_number(v)]
            if moved:
                parts.append(f"{_human_bytes(sum(moved) / len(moved))}/round")
        parts.append(_plural(len(self.events), "event"))
        return f"History({', '.join(parts)})"

    def _repr_html_(self) -> str:
        cols = ["round", *self.metrics]
        esc = html.escape
        head = "".join(f"<th>{esc(c)}</th>" for c in cols)
        rounds = self.rounds
        gap = len(rounds) > _HTML_ROWS
        shown = rounds[:_HTML_ROWS // 2] + rounds[-(_HTML_ROWS // 2):] if gap else rounds
        with_events = {ev["round"] for ev in self.events}
        body = []
        for i, rec in enumerate(shown):
            if gap and i == _HTML_ROWS // 2:
                hidden = len(rounds) - len(shown)
                body.append(f'<tr><td colspan="{len(cols)}" style="text-align:center">… '
                            f'{hidden} more rounds …</td></tr>')
            mark = ' style="font-weight:bold"' if rec["round"] in with_events else ""
            cells = "".join(f"<td>{esc(_fmt(c, rec.get(c)))}</td>" for c in cols)
            body.append(f"<tr{mark}>{cells}</tr>")
        out = [f"<div class=\"ppdl-history\"><b>{esc(repr(self))}</b>",
               f'<table style="font-size:small"><thead><tr>{head}</tr></thead>'
               f"<tbody>{''.join(body)}</tbody></table>"]
        if self.events:
            items = "".join(f"<li>round {esc(str(ev['round']))}: {esc(ev['text'])}</li>"
                            for ev in self.events)
            out.append(f'<ul style="font-size:small">{items}</ul>')
        out.append("</div>")
        return "".join(out)

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """(rounds, values) for a numeric metric, skipping rounds that lack it."""
        values = self[metric]
        xs, ys = [], []
        for rec, v in zip(self.rounds, values, strict=True):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if not _is_number(v):
                raise ValueError(f"metric {metric!r} is not numeric (round {rec['round']}: "
                                 f"{v!r})")
            xs.append(rec["round"])
            ys.append(v)
        return xs, ys

    def plot(self, metrics: str | Sequence[str] | None = None, ax: Any = None) -> Any:
        """One subplot per metric against round; rounds with events get dashed lines.

        ``metrics`` None means loss and accuracy, whichever were recorded. ``ax`` may be
        one Axes (for one metric) or a sequence with one Axes per metric; otherwise a new
        Figure, not registered with pyplot, is made. Returns the Figure. The drawing is
        ``ppdl_nb.viz.fl_plots.plot_history``, found through :mod:`ppdl_nb.plotting`.
        """
        return draw("fl.history", self, metrics=metrics, ax=ax)


def compare(histories: Mapping[str, History], metric: str = "accuracy",
            ax: Any = None) -> Any:
    """Overlay ``metric`` from several runs, one line per run, labelled by its key.

    The drawing is ``ppdl_nb.viz.fl_plots.compare_histories``.

    >>> a, b = History(), History()
    >>> for r in (1, 2):
    ...     a.append(r, accuracy=0.5 + r / 10)
    ...     b.append(r, accuracy=0.4 + r / 10)
    >>> fig = compare({"iid": a, "non-iid": b})
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['iid', 'non-iid']
    """
    if not histories:
        raise ValueError("no histories to compare")
    for name, hist in histories.items():
        if not isinstance(hist, History):
            raise TypeError(f"{name!r} is a {type(hist).__name__}, not a History")
    return draw("fl.compare", histories, metric=metric, ax=ax)
