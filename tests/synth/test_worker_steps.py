"""DataLens on the owners' workers: the same result as the in-process owners, every owner
charged, and nobody outside an owner ever holding its raw vote sum or its records."""

from __future__ import annotations

import pytest
import torch

import ppdl_nb
from ppdl_nb.datasets import load_digits
from ppdl_nb.dp import fixed_seed
from ppdl_nb.dp.worker_steps import budget
from ppdl_nb.mpc.encoding import decode
from ppdl_nb.mpc.sharing import reconstruct
from ppdl_nb.synth import worker_steps as ws
from ppdl_nb.synth.federated import train_datalens_owners
from ppdl_nb.synth.models import BasisGenerator, dct_basis
from ppdl_nb.synth.remote import load_parts, train_datalens_on
from ppdl_nb.workers.transport.virtual import VirtualNetwork

RUN = {"classes": 10, "teachers": 3, "steps": 3, "batch_size": 4, "k_per_sample": 3,
       "hidden": 32, "z_dim": 8}
ROWS = 120


@pytest.fixture
def owners(tmp_path, monkeypatch):
    """Two fresh virtual data owners, each holding half of 120 shuffled digits."""
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    net = VirtualNetwork()
    ws_ = [ppdl_nb.VirtualWorker(n, network=net) for n in ("clinic_a", "clinic_b")]
    load_parts(ws_, "digits", epsilon=100.0, delta=1e-5, train_rows=ROWS)
    return ws_


def _parts(parts: int = 2):
    d = load_digits()
    order = torch.randperm(len(d.y), generator=torch.Generator().manual_seed(0))[:ROWS]
    return [(d.x[order[i::parts]].float(), d.y[order[i::parts]]) for i in range(parts)]


@pytest.mark.parametrize("options", [{}, {"basis": 16, "teacher": "centroid"}],
                         ids=["pixels-gan", "basis16-centroid"])
