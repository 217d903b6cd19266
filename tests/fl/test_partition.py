"""Partitions: disjoint and covering, balanced when IID, skewed when asked, reproducible."""

from __future__ import annotations

import importlib

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ppdl_nb.fl.partition import (  # noqa: E402
    SCHEMES,
    TARGET_BINS,
    heterogeneity,
    label_counts,
    label_groups,
    partition,
    partition_summary,
    plot_partition,
    register_scheme,
)

# the package re-exports the function partition(), so reach the module by name
partition_module = importlib.import_module("ppdl_nb.fl.partition")

LABELS = torch.arange(1000) % 10  # 10 balanced classes
SCHEME_KW = [("iid", {}), ("label", {}), ("label", {"shards_per_client": 3}),
             ("dirichlet", {"alpha": 0.1}), ("dirichlet", {"alpha": 10.0})]


def _assert_disjoint_cover(parts, rows):
    joined = torch.cat(list(parts))
    assert joined.dtype == torch.int64
    assert joined.numel() == rows, "rows lost or given twice"
    assert torch.equal(torch.sort(joined).values, torch.arange(rows))
    assert all(p.numel() > 0 for p in parts), "a client was left empty"


def test_registry_lists_schemes():
    assert set(SCHEMES) == {"iid", "label", "dirichlet"}
    with pytest.raises(TypeError):
        SCHEMES["mine"] = None  # read-only view; use register_scheme
    with pytest.raises(ValueError, match="already registered"):
        register_scheme("iid")(lambda *a, **k: [])


@pytest.mark.parametrize("scheme, kw", SCHEME_KW)
@pytest.mark.parametrize("n_clients", [1, 7, 10])
def test_disjoint_and_covering(scheme, kw, n_clients):
    parts = partition(LABELS, n_clients, scheme=scheme, seed=3, **kw)
    assert len(parts) == n_clients
    _assert_disjoint_cover(parts, LABELS.numel())


@given(rows=st.integers(1, 300), n_clients=st.integers(1, 40), seed=st.integers(0, 2**31),
       n_classes=st.integers(1, 12),
       scheme=st.sampled_from(["iid", "dirichlet", "label"]),
       alpha=st.floats(0.01, 50.0))
@settings(max_examples=60, deadline=None)
def test_any_shape_disjoint_covering_nonempty(rows, n_clients, seed, n_classes, scheme, alpha):
    n_clients = min(n_clients, rows)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(n_classes, (rows,), generator=g)
    parts = partition(labels, n_clients, scheme=scheme, alpha=alpha, shards_per_client=1,
                      seed=seed)
    assert len(parts) == n_clients
    _assert_disjoint_cover(parts, rows)


@given(rows=st.integers(1, 500), n_clients=st.integers(1, 50))
@settings(max_examples=40, deadline=None)
def test_iid_sizes_differ_by_at_most_one(rows, n_clients):
    n_clients = min(n_clients, rows)
    sizes = [p.numel() for p in partition(torch.zeros(rows, dtype=torch.long), n_clients,
                                          seed=0)]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_label_shards_limit_classes_per_client(shards):
    # 10 * shards shards of 1000 rows sorted by label: each lies within one class of 100
    counts = label_counts(LABELS, partition(LABELS, 10, scheme="label",
                                            shards_per_client=shards, seed=1))
    assert ((counts > 0).sum(dim=1) <= shards).all()
    # shards no bigger than the smallest class, not aligned with classes: each straddles
    # at most two classes
    labels = torch.randint(10, (997,), generator=torch.Generator().manual_seed(0))
    n_clients = 20
    assert 997 / (n_clients * shards) <= torch.bincount(labels).min()
    counts = label_counts(labels, partition(labels, n_clients, scheme="label",
                                            shards_per_client=shards, seed=1))
    assert ((counts > 0).sum(dim=1) <= 2 * shards).all()


