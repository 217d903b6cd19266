"""Where federated clients train: the engine interface and the workers' engine.

:func:`~ppdl_nb.fl.fit_federated` asks an engine for one thing per round: train these
clients from this model and these options, and say what came back and who dropped out.
The loop does not know where the clients run, so another engine (``"ray"``, a pool of
Ray actors: :mod:`ppdl_nb.fl.ray_engine`) plugs in without touching it.
:class:`WorkerEngine` (``"workers"``, the default) runs each client where its rows
live: every worker that holds sampled clients trains them natively through its
``fl.train`` step, all workers at once. Virtual workers (in the
notebook's process) and kernel workers (separate processes) take the same path.

>>> "workers" in ENGINES
True
"""

from __future__ import annotations

from typing import Any

from ppdl_nb.fl.dataset import Client
from ppdl_nb.fl.worker_steps import train
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.concurrent import outcomes

__all__ = ["ENGINES", "Engine", "WorkerEngine", "engine", "resolve_engine"]

#: engine name -> class
ENGINES: dict[str, type[Engine]] = {}


def engine(name: str) -> Any:
    """Class decorator: register an engine under ``name`` (a taken name is an error)."""
    def register(cls: type[Engine]) -> type[Engine]:
        if name in ENGINES:
            raise ValueError(f"engine {name!r} is already registered")
        ENGINES[name] = cls
        return cls

    return register


class Engine:
    """Runs a round's local training; implementations say where the clients run."""

    def train(self, groups: dict[str, list[Client]], options: dict[str, Any], *, round: int,
              alive: dict[str, bool]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Train ``groups`` (worker name -> its sampled clients) with ``options``.

        Returns each worker's reply (as ``fl.train`` gives it) and what went wrong in
        words; a worker that is unreachable is marked ``alive[name] = False``.
        """
        raise NotImplementedError

    def bytes_seen(self, workers: list[Any]) -> int:
        """Bytes moved so far (for the round's ``bytes_moved``); 0 if unknown."""
        return 0


@engine("workers")
class WorkerEngine(Engine):
    """Each worker trains its own clients (``fl.train``), all workers at once."""

    def train(self, groups: dict[str, list[Client]], options: dict[str, Any], *, round: int,
              alive: dict[str, bool]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        calls = []
        for cs in groups.values():
            kwargs = {"clients": [[c.id, Ref(c.x.id_at_location), Ref(c.y.id_at_location)]
                                  for c in cs], **options}
            train.check(**kwargs)
            calls.append((cs[0].worker, train.name, kwargs))
        with tracing.round_label(f"round {round}: local training"):
            done = outcomes(calls)
        replies, events = {}, []
        for (name, cs), (ok, value) in zip(groups.items(), done, strict=True):
            if ok:
                replies[name] = value
            elif isinstance(value, ConnectionError):  # WorkerUnavailableError, timeouts
                alive[name] = False
                events.append(f"{name} dropped out ({type(value).__name__}); its "
                              f"{len(cs)} clients did not report")
            else:
                raise value
        return replies, events

    def bytes_seen(self, workers: list[Any]) -> int:
        """Bytes this notebook received from the workers plus bytes the workers received."""
        total = 0
        for w in workers:
            try:
                total += int(w.info()["bytes_in"])
            except ConnectionError:
                pass
            total += w.bytes_received
        return total

    def __repr__(self) -> str:
        return "WorkerEngine()"


def resolve_engine(which: str | Engine) -> Engine:
    """An engine object from its name, or the object itself."""
    if isinstance(which, Engine):
        return which
    if isinstance(which, str) and which in ENGINES:
        return ENGINES[which]()
    raise ValueError(f"unknown engine {which!r}; choose one of {sorted(ENGINES)} or pass an "
                     "Engine object")
