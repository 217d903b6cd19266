"""IPython front of ppdl_nb: ``%load_ext ppdl_nb`` gives ``%ppdl`` and ``%%ppdl``.

Thin by design: every subcommand parses its options and calls the plain Python API.
Subcommands live in their own modules (see :mod:`ppdl_nb.magics.registry`).
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from ppdl_nb.magics.registry import SUBCOMMANDS, dispatch, help_text, load_modules

__all__ = ["PPDLMagics", "load_ipython_extension", "unload_ipython_extension"]


@magics_class
class PPDLMagics(Magics):
    @line_cell_magic
    def ppdl(self, line: str, cell: str | None = None) -> Any:
        """Privacy-preserving deep learning: workers, pointers, SPDZ, FL and DP."""
        return dispatch(self.shell, line, cell)


def load_ipython_extension(ipython: Any) -> None:
    load_modules()
    from ppdl_nb.magics.tracebacks import install

    install(ipython)  # expected errors (refusals, workers not running) shown short
    PPDLMagics.ppdl.__doc__ = (
        "%ppdl SUBCOMMAND [options]  /  %%ppdl SUBCOMMAND [options] + cell\n\n"
        "Privacy-preserving deep learning in the notebook.\n\n" + help_text()
    )
    ipython.register_magics(PPDLMagics)


def unload_ipython_extension(ipython: Any) -> None:
    from ppdl_nb.magics.tracebacks import uninstall

    uninstall(ipython)


def subcommands() -> list[str]:
    return sorted(SUBCOMMANDS)