def test_heterogeneity_orders_schemes():
    def mean_h(scheme, **kw):
        hs = [heterogeneity(label_counts(LABELS, partition(LABELS, 10, scheme=scheme, seed=s,
                                                           **kw))) for s in range(8)]
        return sum(hs) / len(hs)

    iid, loose, tight = mean_h("iid"), mean_h("dirichlet", alpha=1.0), mean_h(
        "dirichlet", alpha=0.1)
    shards = mean_h("label")
    assert iid < 0.2
    assert iid < loose < tight < shards
    assert shards == pytest.approx(0.8, abs=0.05)  # 2 of 10 classes per client


def test_heterogeneity_values():
    assert heterogeneity(torch.tensor([[5, 5], [10, 10]])) == 0.0
    assert heterogeneity(torch.tensor([[10, 0], [0, 10]])) == pytest.approx(0.5)
    assert heterogeneity(torch.tensor([[3, 1], [0, 0]])) == 0.0  # empty clients are skipped
    with pytest.raises(ValueError):
        heterogeneity(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        heterogeneity(torch.ones(3))


@pytest.mark.parametrize("scheme, kw", SCHEME_KW)
def test_seed_reproducible(scheme, kw):
    a = partition(LABELS, 6, scheme=scheme, seed=42, **kw)
    b = partition(LABELS, 6, scheme=scheme, seed=42, **kw)
    c = partition(LABELS, 6, scheme=scheme, seed=43, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_seed_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    partition(LABELS, 5, scheme="dirichlet", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_no_seed_gives_fresh_splits():
    a = partition(LABELS, 4)
    b = partition(LABELS, 4)
    assert not all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_dirichlet_tiny_alpha_leaves_nobody_empty():
    labels = torch.arange(20) % 2
    for seed in range(10):
        parts = partition(labels, 20, scheme="dirichlet", alpha=0.001, seed=seed)
        assert [p.numel() for p in parts] == [1] * 20


def test_accepts_lists_and_other_int_dtypes():
    parts = partition([0, 1, 2, 1, 0, 2], 2, seed=0)
    _assert_disjoint_cover(parts, 6)
    parts = partition(LABELS.to(torch.uint8), 3, scheme="label", seed=0)
    _assert_disjoint_cover(parts, LABELS.numel())


@pytest.mark.parametrize("labels, n_clients, kw, match", [
    (LABELS, 0, {}, "n_clients"),
    (LABELS, -2, {}, "n_clients"),
    (LABELS[:5], 6, {}, "more than the rows"),
    (torch.zeros(0, dtype=torch.long), 1, {}, "more than the rows"),
    (LABELS, 3, {"alpha": 0.0}, "alpha"),
    (LABELS, 3, {"alpha": -1.0, "scheme": "dirichlet"}, "alpha"),
    (LABELS, 3, {"alpha": float("nan"), "scheme": "dirichlet"}, "alpha"),
    (LABELS, 3, {"shards_per_client": 0, "scheme": "label"}, "shards_per_client"),
    (LABELS[:10], 6, {"scheme": "label"}, "shards_per_client"),
    (LABELS, 3, {"scheme": "shards"}, "'dirichlet', 'iid', 'label'"),
    (torch.tensor([1.0, float("nan"), 2.0, 3.0]), 2, {}, "finite"),
    (LABELS > 3, 3, {}, "integer"),
    (LABELS.view(100, 10), 3, {}, "1-D"),
    (LABELS - 1, 3, {}, "non-negative"),
])
def test_bad_input_raises_value_error(labels, n_clients, kw, match):
    with pytest.raises(ValueError, match=match):
        partition(labels, n_clients, **kw)


@pytest.mark.parametrize("kw", [{"n_clients": 2.0}, {"n_clients": True}, {"seed": "7"},
                                {"alpha": "1"}, {"shards_per_client": 1.5}])
def test_wrong_types_raise_type_error(kw):
    args = {"n_clients": 2, **kw}
    with pytest.raises(TypeError):
        partition(LABELS, args.pop("n_clients"), **args)


@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bool, torch.int64]))
@settings(max_examples=40, deadline=None)
def test_malformed_labels_never_crash_oddly(shape, dtype):
    labels = torch.zeros(shape, dtype=dtype)
    ok = len(shape) == 1 and dtype != torch.bool and shape[0] >= 2  # reals: regression
    if ok:
        assert len(partition(labels, 2, seed=0)) == 2
    else:
        with pytest.raises(ValueError):
            partition(labels, 2, seed=0)


