"""History: records rounds, round-trips through JSON, shows itself safely, plots."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ppdl_nb.fl.history import History, compare  # noqa: E402


def _run(n=5, events=True) -> History:
    h = History()
    for r in range(1, n + 1):
        h.append(r, loss=1.0 / r, accuracy=0.5 + r / 20, test_loss=1.2 / r,
                 bytes_moved=1_500_000, seconds=0.25, clients=["alice", "bob", "charlie"],
                 dropped=[], epsilon=0.1 * r, aggregation="secure")
    if events:
        h.event(3, "worker bob died mid-round; 2 of 3 reported")
    return h


def test_access():
    h = _run()
    assert len(h) == 5
    assert h["accuracy"] == pytest.approx([0.55, 0.6, 0.65, 0.7, 0.75])
    assert h["round"] == [1, 2, 3, 4, 5]
    assert h.last["round"] == 5 and h.last["clients"] == ["alice", "bob", "charlie"]
    assert h[0]["loss"] == 1.0 and h[-1] is h.last
    assert [rec["round"] for rec in h] == [1, 2, 3, 4, 5]
    assert h.rounds[2]["aggregation"] == "secure"
    assert h.metrics[:3] == ["loss", "accuracy", "test_loss"]
    assert h.events == [{"round": 3, "text": "worker bob died mid-round; 2 of 3 reported"}]
    with pytest.raises(KeyError, match="acuracy"):
        h["acuracy"]
    with pytest.raises(IndexError):
        _ = History().last


def test_missing_metric_is_none_in_other_rounds():
    h = History()
    h.append(1, loss=0.5)
    h.append(2, loss=0.4, test_accuracy=0.9)
    assert h["test_accuracy"] == [None, 0.9]


def test_same_round_adds_metrics_but_never_overwrites_or_goes_back():
    h = History()
    h.append(1, loss=0.5)
    h.append(1, test_accuracy=0.8)
    assert len(h) == 1 and h.last == {"round": 1, "loss": 0.5, "test_accuracy": 0.8}
    with pytest.raises(ValueError, match="already has loss"):
        h.append(1, loss=0.1)
    h.append(3, loss=0.3)
    with pytest.raises(ValueError, match="before"):
        h.append(2, loss=0.4)
    with pytest.raises(TypeError):
        h.append("4", loss=0.4)


def test_values_are_made_plain():
    h = History()
    h.append(np.int64(1), loss=torch.tensor(0.25), accuracy=np.float32(0.5),
             bytes_moved=np.int64(10), clients=("alice", "bob"))
    rec = h.last
    assert rec == {"round": 1, "loss": 0.25, "accuracy": 0.5, "bytes_moved": 10,
                   "clients": ["alice", "bob"]}
    assert type(rec["loss"]) is float and type(rec["bytes_moved"]) is int
    with pytest.raises(TypeError, match="weights"):
        h.append(2, weights=torch.ones(3))
    with pytest.raises(TypeError, match="model"):
        h.append(2, model=object())


def test_round_trip_through_json():
    h = _run()
    data = json.loads(json.dumps(h.to_dict()))
    back = History.from_dict(data)
    assert back == h
    assert back.rounds == h.rounds and back.events == h.events
    # to_dict hands out copies: editing them leaves the history alone
    d = h.to_dict()
    d["rounds"][0]["clients"].append("mallory")
    d["events"].clear()
    assert h.rounds[0]["clients"] == ["alice", "bob", "charlie"] and h.events
    with pytest.raises(ValueError):
        History.from_dict({"events": []})
    assert History.from_dict({"rounds": []}) == History()


def test_repr_short_with_what_matters():
    assert repr(_run(10)) == "History(10 rounds, accuracy 1.000, 1.5 MB/round, 1 event)"
    h = History()
    h.append(1, loss=0.4321)
    assert repr(h) == "History(1 round, loss 0.432, 0 events)"
    assert repr(History()) == "History(0 rounds, 0 events)"


def test_html_table():
    h = _run()
    page = h._repr_html_()
    assert page.count("<tr") == 1 + 5  # header + one row per round
    for text in ("accuracy", "bytes_moved", "1.5 MB", "0.75", "alice, bob, charlie",
                 "secure", "worker bob died mid-round"):
        assert text in page
    long = _run(40)._repr_html_()
    assert "28 more rounds" in long and long.count("<tr") < 20


def test_html_escapes_malicious_text():
    h = History()
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    h.append(1, accuracy=0.5, clients=[evil], aggregation=evil)
    h.event(1, evil)
    page = h._repr_html_()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page


def test_plot_one_axes_per_metric_with_event_lines():
    h = _run()
    h.event(4, "learning rate halved")
    fig = h.plot()
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        data_lines, marks = ax.get_lines()[:1], ax.get_lines()[1:]
        assert list(data_lines[0].get_xdata()) == [1, 2, 3, 4, 5]
        assert sorted(m.get_xdata()[0] for m in marks) == [3, 4]
        assert all(m.get_linestyle() == "--" for m in marks)
    fig = h.plot(["accuracy", "bytes_moved", "epsilon"])
    assert len(fig.axes) == 3
    assert len(h.plot("epsilon").axes) == 1


def test_plot_errors_and_given_axes():
    from matplotlib.figure import Figure

    h = _run(events=False)
    with pytest.raises(ValueError, match="not numeric"):
        h.plot("clients")
    with pytest.raises(KeyError):
        h.plot("nope")
    with pytest.raises(ValueError, match="no loss or accuracy"):
        History().plot()
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert h.plot(ax=axes) is fig
    with pytest.raises(ValueError, match="1 axes for 2"):
        h.plot(ax=axes[0])


def test_plot_skips_rounds_without_the_metric():
    h = History()
    h.append(1, loss=1.0)
    h.append(2, loss=0.8, accuracy=0.6)
    h.append(3, loss=0.5, accuracy=float("nan"))
    (ax,) = h.plot("accuracy").axes
    assert list(ax.get_lines()[0].get_xdata()) == [2]


def test_compare_overlays_runs():
    runs = {"iid": _run(5), "non-iid": _run(3), "secure": _run(4)}
    fig = compare(runs, "loss")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["iid", "non-iid", "secure"]
    assert [len(line.get_xdata()) for line in lines] == [5, 3, 4]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["iid", "non-iid", "secure"]
    assert ax.get_ylabel() == "loss"
    with pytest.raises(ValueError, match="'bare' has no 'accuracy'"):
        compare({"ok": _run(), "bare": History()})
    with pytest.raises(ValueError):
        compare({})
    with pytest.raises(TypeError):
        compare({"x": {"rounds": []}})
