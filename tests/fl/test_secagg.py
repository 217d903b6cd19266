from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppdl_nb.fl import shamir
from ppdl_nb.fl.secagg import (
    SecAggAbort,
    SecAggClient,
    SecAggServer,
    UnmaskRefused,
    decode_sum,
    default_threshold,
    encode_update,
)
from ppdl_nb.fl.secagg_sim import message_nbytes, simulate, upload_bytes
from ppdl_nb.mpc.prg import PRG, fixed_seeds
from ppdl_nb.workers.core import codec

FRAC = 20


def make_updates(n: int, shape=(16,), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * 3 for _ in range(n)]


def exact_sum(updates, frac=FRAC) -> torch.Tensor:
    """What secure aggregation must output: the decoded sum of the encoded updates."""
    total = encode_update(updates[0], frac)
    for u in updates[1:]:
        total = total + encode_update(u, frac)
    return decode_sum(total, frac)


def run(updates, t=None, drop_shares=(), drop_masked=(), drop_unmask=(), wire=False):
    """Every round by hand, as the lead's worker steps will; returns (sum, transcript).

    With ``wire=True`` every message crosses the msgpack codec both ways.
    """
    n = len(updates)
    transcript = []

    def send(msg):
        transcript.append(msg)
        return codec.decode(codec.encode(msg)) if wire else msg

    ids = [f"c{i}" for i in range(n)]
    clients = {c: SecAggClient(c, n, t, frac_bits=FRAC) for c in ids}
    server = SecAggServer(n, t, frac_bits=FRAC)
    public = send(server.collect_keys([send(clients[c].advertise_keys()) for c in ids]))
    alive = [c for i, c in enumerate(ids) if i not in drop_shares]
    inbox = send(server.route_shares({c: send(clients[c].share_keys(public)) for c in alive}))
    alive = [c for c in alive if int(c[1:]) not in drop_masked]
    ys = [send(clients[c].masked_input(inbox[c], updates[int(c[1:])])) for c in alive]
    request = send(server.collect_masked(ys))
    alive = [c for c in alive if int(c[1:]) not in drop_unmask]
    replies = [send(clients[c].unmask(request["survivors"], request["dropped"])) for c in alive]
    return server.finish(replies), transcript


CASES = [  # n, t, drop_before_masked, drop_before_unmask
    (3, None, set(), set()),
    (3, 2, {1}, set()),
    (3, 2, set(), {0}),
    (5, 3, {0, 4}, set()),
    (5, 3, set(), {1, 2}),
    (5, 3, {2}, {4}),
    (10, None, set(), set()),
    (10, 6, {1, 3, 5, 7}, set()),
    (10, 6, set(), {0, 2, 4, 9}),
    (10, 2, {0, 1, 2, 3}, {4, 5, 6, 7}),
]


@pytest.mark.parametrize("n,t,masked,unmask", CASES)
def test_sum_is_the_survivors_sum(n, t, masked, unmask):
    ups = make_updates(n, seed=n)
    got = simulate(ups, t, drop_before_masked=masked, drop_before_unmask=unmask, frac_bits=FRAC)
    survivors = [u for i, u in enumerate(ups) if i not in masked]  # unmask drops still count
    assert got.dtype == torch.float64 and got.shape == ups[0].shape
    assert torch.equal(got, exact_sum(survivors))
    plain = torch.stack(survivors).double().sum(0)
    assert torch.allclose(got, plain, rtol=0, atol=n * 2.0 ** -(FRAC + 1) + 1e-6)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_any_dropout_pattern_within_the_threshold(data):
    n = data.draw(st.integers(3, 7), label="n")
    t = data.draw(st.integers(2, n), label="t")
    order = data.draw(st.permutations(range(n)), label="order")
    k_shares, k_masked, k_unmask = data.draw(
        st.tuples(*[st.integers(0, n - t)] * 3).filter(lambda k: sum(k) <= n - t),
        label="drops",
    )
    drops = order[:k_shares], order[k_shares:k_shares + k_masked]
    unmask = set(order[k_shares + k_masked:k_shares + k_masked + k_unmask])
    ups = make_updates(n, shape=(2, 3), seed=n * t)
    got = simulate(ups, t, drops[1], unmask, FRAC, drop_before_shares=drops[0])
    gone = set(drops[0]) | set(drops[1])
    assert torch.equal(got, exact_sum([u for i, u in enumerate(ups) if i not in gone]))