def test_worker_path_equals_the_in_process_owners(owners, options):
    with fixed_seed(11):
        remote = train_datalens_on(owners, dataset="digits", epsilon=10.0, delta=1e-5,
                                   seed=3, **RUN, **options)
    with fixed_seed(11):
        local = train_datalens_owners(_parts(), epsilon=10.0, delta=1e-5, seed=3, **RUN,
                                      **options)
    if options:  # a generator of coefficients, releasing images
        assert isinstance(remote.generator, BasisGenerator)
        assert remote.generator.release(5)[0].shape == (5, 64)
    assert remote.owner_epsilons == pytest.approx(local.owner_epsilons)
    assert remote.noise_std == pytest.approx(local.noise_std)
    assert remote.history == local.history
    for (name, a), (_, b) in zip(remote.generator.state_dict().items(),
                                 local.generator.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with fixed_seed(12):  # other noise, another generator: the comparison can fail
        other = train_datalens_owners(_parts(), epsilon=10.0, delta=1e-5, seed=3, **RUN,
                                      **options)
    assert not torch.equal(other.generator.net[0].weight, local.generator.net[0].weight)


def _recorded(workers, monkeypatch):
    """Every (worker, step, reply) the notebook receives from these workers."""
    seen = []
    for w in workers:
        real = w.step

        def spy(name, _real=real, _w=w, **kwargs):
            out = _real(name, **kwargs)
            seen.append((_w.name, name, out))
            return out

        monkeypatch.setattr(w, "step", spy)
    return seen


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def test_the_notebook_gets_random_partial_sums_and_only_their_total(trio, monkeypatch):
    a, b = trio[0], trio[1]
    load_parts([a, b], "digits", epsilon=1e6, delta=1e-2, train_rows=ROWS)
    seen = _recorded([a, b], monkeypatch)
    res = train_datalens_on([a, b], dataset="digits", epsilon=10.0, delta=1e-5, **RUN)
    by_step: dict[str, list] = {}
    for _, name, out in seen:
        by_step.setdefault(name, []).append(out)
    assert all(isinstance(n, int) for n in by_step["synth.vote"])  # bytes sent, no values
    for name in ("synth.setup", "synth.vote", "synth.close"):
        assert not _tensors(by_step[name]), name
    partials = by_step["synth.partial"]
    assert len(partials) == 2 * RUN["steps"]
    bound = RUN["teachers"] * 2 + 50 * res.noise_std  # any vote total is far below this
    for p in partials:  # each partial sum alone is a uniformly random ring element
        assert p.dtype == torch.int64 and float(decode(p, ws.FRAC_BITS).abs().max()) > 1e9
    for s in range(RUN["steps"]):  # the pair of one step opens a bounded, noisy total
        total = decode(reconstruct(partials[2 * s: 2 * s + 2]), ws.FRAC_BITS)
        assert float(total.abs().max()) < bound


def test_every_owner_is_charged_before_it_votes(owners):
    res = train_datalens_on(owners, dataset="digits", epsilon=5.0, delta=1e-5, **RUN)
    for w, eps in zip(owners, res.owner_epsilons, strict=True):
        ledger = budget.on(w, dataset="digits")
        (what, charged, delta), = ledger["history"]
        assert what.startswith("DataLens votes: 3 queries") and charged == pytest.approx(eps)
        assert 4.9 < charged <= 5.0 + 1e-6 and delta == 1e-5
    with pytest.raises(PermissionError, match="epsilon"):  # 100 total, 95 left after a 5
        train_datalens_on(owners, dataset="digits", epsilon=96.0, delta=1e-5, **RUN)
    assert budget.on(owners[0], dataset="digits")["spent_epsilon"] == pytest.approx(
        res.owner_epsilons[0])


def _session(owners, steps=1):
    names = [w.name for w in owners]
    for i, w in enumerate(owners):
        ws.setup.on(w, session="s1", dataset="digits", holders=names, classes=10, epsilon=5.0,
                    delta=1e-5, steps=steps, teachers=3, batch_size=4, k_per_sample=3, seed=i)
    return torch.rand(4, 64), torch.tensor([0, 1, 2, 3])


def test_a_curious_party_cannot_take_votes_shares_or_records_out(owners):
    a, b = owners
    loaded = ws.load.on(a, dataset="digits", part=0, parts=2, epsilon=100.0, delta=1e-5,
                        train_rows=ROWS)
    with pytest.raises(PermissionError):  # the records themselves stay private
        a.request({"kind": "fetch", "id": loaded["x"]["id"]})
    fake, fy = _session(owners)
    with pytest.raises(RuntimeError, match="every owner must vote"):  # no one-owner sum
        ws.vote.on(a, session="s1", step=0, fake=fake, fake_y=fy)
        ws.partial.on(a, session="s1", step=0)
    with pytest.raises(PermissionError, match="only me"):  # a fellow owner asks for sums
        a.owner.client_for("clinic_b").step("synth.partial", session="s1", step=0)
    with pytest.raises(PermissionError, match="not an owner"):  # a stranger's share
        ppdl_nb.VirtualWorker("mallory", network=a.network).owner.client_for(
            "clinic_a").step("synth.take_share", session="s1", step=5,
                             share=torch.zeros(256, dtype=torch.int64))
    with pytest.raises(ValueError, match="already sent"):  # one share per owner and step
        a.owner.client_for("clinic_b").step("synth.take_share", session="s1", step=0,
                                            share=torch.zeros(256, dtype=torch.int64))
    with pytest.raises(PermissionError, match="answered every vote"):  # 1 vote charged
        ws.vote.on(a, session="s1", step=1, fake=fake, fake_y=fy)
    with pytest.raises(ValueError, match="shape"):
        ws.vote.on(b, session="s1", step=0, fake=torch.rand(4, 3), fake_y=fy)


def test_setup_refuses_bad_holders_and_unknown_data(owners):
    a, _ = owners
    kwargs = dict(session="s2", classes=10, epsilon=1.0, delta=1e-5, steps=2)
    with pytest.raises(ValueError, match="holders"):
        ws.setup.on(a, dataset="digits", holders=["clinic_a"], **kwargs)
    with pytest.raises(KeyError, match="no dataset"):
        ws.setup.on(a, dataset="wine", holders=["clinic_a", "clinic_b"], **kwargs)
    assert budget.on(a, dataset="digits")["spent_epsilon"] == 0.0


def test_each_owner_trains_its_teachers_on_disjoint_shards_of_its_own_records(owners):
    _session(owners)
    shards = [w.owner.state["synth"]["s1"]["owner"].xs for w in owners]  # owner-side view
    d = load_digits()
    for shard, (x, _) in zip(shards, _parts(), strict=True):
        rows = shard.reshape(-1, shard.shape[-1])
        assert len(rows) == 3 * (len(x) // 3)  # 3 teachers, equal shards, none repeated
        assert len({tuple(r.tolist()) for r in rows}) == len({tuple(r.tolist()) for r in x})
        assert all(bool((x == r).all(1).any()) for r in rows)  # all its own records
    mine = {tuple(r.tolist()) for r in shards[0].reshape(-1, d.x.shape[1])}
    assert not mine & {tuple(r.tolist()) for r in shards[1].reshape(-1, d.x.shape[1])}
    with pytest.raises(ValueError, match="finite"):
        ws.vote.on(owners[0], session="s1", step=0,
                   fake=torch.full((4, 64), float("nan")), fake_y=torch.tensor([0, 1, 2, 3]))


def test_basis_and_centroid_teachers_stay_on_each_owner(owners):
    names = [w.name for w in owners]
    for i, w in enumerate(owners):
        reply = ws.setup.on(w, session="s3", dataset="digits", holders=names, classes=10,
                            epsilon=5.0, delta=1e-5, steps=1, teachers=3, batch_size=4,
                            k_per_sample=1, seed=i, basis=16, teacher="centroid")
        assert (reply["dim"], reply["image_dim"], reply["k"]) == (16, 64, 4)
    for w, (x, _) in zip(owners, _parts(), strict=True):  # the owner's own projection
        owner = w.owner.state["synth"]["s3"]["owner"]
        rows = owner.xs.reshape(-1, 16)
        mine = x @ dct_basis(8, 16)
        assert all(bool(torch.isclose(mine, r).all(1).any()) for r in rows)
        assert not hasattr(owner, "bank") and owner.mu.shape == (3, 10, 16)
    with pytest.raises(ValueError, match="shape"):  # coefficients, not pixels
        ws.vote.on(owners[0], session="s3", step=0, fake=torch.rand(4, 64),
                   fake_y=torch.tensor([0, 1, 2, 3]))
    ledger = budget.on(owners[0], dataset="digits")
    assert "centroid teachers on 16 DCT coefficients" in ledger["history"][0][0]


@pytest.mark.parametrize(("bad", "match"), [
    ({"teacher": "knn"}, r"teacher must be one of \['gan', 'centroid'\]"),
    ({"basis": 0}, r"basis must be None .* integer .* \[1, 64\]"),
    ({"basis": 65}, r"\[1, 64\]"),
    ({"basis": "16"}, "basis must be None"),
    ({"basis": 16.0}, "basis must be None"),
    ({"basis": True}, "basis must be None"),
])
def test_a_bad_basis_or_teacher_is_refused_and_the_owner_keeps_serving(trio, bad, match):
    a, b = trio[0], trio[1]
    load_parts([a, b], "digits", epsilon=1e6, delta=1e-2, train_rows=ROWS)
    spent = budget.on(a, dataset="digits")["spent_epsilon"]
    kwargs = dict(dataset="digits", holders=[a.name, b.name], classes=10, epsilon=1.0,
                  delta=1e-5, steps=1, teachers=3, batch_size=4, k_per_sample=1)
    with pytest.raises(ValueError, match=match):
        ws.setup.on(a, session=f"bad-{id(bad)}", **kwargs, **bad)
    assert budget.on(a, dataset="digits")["spent_epsilon"] == spent  # nothing charged
    with pytest.raises(ValueError, match="teacher must be one of"):  # the notebook's call
        train_datalens_on([a, b], dataset="digits", epsilon=1.0, delta=1e-5, teacher="knn",
                          **RUN)
    res = train_datalens_on([a, b], dataset="digits", epsilon=1.0, delta=1e-5, basis=16,
                            teacher="centroid", **RUN)  # and the owner still serves
    assert len(res.history) == RUN["steps"]
