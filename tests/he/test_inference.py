"""Encrypted inference against plain torch, on virtual workers (and one kernel worker test).

CKKS is approximate: with a 26-bit scale, logits of these small models agree with torch to
within 5e-3.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("tenseal", reason="homomorphic encryption needs the 'he' extra (tenseal)")

from he_helpers import Square, small_cnn  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.he import inference as inf  # noqa: E402
from ppdl_nb.he import keys, plan  # noqa: E402
from ppdl_nb.he.remote import make_keys, pin, private_predict  # noqa: E402
from ppdl_nb.workers.transport.virtual import VirtualNetwork  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def parties():
    net = VirtualNetwork()
    alice = ppdl_nb.VirtualWorker("alice", network=net)  # data owner
    bob = ppdl_nb.VirtualWorker("bob", network=net)  # model owner
    fp = make_keys(alice, rotations=True)
    pin(bob, owner=alice, fingerprint=fp)
    return alice, bob, fp


@pytest.mark.parametrize("packing,tol", [("batched", 5e-3), ("per_image", 5e-3)])
def test_cnn_matches_torch(parties, packing, tol):
    alice, bob, fp = parties
    model = small_cnn()
    x = torch.rand(3, 1, 8, 8)
    data = ppdl_nb.send(x, alice, private=True)
    run = private_predict(data, ppdl_nb.send(model, bob, private=True), fingerprint=fp,
                          packing=packing, allow=["me"])
    assert run.packing == packing
    with torch.no_grad():
        want = model(x)
    assert (run.logits.get() - want).abs().max() < tol
    assert [la["kind"] for la in run.layers] == ["conv", "square", "linear", "square", "linear"]
    assert run.bytes_sent > 0 and run.bytes_received > 0


def test_logistic_model_and_privacy_of_logits(parties):
    alice, bob, fp = parties
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4))
    x = torch.randn(5, 16)
    run = private_predict(ppdl_nb.send(x, alice, private=True),
                          ppdl_nb.send(model, bob, private=True), fingerprint=fp)
    with pytest.raises(PermissionError, match="private to alice"):
        run.logits.get()  # the logits stay with the data owner unless it allows
    assert alice.owner.store.entry(run.logits.id_at_location).obj.sub(
        model(x).detach()).abs().max() < 5e-3


def test_model_owner_may_never_read_the_decryption(parties):
    alice, bob, fp = parties
    with pytest.raises(PermissionError, match="must never see their CKKS decryption"):
        private_predict(ppdl_nb.send(torch.rand(1, 16), alice, private=True),
                        ppdl_nb.send(torch.nn.Sequential(torch.nn.Linear(16, 2)), bob),
                        fingerprint=fp, allow=["bob"])


def test_batched_result_has_unused_slots_masked():
    """What the data owner can decrypt beyond its batch: zeros (plus CKKS noise)."""
    from tenseal import sealapi

    p = plan.compile_plan(small_cnn())
    ctx = keys.make_context("cnn")
    x = torch.rand(2, 1, 8, 8)
    feats = plan.features(p, x)
    session = inf.BatchedSession(ctx, p, 2, feats.shape[1])
    session.absorb(0, inf.encrypt_features(ctx, feats, 0, feats.shape[1]))
    out = inf.load_vector(ctx, session.finish()[0])
    pt = sealapi.Plaintext()
    sealapi.Decryptor(ctx.seal_context().data, ctx.secret_key().data).decrypt(
        out.ciphertext()[0], pt)
    slots = sealapi.CKKSEncoder(ctx.seal_context().data).decode_double(pt)
    assert max(abs(v) for v in slots[2:]) < 1e-2 < max(abs(v) for v in slots[:2]) + 1


def test_plan_reference_matches_torch():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, stride=2), Square(),
                                torch.nn.Flatten(), torch.nn.Linear(27, 2))
    x = torch.rand(4, 1, 7, 7)
    p = plan.compile_plan(model)
    assert torch.allclose(plan.reference(p, x)[-1].float(), model(x).detach(), atol=1e-5)


@pytest.mark.skipif(os.environ.get("PPDL_SKIP_KERNELS") == "1", reason="kernels skipped")
def test_kernel_workers_logistic(kernel_trio):
    alice, bob, _ = kernel_trio
    fp = make_keys(alice, preset="small")
    pin(bob, owner=alice, fingerprint=fp)
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 3))
    x = torch.randn(4, 8)
    run = private_predict(ppdl_nb.send(x, alice, private=True), ppdl_nb.send(model, bob),
                          fingerprint=fp, allow=["me"])
    assert (run.logits.get() - model(x).detach()).abs().max() < 5e-3


def _raw_slots(ctx, data):
    """Every slot the data owner can decrypt from a result (not only the first ones)."""
    from tenseal import sealapi

    pt = sealapi.Plaintext()
    sealapi.Decryptor(ctx.seal_context().data, ctx.secret_key().data).decrypt(
        inf.load_vector(ctx, data).ciphertext()[0], pt)
    return torch.tensor(sealapi.CKKSEncoder(ctx.seal_context().data).decode_double(pt))


def _packed_session(ctx, model, shape, *, mask=True):
    from ppdl_nb.he import packed

    p = plan.compile_plan(model)
    lay = packed.first_layout(p, shape, 4096)
    return p, lay, inf.PerImageSession(packed.PackedModel(ctx, p, lay, mask=mask))


@pytest.mark.parametrize("case", ["cnn", "mlp", "one_layer", "one_layer_unmasked"])
def test_per_image_result_has_other_slots_masked(parties, case):
    """Every slot the data owner can decrypt past the logits: zeros (plus CKKS noise)."""
    from ppdl_nb.he import packed

    alice, _, fp = parties
    ctx = alice.owner.state["he"]["keys"][fp]  # alice's secret context: what she can decrypt
    torch.manual_seed(4)
    model = {"cnn": small_cnn(), "mlp": torch.nn.Sequential(
        torch.nn.Linear(16, 40), Square(), torch.nn.Linear(40, 30), torch.nn.Linear(30, 3))
             }.get(case, torch.nn.Sequential(torch.nn.Linear(16, 3)))
    x = torch.rand(2, 1, 8, 8) if case == "cnn" else torch.rand(2, 16)
    p, lay, session = _packed_session(ctx, model, (8, 8) if case == "cnn" else (1, 16),
                                      mask=case != "one_layer_unmasked")
    first = p.describe()[0]
    session.absorb(0, inf.encrypt_images(ctx, packed.image_patches(first, x), lay))
    outs = session.finish()
    assert session.mask == (case != "one_layer_unmasked")
    for row, data in zip(model(x).detach(), outs, strict=True):
        slots = _raw_slots(ctx, data)
        assert (slots[:3] - row).abs().max() < 5e-3
        if case == "one_layer_unmasked":
            assert slots[3:].abs().max() > 1e-2  # what the mask is for: other sums
        else:
            assert slots[3:].abs().max() < 1e-3
    assert [s["ciphertexts"] for s in session.stats.as_list()] == [2] * len(p.layers)


def test_packed_layout_and_bytes():
    """The layout of TenSEAL's tutorial CNN, and a result that loads as a TenSEAL vector."""
    from ppdl_nb.he import packed

    lay = packed.layout(4, 64, 49, 4096)
    assert (lay.block, lay.kblocks, lay.cts) == (256, 16, 4)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 7, stride=3), Square(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 64), Square(), torch.nn.Linear(64, 10))
    assert packed.rotations(plan.compile_plan(cnn), lay) == 4 + 16 + 14
    with pytest.raises(ValueError, match="use packing='batched'"):
        packed.layout(8, 1024, 9, 4096)
    patches = torch.arange(49 * 64, dtype=torch.float64).reshape(49, 64)
    vecs = packed.pack_patches(patches, lay)
    assert len(vecs) == 4 and all(len(v) == 4096 for v in vecs)
    assert vecs[1][256 * 3 + 64 * 2 + 5] == patches[16 + 3, 5]  # block kl, channel c, window w
    assert vecs[3][256 * 1] == 0.0  # past the 49 kernel entries
    small = packed.layout(2, 9, 9, 4096)  # blocks of 32 slots, 16 per period of 512
    vec = packed.pack_patches(torch.rand(9, 9), small)[0]
    assert (small.block, small.kblocks) == (32, 16) and vec[512 * 3 + 40] == vec[40] != 0


