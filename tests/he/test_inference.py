"""Encrypted inference against plain torch, on virtual workers (and one kernel worker test).

CKKS is approximate: with a 26-bit scale, logits of these small models agree with torch to
within 5e-3 (batched) and 5e-2 (per image, whose logits are computed divided by 8).
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


@pytest.mark.parametrize("packing,tol", [("batched", 5e-3), ("per_image", 5e-2)])
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


def test_per_image_result_has_other_slots_masked(parties):
    """Unmasked, other slots carry model-dependent sums; masked, only noise is left."""
    alice, _, fp = parties
    model = small_cnn()
    p = plan.compile_plan(model)
    ctx = alice.owner.state["he"]["keys"][fp]  # alice's secret context: what she can decrypt
    x = torch.rand(1, 1, 8, 8)
    cts, windows = inf.encrypt_images(ctx, p, x)
    want = model(x).detach()[0] / inf.OUTPUT_SCALE
    got = {}
    for mask in (False, True):
        session = inf.PerImageSession(ctx, p, windows, mask=mask)
        session.absorb(0, cts)
        got[mask] = _raw_slots(ctx, session.finish()[0])
        assert (got[mask][:3] - want).abs().max() < 5e-3
    assert got[False][3:].abs().max() > 1e-3  # what the mask is for
    assert got[True][3:].abs().max() < 1e-3


def test_mask_needs_a_level(parties):
    alice, bob, fp = parties
    run = private_predict(ppdl_nb.send(torch.rand(1, 1, 8, 8), alice),
                          ppdl_nb.send(small_cnn(), bob), fingerprint=fp, packing="per_image")
    assert run.masked
    deep = torch.nn.Sequential(torch.nn.Linear(4, 4), Square(), torch.nn.Linear(4, 4), Square(),
                               Square(), torch.nn.Linear(4, 2))  # all six levels
    with pytest.raises(ValueError, match="one more level"):
        private_predict(ppdl_nb.send(torch.rand(1, 4), alice), ppdl_nb.send(deep, bob),
                        fingerprint=fp, packing="per_image", mask=True)
