"""One IPython shell for every magic test, with the extension loaded."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ip():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "ppdl_nb")
    return shell