def test_per_image_masking_and_depth(parties):
    """Past one layer the mask is free (always done); one layer alone spends a level on it
    unless declined; a plan deeper than the keys is refused with what to do."""
    alice, bob, fp = parties

    def run(model, x, **kw):
        return private_predict(ppdl_nb.send(x, alice), ppdl_nb.send(model, bob),
                               fingerprint=fp, packing="per_image", **kw)

    assert run(small_cnn(), torch.rand(1, 1, 8, 8), mask=False).masked
    one = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert run(one, torch.rand(1, 4)).masked and not run(one, torch.rand(1, 4), mask=False).masked
    deep = torch.nn.Sequential(torch.nn.Linear(4, 4), Square(), torch.nn.Linear(4, 4), Square(),
                               Square(), torch.nn.Linear(4, 2))  # six levels, the keys have 5
    with pytest.raises(ValueError, match="needs 6 multiplicative levels"):
        run(deep, torch.rand(1, 4))


def test_auto_packing_by_batch_size(parties):
    """One image: the per-image path (34 rotations); a thousand: one image per slot."""
    from ppdl_nb.he import worker_steps

    alice, _, fp = parties
    ctx = alice.owner.state["he"]["keys"][fp]
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 7, stride=3), Square(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 64), Square(), torch.nn.Linear(64, 10))
    p = plan.compile_plan(cnn)
    picks = [worker_steps._auto_packing(ctx, p, 64 * 49, batch, (28, 28)) for batch in (1, 1000)]
    assert picks == ["per_image", "batched"]
    assert worker_steps._auto_packing(keys.make_context("small"), p, 64 * 49, 1,
                                      (28, 28)) == "batched"  # no Galois keys: no rotations
