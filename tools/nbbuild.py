"""Build a tutorial notebook from a plain list of cells, then execute it in place.

    python tools/nbbuild.py notebooks/01_pointers.py

The source ``.py`` file holds cells separated by ``# %%`` (code) and ``# %% [markdown]``
lines; ``# %% [ignore-output]`` marks a code cell whose output varies (random noise,
timings) so nbval runs it without comparing. ``# %% [exercise]`` marks an exercise cell:
its ``# solution: ...`` lines leave the source for the cell's metadata
(``ppdl.solution``), where ``PPDL_NB_SOLUTIONS=1`` test runs find them
(:mod:`ppdl_nb.course`). The notebook is written next to it with
outputs, ready for ``pytest --nbval``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SOLUTION = "# solution: "


def parse(text: str) -> list:
    cells, kind, lines, tags = [], None, [], []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in body.split("\n"))
            cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            solution = [line.removeprefix(SOLUTION) for line in body.split("\n")
                        if line.startswith(SOLUTION)]
            body = "\n".join(line for line in body.split("\n")
                             if not line.startswith(SOLUTION)).strip("\n")
            cell = nbformat.v4.new_code_cell(body)
            if tags:
                cell.metadata["tags"] = list(tags)
            if solution:
                cell.metadata["ppdl"] = {"solution": "\n".join(solution)}
            cells.append(cell)

    for line in text.split("\n"):
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
            tags = ["nbval-ignore-output"] if "[ignore-output]" in line else []
            tags += ["exercise"] if "[exercise]" in line else []
        else:
            lines.append(line)
    flush()
    return cells


def build(src: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    out = src.with_suffix(".ipynb")
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(src.parent)}}).execute()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem.replace('_', '-')}-{i:02d}"  # stable ids, stable diffs
    nbformat.write(nb, out)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print("built", build(Path(arg)))
