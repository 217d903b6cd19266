"""The layers point one way, and modules stay small enough to read.

Every module of ``ppdl_nb/`` and ``magics/`` (installed as ``ppdl_nb.magics``) is parsed,
never imported, and each import it makes (at the top, inside functions, relative or
absolute, and ``importlib.import_module("...")`` with a literal name) is checked against
the ranks below; docs/ARCHITECTURE.md draws the same picture.

    base (ppdl_nb/<x>.py) < mpc < workers (core < transport) < tensors < dp, he, fl < viz < magics

A module may import its own rank and those below; ``fl`` may import ``dp`` and ``he``, not
the reverse (nor ``dp`` and ``he`` each other); ``workers.core`` may not import
``workers.transport``. ``ppdl_nb/__init__.py``, ``ppdl_nb/boot.py`` and ``ppdl_nb/demo.py``
are unranked: they may import anything, and nothing ranked may import them. No module
names another package's private symbol (``from ppdl_nb.tensors.pointer import _wrap`` in
``fl``, or ``pointer._wrap``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNRANKED = {"ppdl_nb", "ppdl_nb.boot", "ppdl_nb.demo"}
# package prefix -> rank; a longer prefix wins. Base modules (ppdl_nb/<x>.py) are rank 0.
RANKS = {
    "ppdl_nb.mpc": 1,
    "ppdl_nb.workers": 2,
    "ppdl_nb.tensors": 3,
    "ppdl_nb.dp": 4,
    "ppdl_nb.fl": 4,
    "ppdl_nb.he": 4,  # homomorphic encryption: beside dp and fl, as the design notes draw it
    "ppdl_nb.synth": 4,  # DP synthetic data (DataLens): built on dp's accounting and TopAgg
    "ppdl_nb.viz": 5,
    "ppdl_nb.magics": 6,
}
# (importer package, imported package) pairs refused although the ranks allow them
SAME_RANK_REFUSED = {
    ("ppdl_nb.dp", "ppdl_nb.fl"),
    ("ppdl_nb.he", "ppdl_nb.fl"),  # he sits beside dp, below fl: fl may import he
    ("ppdl_nb.he", "ppdl_nb.dp"),
    ("ppdl_nb.dp", "ppdl_nb.he"),
    ("ppdl_nb.dp", "ppdl_nb.synth"),  # synth may import dp; not the reverse
    ("ppdl_nb.he", "ppdl_nb.synth"),
    ("ppdl_nb.fl", "ppdl_nb.synth"),
    ("ppdl_nb.synth", "ppdl_nb.fl"),
    ("ppdl_nb.synth", "ppdl_nb.he"),
    ("ppdl_nb.workers.core", "ppdl_nb.workers.transport"),
    ("ppdl_nb.workers.core", "ppdl_nb.workers"),  # the package's __init__ brings transport
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _source_files() -> dict[str, Path]:
    """Module name -> file, for every module of ppdl_nb/ and magics/."""
    found: dict[str, Path] = {}
    for top, package in ((ROOT / "ppdl_nb", "ppdl_nb"), (ROOT / "magics", "ppdl_nb.magics")):
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _source_files()
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def package_of(module: str) -> str:
    """The package whose privacy and rank a module shares (base modules are their own)."""
    for prefix in ("ppdl_nb.workers.core", "ppdl_nb.workers.transport", *RANKS):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return module  # ppdl_nb itself, an unranked module, or a base module


def rank_of(module: str) -> int | None:
    """The module's layer (0 for base), or None when it is unranked."""
    if module in UNRANKED:
        return None
    package = package_of(module)
    if package in RANKS or package.startswith("ppdl_nb.workers"):
        return RANKS["ppdl_nb.workers" if package.startswith("ppdl_nb.workers") else package]
    if module.count(".") > 1 or module in PACKAGES:
        raise LookupError(f"{module} is in a package with no rank: add it to RANKS in "
                          f"tests/test_layers.py and to docs/ARCHITECTURE.md")
    return 0


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    target: str  # the module imported (a submodule when ``from pkg import submodule``)
    names: tuple[str, ...]  # the symbols taken from it (empty for ``import x``)
    text: str  # the import as written

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}: {self.text}"


