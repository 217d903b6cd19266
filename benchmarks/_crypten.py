"""Finding CrypTen for the anchor scripts: its own venv, the shim, a clean skip without it."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SHIM = REPO.parent / "shared" / "bench"
CRYPTEN_PYTHON = REPO / ".venv-crypten" / "bin" / "python"


def import_crypten(shim: Path) -> Any:
    sys.path.insert(0, str(shim))
    importlib.import_module("crypten_shim")  # patches torch.onnx; must come before crypten
    return importlib.import_module("crypten")


def crypten_or_skip(shim: Path, script: str, argv: list[str], json_path: Path | None
                    ) -> Any:
    """The crypten module; or re-run ``script`` under ``.venv-crypten`` (once); or say
    why CrypTen is missing (and write it to ``json_path``) and return None."""
    try:
        return import_crypten(shim)
    except ImportError as exc:
        if CRYPTEN_PYTHON.exists() and not os.environ.get("PPDL_CRYPTEN_REEXEC"):
            os.environ["PPDL_CRYPTEN_REEXEC"] = "1"  # once: never loop between interpreters
            os.execv(str(CRYPTEN_PYTHON), [str(CRYPTEN_PYTHON), script, *argv])
        msg = (f"CrypTen is not available ({exc}); skipping. Make .venv-crypten as the "
               f"docstring of {shim / 'crypten_shim.py'} says to run this anchor.")
        print(msg)
        if json_path:
            json_path.write_text(json.dumps({"skipped": msg, "rows": []}))
        return None


def anchor_parser(description: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every anchor takes: --providers, --repeats, --quick, --json, --shim."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--providers", default="TFP,TTP")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--shim", type=Path, default=DEFAULT_SHIM,
                   help="folder holding crypten_shim.py (default: ../shared/bench)")
    return p


def start_anchor(args: argparse.Namespace, script: str, argv: list[str] | None) -> Any:
    """``crypten_or_skip`` for an anchor's parsed ``args``; with CrypTen, set up for
    ``run_multiprocess``: no GPU, no per-party warnings, one torch thread."""
    crypten = crypten_or_skip(args.shim, script, argv or sys.argv[1:], args.json)
    if crypten is None:
        return None
    import torch

    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    warnings.filterwarnings("ignore")  # the ONNX converter's and re-init warnings, per party
    torch.set_num_threads(1)  # run_multiprocess forks: a threaded parent can hang it
    return crypten