def test_messages_cross_the_codec_and_dropouts_before_sharing():
    ups = make_updates(5, shape=(4, 3), seed=7)
    got, _ = run(ups, t=3, drop_shares={0}, drop_masked={3}, wire=True)
    assert torch.equal(got, exact_sum([ups[1], ups[2], ups[4]]))


@pytest.mark.parametrize("stage", ["shares", "masked", "unmask"])
def test_abort_below_threshold(stage):
    drops = {"drop_before_shares": set(), "drop_before_masked": set(),
             "drop_before_unmask": set()}
    drops[f"drop_before_{stage}"] = {0, 1, 2}  # 5 clients, t = 3: two left
    with pytest.raises(SecAggAbort, match=r"only 2 clients .* threshold t = 3"):
        simulate(make_updates(5), 3, **drops)
    assert issubclass(SecAggAbort, RuntimeError)


def test_client_aborts_when_too_few_keys_or_shares_arrive():
    cs = [SecAggClient(f"c{i}", 4, 3) for i in range(4)]
    adverts = [c.advertise_keys() for c in cs]
    public = {a["id"]: {"c_pk": a["c_pk"], "s_pk": a["s_pk"]} for a in adverts}
    with pytest.raises(SecAggAbort, match="only 2 clients advertised keys"):
        cs[0].share_keys({k: public[k] for k in ("c0", "c1")})
    outs = [c.share_keys(public) for c in cs[1:]]
    with pytest.raises(SecAggAbort, match="only 2 clients shared"):
        cs[1].masked_input({"c2": outs[1]["c1"]}, torch.zeros(3))


def test_threshold_validation_and_default():
    assert [default_threshold(n) for n in (2, 3, 4, 5, 10)] == [2, 2, 3, 3, 6]
    assert SecAggClient("a", 5).threshold == 3 and SecAggServer(10).threshold == 6
    for n, t in [(5, 1), (5, 6), (1, None), (5, True), (5, 2.5)]:
        with pytest.raises(ValueError, match="threshold|n_clients"):
            SecAggServer(n, t)


def test_any_t_shares_reconstruct_and_fewer_do_not():
    secret = bytes(range(32))
    xs = [3, 8, 11, 20, 99]
    shares = shamir.split(secret, xs, 3, PRG(bytes(32)))
    for subset in itertools.combinations(xs, 3):
        assert shamir.reconstruct({x: shares[x] for x in subset}, 3, 32) == secret
    for pair in itertools.combinations(xs, 2):
        two = {x: shares[x] for x in pair}
        with pytest.raises(ValueError, match="need 3 shares"):
            shamir.reconstruct(two, 3, 32)
        # interpolating t-1 points as if t were 2 lands on an unrelated field element
        value = sum(c * two[x] for x, c in shamir.lagrange_at_zero(pair).items()) % shamir.PRIME
        assert value != int.from_bytes(secret, "big")


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.data())
def test_shamir_property(secret, data):
    n = data.draw(st.integers(2, 8))
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 2**200), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, xs, t, PRG())
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=t, unique=True))
    wire = {x: shamir.share_from_bytes(shamir.share_to_bytes(shares[x])) for x in subset}
    assert shamir.reconstruct(wire, t, 32) == secret


def chi2_top_byte(t: torch.Tensor) -> float:
    counts = torch.bincount(((t >> 56) & 0xFF).flatten(), minlength=256).double()
    expected = t.numel() / 256
    return float(((counts - expected) ** 2 / expected).sum())


# 255 degrees of freedom: mean 255, sd 22.6; 450 is > 8 sd, a false alarm never happens
CHI2_LIMIT = 450.0