def test_label_counts():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    parts = [torch.tensor([0, 1]), torch.tensor([2, 3, 4, 5])]
    assert label_counts(labels, parts).tolist() == [[1, 1, 0], [0, 1, 3]]
    assert label_counts(labels, parts, n_classes=5).shape == (2, 5)
    assert label_counts(labels, []).shape == (0, 3)
    with pytest.raises(ValueError, match="too small"):
        label_counts(labels, parts, n_classes=2)
    with pytest.raises(ValueError, match="part 1"):
        label_counts(labels, [parts[0], torch.tensor([0.5])])


def test_plot_partition_bars_and_legend():
    counts = label_counts(LABELS, partition(LABELS, 4, scheme="dirichlet", seed=0))
    fig = plot_partition(counts, names=["alice", "bob", "charlie", "dave"])
    (ax,) = fig.axes
    assert len(ax.containers) == 10  # one stack segment per class ...
    assert all(len(c) == 4 for c in ax.containers)  # ... across one bar per client
    # bars are stacked: each client's segments end at its row count
    right = [max(b.get_x() + b.get_width() for b in (c[i] for c in ax.containers))
             for i in range(4)]
    assert right == pytest.approx(counts.sum(dim=1).tolist())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["alice", "bob", "charlie", "dave"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(i) for i in range(10)]
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders headless


def test_plot_partition_on_given_axes_and_name_check():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_partition(torch.tensor([[1, 2], [3, 0]]), ax=ax) is fig
    with pytest.raises(ValueError, match="names"):
        plot_partition(torch.tensor([[1, 2], [3, 0]]), names=["only one"])


def test_partition_summary_text():
    counts = torch.tensor([[30, 10, 0], [0, 0, 5], [0, 0, 0]])
    text = partition_summary(counts, ["alice", "bob", "carol"])
    lines = text.splitlines()
    assert lines[0].split() == ["client", "rows", "classes", "top", "class"]
    assert lines[1].split() == ["alice", "40", "2", "0", "(75%)"]
    assert lines[2].split() == ["bob", "5", "1", "2", "(100%)"]
    assert lines[3].split() == ["carol", "0", "0", "-"]
    assert "heterogeneity" in lines[-1]
    assert partition_summary(counts).splitlines()[1].startswith("client 0")


@pytest.mark.parametrize("scheme", ["iid", "label", "dirichlet"])
def test_regression_targets_split_by_their_quantiles(scheme):
    targets = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 10 + 20
    parts = partition(targets, 5, scheme=scheme, shards_per_client=1, seed=0)
    _assert_disjoint_cover(parts, 500)
    bins = label_groups(targets)
    assert bins.unique().tolist() == list(range(TARGET_BINS))
    assert torch.bincount(bins).min() >= 500 // TARGET_BINS - 1  # quantile bins: even
    if scheme == "label":  # one shard each: every client holds one range of the target
        for p in parts:
            held = bins[p].unique()
            assert len(held) <= 3 and int(held.max() - held.min()) == len(held) - 1


def test_a_regression_dataset_trains_federated():
    import ppdl_nb
    from ppdl_nb.fl import FederatedDataset, fit_federated

    workers = [ppdl_nb.VirtualWorker(n) for n in ("reg_a", "reg_b")]
    fed = FederatedDataset.load("boston_housing", workers, clients_per_worker=2,
                                scheme="label", test_rows=100, allow_plain_updates=True, seed=1)
    assert all(len(c.labels) == TARGET_BINS for c in fed.clients)
    assert fed.test[1].dtype == torch.float32
    torch.manual_seed(0)
    start = torch.nn.Linear(13, 1)
    with torch.no_grad():
        untrained = torch.nn.functional.mse_loss(start(fed.test[0]).squeeze(-1), fed.test[1])
    run = fit_federated(start, fed, rounds=8, loss="mse", lr=1e-6, seed=0)
    assert run.history["test_loss"][-1] < float(untrained) / 2
