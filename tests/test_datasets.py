from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppdl_nb import datasets

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize(
    "loader, shape, ydtype",
    [
        (datasets.load_digits, (1797, 64), torch.int64),
        (datasets.load_breast_cancer, (569, 30), torch.int64),
        (datasets.load_mnist_5k, (5000, 784), torch.int64),
        (datasets.load_boston_housing, (506, 13), torch.float32),
    ],
)
def test_builtin_loaders(loader, shape, ydtype):
    d = loader()
    assert tuple(d.x.shape) == shape and d.x.dtype == torch.float32
    assert d.y.shape == (shape[0],) and d.y.dtype == ydtype
    assert len(d.feature_names) == shape[1] and len(d) == shape[0]
    x, y = d
    assert x is d.x and y is d.y
    assert len(d.tensor_dataset()) == shape[0]
    assert d.name in repr(d)
    if d.name in ("digits", "mnist_5k"):
        assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0


def test_load_csv_quoted_and_types(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('"a","b","label"\n1,"0",1\n2.5,"1",0\n')
    d = datasets.load_csv(p, target="label")
    assert d.feature_names == ("a", "b") and d.y.dtype == torch.int64
    torch.testing.assert_close(d.x, torch.tensor([[1.0, 0.0], [2.5, 1.0]]))
    r = datasets.load_csv(p, target="a")
    assert r.y.dtype == torch.float32


def test_load_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ships no data"):
        datasets.load_csv(tmp_path / "missing.csv", target="y")
    p = tmp_path / "bad.csv"
    p.write_text("a,y\nx,1\n")
    with pytest.raises(ValueError, match="row 2"):
        datasets.load_csv(p, target="y")
    with pytest.raises(ValueError, match="no column"):
        datasets.load_csv(p, target="z")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmark data not present")
def test_shared_csvs():
    boston = datasets.load_csv(SHARED / "boston-housing.csv", target="medv")
    pima = datasets.load_csv(SHARED / "pima-indians-diabetes.csv", target="target")
    assert boston.x.shape == (506, 13) and boston.y.dtype == torch.float32
    assert pima.x.shape == (768, 8) and set(pima.y.tolist()) == {0, 1}