def test_single_shares_look_uniform_whatever_the_secret():
    for secret in (bytes(32), b"\xff" * 32):
        ys = [shamir.split(secret, [1, 2], 2, PRG())[1] for _ in range(4096)]
        top = torch.tensor([(y >> 513) & 0xFF for y in ys])  # top byte of 521 bits
        counts = torch.bincount(top, minlength=256).double()
        assert float(((counts - 16) ** 2 / 16).sum()) < CHI2_LIMIT
    assert shamir.split(bytes(32), [1], 1, PRG())[1] == 0  # t = 1: no hiding, as expected


def test_shamir_rejects_bad_input():
    with pytest.raises(ValueError, match="66 bytes"):
        shamir.share_from_bytes(b"\x00" * 65)
    with pytest.raises(ValueError, match="out of range"):
        shamir.share_from_bytes(shamir.PRIME.to_bytes(66, "big"))
    with pytest.raises(ValueError, match="distinct"):
        shamir.split(b"x", [1, 1], 2, PRG())
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(b"x", [1, 2], 3, PRG())
    secret = bytes(range(32))
    shares = shamir.split(secret, [1, 2, 3], 2, PRG())
    off_by_one = {1: shares[1], 2: (shares[2] + 1) % shamir.PRIME}
    assert shamir.reconstruct(off_by_one, 2, 32) != secret
    garbled = {1: shares[1], 2: (shares[2] + 2**300) % shamir.PRIME}
    with pytest.raises(ValueError, match="inconsistent"):  # lands outside 32 bytes
        shamir.reconstruct(garbled, 2, 32)


def _to_round_three(n=4, t=3):
    cs = {f"c{i}": SecAggClient(f"c{i}", n, t) for i in range(n)}
    server = SecAggServer(n, t)
    public = server.collect_keys([c.advertise_keys() for c in cs.values()])
    inbox = server.route_shares({k: c.share_keys(public) for k, c in cs.items()})
    server.collect_masked([c.masked_input(inbox[k], torch.ones(3)) for k, c in cs.items()])
    return cs, server


def test_client_refuses_to_reveal_both_seeds_of_one_client():
    cs, _ = _to_round_three()
    c0 = cs["c0"]
    with pytest.raises(UnmaskRefused, match="both b and s_sk"):
        c0.unmask(["c0", "c1", "c2", "c3"], ["c3"])
    with pytest.raises(UnmaskRefused, match="listed as dropped"):
        c0.unmask(["c1", "c2", "c3"], ["c0"])
    assert issubclass(UnmaskRefused, PermissionError)
    reply = c0.unmask(["c0", "c1", "c2"], ["c3"])  # a well-formed request is answered
    assert set(reply["b"]) == {"c0", "c1", "c2"} and set(reply["s_sk"]) == {"c3"}
    with pytest.raises(RuntimeError, match="round 3"):  # ... once: no second request
        c0.unmask(["c0", "c1", "c2", "c3"], [])


def test_share_messages_are_authenticated_and_bound_to_the_recipient():
    n = 3
    cs = {f"c{i}": SecAggClient(f"c{i}", n, 2) for i in range(n)}
    server = SecAggServer(n, 2)
    public = server.collect_keys([c.advertise_keys() for c in cs.values()])
    outs = {k: c.share_keys(public) for k, c in cs.items()}
    assert all(len(ct) == 148 for box in outs.values() for ct in box.values())
    with pytest.raises(ValueError, match="failed authentication"):  # c0's message for c1
        cs["c2"].masked_input({"c0": outs["c0"]["c1"]}, torch.zeros(2))
    tampered = bytearray(outs["c0"]["c1"])
    tampered[5] ^= 1
    with pytest.raises(ValueError, match="failed authentication"):
        cs["c1"].masked_input({"c0": bytes(tampered)}, torch.zeros(2))