def _resolve_relative(module: str, level: int, name: str | None) -> str:
    base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
    base = base[: len(base) - level + 1]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, source: str | None = None) -> list[Import]:
    """Every import in the module: top level, in functions, relative, import_module."""
    source = path.read_text() if source is None else source
    tree = ast.parse(source, filename=str(path))
    found: list[Import] = []
    module_aliases: dict[str, str] = {}  # local name -> imported ppdl_nb module
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(path, node.lineno, alias.name, (), text))
                if alias.asname:
                    module_aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = (_resolve_relative(module, node.level, node.module) if node.level
                      else node.module or "")
            plain = [a.name for a in node.names if f"{source}.{a.name}" not in MODULES]
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:  # ``from pkg import submodule``
                    found.append(Import(path, node.lineno, sub, (), text))
                    module_aliases[alias.asname or alias.name] = sub
            if plain or not node.names:
                found.append(Import(path, node.lineno, source, tuple(plain), text))
        elif isinstance(node, ast.Call) and _is_import_call(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(Import(path, node.lineno, arg.value, (), ast.unparse(node)))
    for node in ast.walk(tree):  # ``pointer._wrap`` after ``from ppdl_nb.tensors import pointer``
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and _private(node.attr)):
            found.append(Import(path, node.lineno, module_aliases[node.value.id], (node.attr,),
                                ast.unparse(node)))
    return found


def _is_import_call(node: ast.Call) -> bool:
    fn = node.func
    name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
    return name in ("import_module", "__import__") and bool(node.args)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def problem(module: str, imp: Import) -> str | None:
    """Why ``imp`` breaks the layering, or None if it is fine."""
    target = imp.target
    if target != "ppdl_nb" and not target.startswith("ppdl_nb."):
        return None  # the standard library and third-party packages
    mine, theirs = package_of(module), package_of(target)
    if mine != theirs:
        private = [n for n in imp.names if _private(n)]
        private += [p for p in target.split(".") if _private(p)]
        if private:
            return f"names {theirs}'s private {', '.join(private)}"
    here, there = rank_of(module), rank_of(target)
    if here is None or mine == theirs:
        return None
    if there is None:
        return f"imports the unranked {target} (only the composition roots may)"
    if there > here:
        return f"imports up a layer ({theirs}, rank {there}, from {mine}, rank {here})"
    if (mine, theirs) in SAME_RANK_REFUSED:
        return f"{mine} may not import {theirs}"
    return None


def test_every_package_is_ranked():
    for name in MODULES:
        rank_of(name)  # no module falls outside the table
    assert {"ppdl_nb.tensors.pointer", "ppdl_nb.magics.core", "ppdl_nb.workers.core.worker",
            "ppdl_nb.fl.history", "ppdl_nb.errors"} <= set(MODULES)
    assert [rank_of(m) for m in ("ppdl_nb.errors", "ppdl_nb.mpc.ring",
                                 "ppdl_nb.workers.transport.kernel", "ppdl_nb.tensors.pointer",
                                 "ppdl_nb.fl.history", "ppdl_nb.viz.trace",
                                 "ppdl_nb.magics")] == [0, 1, 2, 3, 4, 5, 6]


