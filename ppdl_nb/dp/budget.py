"""PrivacyBudget: a ledger of what was released, refusing releases beyond a total.

Why: differential privacy degrades with every release. The data owner keeps a
budget (total epsilon, delta); every query or training run *charges* it before
anything is released, and a charge that would exceed the total is refused with a
``PermissionError`` saying what is left. Charges compose by basic composition
(epsilons and deltas add), which is simple to audit; compose a long DP-SGD run in an
:class:`.Accountant` first and charge its (epsilon, delta) once.

With ``path`` the ledger is written as JSON after every charge (atomically), and
reopened from it, so a restart never resets the spending. The module imports no
worker code: a data-owner worker holds an instance.

>>> budget = PrivacyBudget(epsilon=1.0, delta=1e-5)
>>> budget.charge(0.4, 0.0, "count of patients")
>>> round(budget.remaining_epsilon, 3)
0.6
>>> try:
...     budget.charge(0.7, 0.0, "mean age")
... except PermissionError as e:
...     print("refused")
refused
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Charge", "PrivacyBudget"]

_SLACK = 1e-12  # float sums of many charges must not refuse an exact fit


@dataclass(frozen=True)
class Charge:
    """One release: what it was, its (epsilon, delta), and when (Unix seconds)."""

    what: str
    epsilon: float
    delta: float
    at: float


class Spending:
    """Spent and remaining (epsilon, delta) of a budget, from its totals and charges.

    Shared by the owner's :class:`PrivacyBudget` and the notebook's read-only copy of
    it (:class:`ppdl_nb.dp.remote.Ledger`), so both add up the same way.
    """

    total_epsilon: float
    total_delta: float

    def _spent(self) -> Iterable[tuple[float, float]]:
        raise NotImplementedError

    @property
    def spent_epsilon(self) -> float:
        return math.fsum(eps for eps, _ in self._spent())

    @property
    def spent_delta(self) -> float:
        return math.fsum(delta for _, delta in self._spent())

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.total_epsilon - self.spent_epsilon)

    @property
    def remaining_delta(self) -> float:
        return max(0.0, self.total_delta - self.spent_delta)


class PrivacyBudget(Spending):
    """Total (epsilon, delta) with a history of charges; optionally persisted at ``path``."""

    def __init__(self, *, epsilon: float, delta: float, path: str | os.PathLike | None = None):
        if epsilon <= 0 or not math.isfinite(epsilon):
            raise ValueError(f"The total epsilon must be positive and finite, got {epsilon}.")
        if not 0 <= delta < 1:
            raise ValueError(f"The total delta must be in [0, 1), got {delta}.")
        self.total_epsilon = float(epsilon)
        self.total_delta = float(delta)
        self.path = Path(path) if path is not None else None
        self._history: list[Charge] = []
        if self.path is not None and self.path.exists():
            self._load()

    # -- persistence ---------------------------------------------------------------

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_text())
            stored = (float(doc["total_epsilon"]), float(doc["total_delta"]))
            history = [Charge(str(c["what"]), float(c["epsilon"]), float(c["delta"]),
                              float(c["at"])) for c in doc["history"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"The privacy ledger at {self.path} is unreadable ({e}). It records what "
                "was already spent, so it is not silently reset: restore it from a backup."
            ) from None
        if stored != (self.total_epsilon, self.total_delta):
            raise ValueError(
                f"The ledger at {self.path} was opened with total (epsilon, delta) = {stored}, "
                f"not ({self.total_epsilon}, {self.total_delta}). A budget's total is fixed "
                "once spending starts; open it with the stored totals."
            )
        self._history = history

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {
            "total_epsilon": self.total_epsilon,
            "total_delta": self.total_delta,
            "history": [asdict(c) for c in self._history],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".budget-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- spending ------------------------------------------------------------------

    def _spent(self) -> Iterable[tuple[float, float]]:
        return ((c.epsilon, c.delta) for c in self._history)

    @property
    def history(self) -> list[Charge]:
        """The charges so far, oldest first (a copy)."""
        return list(self._history)

    def can_afford(self, epsilon: float, delta: float = 0.0) -> bool:
        return (
            self.spent_epsilon + epsilon <= self.total_epsilon + _SLACK
            and self.spent_delta + delta <= self.total_delta + _SLACK
        )

    def charge(self, epsilon: float, delta: float = 0.0, what: str = "unnamed release") -> None:
        """Record a release of (epsilon, delta), or raise ``PermissionError`` if it does not fit."""
        if epsilon < 0 or delta < 0 or not (math.isfinite(epsilon) and math.isfinite(delta)):
            raise ValueError(f"A charge needs finite epsilon, delta >= 0; got {epsilon}, {delta}.")
        if not self.can_afford(epsilon, delta):
            raise PermissionError(
                f"Refused {what!r}: it costs (epsilon={epsilon:g}, delta={delta:g}) but only "
                f"(epsilon={self.remaining_epsilon:g}, delta={self.remaining_delta:g}) of the "
                f"budget ({self.total_epsilon:g}, {self.total_delta:g}) is left. Ask a "
                "cheaper question (smaller epsilon) or release nothing more from this data."
            )
        self._history.append(Charge(str(what), float(epsilon), float(delta), time.time()))
        self._save()

    def report(self) -> str:
        """A readable table of the history and what is left."""
        lines = [f"{'what':<32} {'epsilon':>10} {'delta':>10}"]
        lines += [f"{c.what[:32]:<32} {c.epsilon:>10.4g} {c.delta:>10.2g}" for c in self._history]
        lines.append(
            f"{'spent / total':<32} {self.spent_epsilon:>6.4g}/{self.total_epsilon:<4g} "
            f"{self.spent_delta:>6.2g}/{self.total_delta:g}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"PrivacyBudget(spent epsilon {self.spent_epsilon:.4g} of {self.total_epsilon:g}, "
            f"delta {self.spent_delta:.2g} of {self.total_delta:g}, "
            f"{len(self._history)} charge(s))"
        )
