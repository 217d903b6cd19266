"""HE aggregation (BFV): exact sums, a transcript of who receives what; bad input."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("tenseal", reason="homomorphic encryption needs the 'he' extra (tenseal)")

from he_helpers import small_cnn  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.he import HEKeyError, UnsupportedLayerError, compile_plan, keys  # noqa: E402
from ppdl_nb.he.aggregation import HEAggregation  # noqa: E402
from ppdl_nb.he.remote import make_keys, pin, private_predict  # noqa: E402
from ppdl_nb.workers.core import codec  # noqa: E402
from ppdl_nb.workers.transport.virtual import VirtualNetwork  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _recording(workers, log):
    """Record every decoded request each worker receives: (receiver, caller, message)."""
    for w in workers:
        server = w.owner
        original = server.handle

        def handle(frames, caller, *, owned=False, _orig=original, _name=server.name):
            log.append((_name, caller, codec.decode(list(frames), context=None)))
            return _orig(frames, caller, owned=owned)

        server.handle = handle


def test_sum_is_exact_and_transcript_shows_who_sees_what():
    net = VirtualNetwork()
    names = ("c1", "c2", "c3", "agg", "keys")
    c1, c2, c3, agg, holder = (ppdl_nb.VirtualWorker(n, network=net) for n in names)
    updates = [torch.randn(9000) * 0.1 for _ in range(3)]
    held = {}
    for w, u in zip((c1, c2, c3), updates, strict=True):
        ptr = ppdl_nb.send(u, w, private=True)
        held[w.name] = (w, codec.Ref(ptr.id_at_location))
        ptr.disown()
    log = []
    _recording([c1, c2, c3, agg, holder], log)
    strategy = HEAggregation(key_holder=holder, aggregator=agg, scale=2.0 ** 16, bound=4.0)
    total = strategy.aggregate(held, label="r0")
    want = sum(torch.round(u.double() * 2 ** 16) for u in updates) / 2 ** 16
    assert torch.equal(total.double(), want.float().double())  # BFV: exact
    to_holder = [m for r, _, m in log if r == "keys" and m.get("kind") == "step"]
    decrypts = [m for m in to_holder if m["name"] == "he.decrypt_sum"]
    assert len(decrypts) == 1 and decrypts[0]["kwargs"]["count"] == 3  # only the sum
    assert {m["name"] for m in to_holder} <= {"he.keygen", "he.public_context",
                                               "he.decrypt_sum"}
    # the aggregator holds no secret key and received no plaintext update
    state = agg.owner.state["he"]
    assert not state["keys"] and all(not ctx.is_private() for _, ctx in state["trusted"].values())
    for r, _, m in log:
        if r == "agg":
            assert not any(isinstance(v, torch.Tensor) for v in m.get("kwargs", {}).values())
    with pytest.raises(Exception, match="already decrypted|no encrypted update"):
        strategy.aggregate({}, label="r0")


def test_key_holder_refuses_to_aggregate_or_hold_updates():
    net = VirtualNetwork()
    a, b = (ppdl_nb.VirtualWorker(n, network=net) for n in ("a", "b"))
    with pytest.raises(ValueError, match="two different workers"):
        HEAggregation(key_holder=a, aggregator=a)
    with pytest.raises(ValueError, match="is the key holder"):
        HEAggregation(key_holder=a, aggregator=b).setup([a])


@pytest.fixture(scope="module")
def pair():
    net = VirtualNetwork()
    alice, bob, eve = (ppdl_nb.VirtualWorker(n, network=net) for n in ("alice", "bob", "eve"))
    fp = make_keys(alice, preset="small")
    pin(bob, owner=alice, fingerprint=fp)
    return alice, bob, eve, fp


def test_wrong_key(pair):
    alice, bob, eve, fp = pair
    model = ppdl_nb.send(torch.nn.Sequential(torch.nn.Linear(4, 2)), bob)
    with pytest.raises(PermissionError, match="holds no secret key"):
        private_predict(ppdl_nb.send(torch.rand(1, 4), eve), model, fingerprint=fp)
    eve_fp = make_keys(eve, preset="small")  # a key bob was never told to trust
    with pytest.raises(PermissionError, match="has not pinned"):
        private_predict(ppdl_nb.send(torch.rand(1, 4), eve), model, fingerprint=eve_fp)


def test_substituted_public_context_is_refused():
    mine = keys.public_bytes(keys.make_context("small"))
    theirs = keys.public_bytes(keys.make_context("small"))
    with pytest.raises(HEKeyError, match="not the pinned"):
        keys.load_public(theirs, keys.fingerprint(mine))
    secret = bytes(keys.make_context("small").serialize(save_secret_key=True))
    with pytest.raises(HEKeyError, match="carries a secret key"):
        keys.load_public(secret, keys.fingerprint(secret))


def test_wrong_parameters(pair):
    alice, bob, _, fp = pair
    with pytest.raises(ValueError, match="unknown HE parameter preset"):
        keys.make_context("huge")
    deep = ppdl_nb.send(small_cnn(), bob)
    with pytest.raises(ValueError, match="multiplicative levels"):
        private_predict(ppdl_nb.send(torch.rand(1, 1, 8, 8), alice), deep, fingerprint=fp)
    with pytest.raises(ValueError, match="takes 4 inputs"):
        private_predict(ppdl_nb.send(torch.rand(1, 5), alice),
                        ppdl_nb.send(torch.nn.Sequential(torch.nn.Linear(4, 2)), bob),
                        fingerprint=fp)


def test_ciphertext_from_another_context(pair):
    from ppdl_nb.he import inference as inf

    _, _, _, _ = pair
    a, b = keys.make_context("small"), keys.make_context("cnn")
    foreign = inf.encrypt_features(a, torch.rand(2, 3).double(), 0, 3)[0]
    with pytest.raises(keys.CiphertextMismatchError, match="another context"):
        inf.load_vector(b, foreign)
    with pytest.raises(TypeError, match="travel as bytes"):
        inf.load_vector(b, [1, 2])


@pytest.mark.parametrize("layer,hint", [(torch.nn.ReLU(), "square activation"),
                                        (torch.nn.MaxPool2d(2), "strided convolution")])
def test_layer_he_cannot_evaluate(layer, hint):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), layer, torch.nn.Flatten(),
                                torch.nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError, match=hint):
        compile_plan(model)