def test_masked_input_looks_uniform_and_independent_of_the_update():
    d = 8192
    plain = encode_update(torch.full((d,), 1000.0), FRAC)
    assert chi2_top_byte(plain) > 10 * CHI2_LIMIT  # the test can tell data from noise
    masks = []
    for x in (torch.zeros(d), torch.full((d,), 1000.0), torch.randn(d)):
        _, transcript = run([x, torch.zeros(d), torch.zeros(d)], t=2)
        y = next(m["y"] for m in transcript if isinstance(m, dict) and m.get("id") == "c0"
                 and "y" in m)
        assert chi2_top_byte(y) < CHI2_LIMIT
        masks.append(y - encode_update(x, FRAC))
    # fresh keys each run: the mask differs (almost) everywhere
    assert float((masks[0] == masks[1]).double().mean()) < 0.01


def _ys(transcript):
    return [m["y"] for m in transcript if isinstance(m, dict) and "y" in m]


def test_deterministic_under_fixed_seeds():
    ups = make_updates(4, seed=3)
    with fixed_seeds(b"secagg"):
        a_sum, a = run(ups, t=3, drop_masked={2})
    with fixed_seeds(b"secagg"):
        b_sum, b = run(ups, t=3, drop_masked={2})
    with fixed_seeds(b"other"):
        _, c = run(ups, t=3, drop_masked={2})
    assert torch.equal(a_sum, b_sum)
    assert [m["c_pk"] for m in a if isinstance(m, dict) and "c_pk" in m] == [
        m["c_pk"] for m in b if isinstance(m, dict) and "c_pk" in m
    ]
    assert all(torch.equal(x, y) for x, y in zip(_ys(a), _ys(b), strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(_ys(a), _ys(c), strict=True))


def test_encoding_headroom():
    n, frac = 10, 20
    limit = 2.0 ** (63 - frac) / n
    with pytest.raises(ValueError, match="overflow the sum of 10 clients"):
        encode_update(torch.tensor([0.0, -1.01 * limit]), frac, n)
    with pytest.raises(TypeError, match="float tensor"):
        encode_update(torch.tensor([1, 2]), frac)
    # just under the bound, the sum of all n survives without wrapping around
    big = [torch.tensor([0.99 * limit, -0.99 * limit], dtype=torch.float64)] * 3
    got = simulate(big, 2, frac_bits=frac)
    assert torch.allclose(got, 3 * big[0], rtol=1e-12)
    assert encode_update(big[0], frac, 10).dtype == torch.int64
    with pytest.raises(ValueError, match="overflow the sum of 3 clients"):
        simulate([torch.tensor([2.0 ** (63 - frac) / 2.9])] * 3, 2, frac_bits=frac)


def test_upload_bytes_match_the_messages():
    n, d = 5, 100
    ups = make_updates(n, shape=(d,))
    got, transcript = run(ups)
    sizes = upload_bytes(n, d)
    client0 = {  # the messages c0 sends, in order
        "advertise_keys": transcript[0],
        "share_keys": transcript[n + 1],
        "masked_input": _first_from(transcript, "y"),
        "unmask": _first_from(transcript, "s_sk"),
    }
    assert {k: message_nbytes(m) for k, m in client0.items()} == sizes
    assert sizes["masked_input"] == 8 * d and sizes["share_keys"] == (n - 1) * 148
    assert upload_bytes(n, 2 * d)["masked_input"] == 2 * sizes["masked_input"]


def _first_from(transcript, key):
    return next(m for m in transcript if isinstance(m, dict) and key in m and m.get("id") == "c0")


def test_server_checks_messages():
    cs, server = _to_round_three(n=3, t=2)
    replies = [c.unmask(["c0", "c1", "c2"], []) for c in cs.values()]
    with pytest.raises(ValueError, match="repeated"):
        server.finish([replies[0], replies[0]])
    assert torch.equal(server.finish(replies[:2]), torch.full((3,), 3.0, dtype=torch.float64))
    s2 = SecAggServer(3, 2)
    with pytest.raises(ValueError, match="advertised keys twice"):
        s2.collect_keys([SecAggClient("c0", 3).advertise_keys()] * 2)
