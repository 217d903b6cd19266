"""nbval settings for the tutorials: compare what a reader sees, skip what varies.

With ``PPDL_NB_SOLUTIONS=1`` each exercise cell runs its solution (kept in the cell's
metadata by tools/nbbuild.py) instead of the student's placeholder, so the checks that
follow are exercised (:mod:`ppdl_nb.course`); run that way with ``--nbval-lax``.
"""

import os


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += (
            "stderr",
            "application/javascript",
            "application/vnd.jupyter.widget-view+json",
        )


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PPDL_NB_SOLUTIONS") != "1":
        return
    for item in items:
        cell = getattr(item, "cell", None)
        solution = (cell.get("metadata", {}).get("ppdl") or {}).get("solution") \
            if cell is not None else None
        if solution:
            cell.source = solution
    # this run is for the checks: the cells after a tutorial's last check ran in the
    # first run already (its shutdown cell still runs, to stop the workers it launched)
    last = {}
    for i, item in enumerate(items):
        if "check(" in _source(item):
            last[str(item.fspath)] = i
    kept = [item for i, item in enumerate(items)
            if i <= last.get(str(item.fspath), len(items)) or "shutdown" in _source(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _source(item) -> str:
    cell = getattr(item, "cell", None)
    return "".join(cell.get("source", "")) if cell is not None else ""
