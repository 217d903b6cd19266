"""Light start-up (issue 18, item 8): heavy modules load when a cell needs them, not before.

``import ppdl_nb``, ``%load_ext ppdl_nb`` and a kernel worker answering its first pointer
op import none of dp_accounting, scikit-learn, matplotlib, mlxtend, ipywidgets (nor, for
the first two, jupyter_client); each is imported by the cell that uses it. Figures:
``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("dp_accounting", "sklearn", "matplotlib", "mlxtend", "ipywidgets", "scipy")


def _loaded_after(code: str, setup: str = "") -> list[str]:
    """The heavy modules that running ``code`` imported (``setup``'s own do not count)."""
    probe = textwrap.dedent(setup) + "\nimport sys\nbefore = set(sys.modules)\n" + \
        textwrap.dedent(code) + textwrap.dedent(f"""
        import json
        print(json.dumps(sorted(m for m in {HEAVY + ('jupyter_client',)!r}
                                if m in sys.modules and m not in before)))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import ppdl_nb",
    "import ppdl_nb.fl, ppdl_nb.dp; from ppdl_nb.dp import remote, epsilon",
], ids=["import", "dp-and-fl"])
def test_the_first_cell_imports_no_heavy_module(code):
    assert _loaded_after(code) == []


def test_load_ext_imports_no_heavy_module():
    # IPython's test shell imports matplotlib itself, so count only what load_ext adds
    setup = "from IPython.testing.globalipapp import start_ipython\nshell = start_ipython()"
    assert _loaded_after('shell.run_line_magic("load_ext", "ppdl_nb")', setup) == []


def test_dp_accounting_loads_on_the_first_epsilon():
    assert _loaded_after("""
        from ppdl_nb.dp import epsilon
        epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=10, delta=1e-5)
    """) == ["dp_accounting", "scipy"]


def test_a_worker_kernel_answers_its_first_op_without_heavy_modules():
    import torch

    import ppdl_nb

    with ppdl_nb.launch("light") as (light,):
        assert (ppdl_nb.send(torch.ones(2), light) * 3).get().tolist() == [3.0, 3.0]
        probe = f"import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
        result = light.execute(probe)
        assert result.status == "ok", result.error
        assert result.stdout.strip() == "[]"
        # a cell that plots inside the worker still gets the inline backend
        result = light.execute("import matplotlib; print(matplotlib.get_backend())")
        assert result.stdout.strip() == "module://matplotlib_inline.backend_inline"