def test_the_checker_catches_what_it_should():
    bad = {
        "ppdl_nb.fl.history": "from ppdl_nb.viz.figures import new_figure",
        "ppdl_nb.fl.x": "from ppdl_nb.tensors.pointer import _wrap",
        "ppdl_nb.tensors.x": "def f():\n    from ppdl_nb import boot",
        "ppdl_nb.dp.x": "import importlib\nimportlib.import_module('ppdl_nb.fl.fedavg')",
        "ppdl_nb.workers.core.x": "from ppdl_nb.workers.transport import kernel",
        "ppdl_nb.mpc.x": "from ..tensors import shared",
        "ppdl_nb.viz.x": "from ppdl_nb.tensors import pointer\npointer._call(1)",
        "ppdl_nb.errors": "import ppdl_nb",
    }
    good = {
        "ppdl_nb.fl.x": "from ppdl_nb.dp.accounting import epsilon\nfrom . import history",
        "ppdl_nb.boot": "from ppdl_nb.magics import core",
        "ppdl_nb.tensors.x": "from ppdl_nb.tensors.pointer import _wrap",
        "ppdl_nb.workers.transport.x": "from ppdl_nb.workers.core.codec import Ref",
    }
    for cases, expect_problem in ((bad, True), (good, False)):
        for module, source in cases.items():
            probe = ROOT / "tests" / "probe.py"  # never written: the source is given
            found = [problem(module, imp) for imp in imports_of(module, probe, source)]
            assert any(found) is expect_problem, (module, source, found)


def test_imports_point_down_the_layers():
    offences = [f"{imp.where()}  -- {why}"
                for module, path in MODULES.items()
                for imp in imports_of(module, path)
                if (why := problem(module, imp)) is not None]
    print("\n".join(offences))
    assert not offences, ("imports that break the layering (docs/ARCHITECTURE.md):\n"
                          + "\n".join(offences))


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= MAX_FUNCTION_LINES:
            continue
        marked = lines[node.lineno - 1:node.lineno] + lines[max(node.lineno - 2, 0):
                                                            node.lineno - 1]
        if any("#" in line and "long:" in line.split("#", 1)[1] for line in marked):
            continue
        out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() is {length} lines")
    return out


def test_modules_and_functions_stay_small():
    offenders = []
    for path in MODULES.values():
        count = len(path.read_text().splitlines())
        if count > MAX_MODULE_LINES:
            offenders.append(f"{path.relative_to(ROOT)}: {count} lines")
        offenders += _long_functions(path)
    print("\n".join(offenders))
    assert not offenders, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function "
        f"(a function may be longer with '# long: <reason>' on its def line):\n"
        + "\n".join(offenders))


def test_step_table_names_exactly_the_registered_steps():
    import importlib

    from ppdl_nb.boot import STEP_MODULES
    from ppdl_nb.workers.core.messages import STEPS

    for module in sorted(set(STEP_MODULES.values())):
        importlib.import_module(module)
    assert set(STEP_MODULES) == set(STEPS)
    for name, module in STEP_MODULES.items():
        assert STEPS[name].fn.__module__ == module, name


LAZY = r"""
import json, sys
import ppdl_nb.boot
from ppdl_nb.workers.core.worker import Worker
from ppdl_nb.workers.core.codec import decode, encode

HEAVY = ("ppdl_nb.dp", "ppdl_nb.fl", "matplotlib", "sklearn", "dp_accounting")
def loaded():
    return sorted(h for h in HEAVY if h in sys.modules)

w = Worker("alice")
ping = decode(w.handle(encode({"kind": "ping"}), caller="me"))
after_ping = loaded()
reply = decode(w.handle(encode({"kind": "step", "name": "dp.budgets", "kwargs": {}}),
                        caller="me"))
print(json.dumps({"ping": ping, "after_ping": after_ping, "reply": reply,
                  "after_step": loaded()}, default=str))
"""


def test_a_worker_imports_dp_fl_and_plotting_only_when_a_step_needs_them():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(LAZY)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in seen["ping"], seen["ping"]
    assert seen["after_ping"] == [], f"a fresh worker imported {seen['after_ping']}"
    assert "error" not in seen["reply"], seen["reply"]
    assert "ppdl_nb.dp" in seen["after_step"]
    assert "ppdl_nb.fl" not in seen["after_step"]


@pytest.mark.parametrize("name", ["ppdl_nb.viz", "ppdl_nb.tensors", "ppdl_nb.workers"])
def test_checker_sees_the_subpackages(name):
    assert name in PACKAGES
