"""Finding CrypTen for the anchor scripts: its own venv, the shim, a clean skip without it."""

from __future__ import annotations

import importlib
import json
import os
import sys
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
