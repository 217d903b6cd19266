"""The %ppdl magic: registry dispatch, help, UsageError on mistakes, the chain view."""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError

import ppdl_nb


def test_help_lists_subcommands(ip, capsys):
    ip.run_line_magic("ppdl", "help")
    out = capsys.readouterr().out
    for name in ("chain", "help", "workers"):
        assert f"ppdl {name}" in out
    starts = {line.index(line.split()[2]) for line in out.splitlines()[1:]}
    assert len(starts) == 1  # the summaries line up, %ppdl and %%ppdl alike
    ip.run_line_magic("ppdl", "help chain")
    assert "usage: %ppdl chain" in capsys.readouterr().out


def test_magic_docstring_is_real_help(ip):
    doc = ip.find_line_magic("ppdl").__doc__
    assert "Subcommands" in doc and "chain" in doc


@pytest.mark.parametrize("line", ["", "nosuch", "chain", "help nosuch", "chain --bogus x"])
def test_mistakes_raise_usage_error(ip, line):
    with pytest.raises(UsageError):
        ip.run_line_magic("ppdl", line)


def test_chain_of_a_pointer(ip, capsys):
    alice = ppdl_nb.VirtualWorker("alice")
    ip.user_ns["x"] = ppdl_nb.send(torch.ones(3), alice)
    ip.run_line_magic("ppdl", "chain --text x")
    assert "PointerTensor me:" in capsys.readouterr().out
    diagram = ip.run_line_magic("ppdl", "chain x")
    svg = diagram.svg()
    assert svg.startswith("<svg") and "alice" in svg and "data on alice" in svg
    assert diagram.svg() == svg  # deterministic
    png, size = diagram._repr_png_()  # what Jupyter shows and notebooks store
    assert png.startswith(b"\x89PNG") and size["width"] > 300
    assert diagram._repr_svg_() is None  # one picture per output, not two


def test_chain_of_an_undefined_name_is_a_usage_error(ip):
    with pytest.raises(UsageError, match="could not evaluate"):
        ip.run_line_magic("ppdl", "chain undefined_name_xyz")


def test_option_values_are_never_evaluated(ip):
    ip.user_ns["boom"] = 0
    with pytest.raises(UsageError):
        ip.run_line_magic("ppdl", "help __import__('os').system('false')")
