"""Every docstring example in the package runs and shows what it says it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ppdl_nb
from ppdl_nb import magics  # its own folder (magics/), mapped into the package


def _modules() -> list[str]:
    names = {"ppdl_nb", "ppdl_nb.magics"}
    for package in (ppdl_nb, magics):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.add(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_subpackage_is_walked():
    assert {"ppdl_nb.magics.budget", "ppdl_nb.mpc.beaver", "ppdl_nb.workers.transport.channel",
            "ppdl_nb.viz.budget", "ppdl_nb.dp.accounting", "ppdl_nb.fl.secagg"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
