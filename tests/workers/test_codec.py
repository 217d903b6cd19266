"""The codec: what goes in comes out, and anything malformed is named, not crashed on."""

from __future__ import annotations

import msgpack
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core.codec import CodecError, Ref, decode, encode, join_frames, split_frames

DTYPES = list(codec.DTYPES.values())


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    t = torch.randn(shape).mul(50)
    return t.to(dtype)


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=8), st.binary(max_size=8), tensors(),
    st.builds(Ref, st.integers(0, 1000)), st.sampled_from([torch.float32, torch.int64, ...]),
    st.builds(slice, st.none() | st.integers(-5, 5), st.none() | st.integers(-5, 5)),
)
trees = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=3) | st.tuples(kids, kids)
    | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=12,
)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_roundtrip(tree):
    assert same(decode(encode(tree)), tree)
    assert same(decode(split_frames(join_frames(encode(tree)))), tree)


def test_tensor_buffers_are_separate_frames_and_not_copied_into_header():
    t = torch.arange(1000, dtype=torch.int64)
    frames = encode({"obj": t})
    assert len(frames) == 2 and len(frames[0]) < 100 and memoryview(frames[1]).nbytes == 8000


def test_noncontiguous_and_bfloat16_tensors():
    t = torch.arange(12.0).reshape(3, 4).t()
    assert torch.equal(decode(encode(t)), t)
    column_major = torch.arange(6.0).reshape(2, 3).t().contiguous().t()[:, :1]
    assert torch.equal(decode(encode(column_major)), column_major)
    assert torch.equal(decode(encode(column_major[0])), column_major[0])
    b = torch.randn(5).bfloat16()
    assert torch.equal(decode(encode(b)), b)


def _tensor_message(dtype="float32", shape=(2,), buf=b"\0" * 8, index=1):
    meta = msgpack.packb([dtype, list(shape), index])
    header = msgpack.packb({"obj": msgpack.ExtType(1, meta)})
    return [header, buf]


@pytest.mark.parametrize(
    ("frames", "expect"),
    [
        (_tensor_message(dtype="object"), "dtype 'object' is not allowed"),
        (_tensor_message(dtype="complex128"), "is not allowed"),
        (_tensor_message(shape=(3,)), "needs 12 bytes but its buffer has 8"),
        (_tensor_message(shape=(-1,)), "non-negative"),
        (_tensor_message(index=5), "buffer index"),
        (_tensor_message()[:1], "buffer index"),
        (_tensor_message() + [b"x"], "carries 2 buffers but its header uses 1"),
        ([b"\x93\x01"], "malformed message header"),
        ([msgpack.packb(msgpack.ExtType(99, b""))], "unknown extension type 99"),
        ([msgpack.packb(msgpack.ExtType(5, b"pickle"))], "dtype 'pickle' is not allowed"),
        ([], "non-empty list"),
        ([msgpack.packb({1: 2})], "malformed"),
    ],
)
def test_malformed_frames_are_named(frames, expect):
    with pytest.raises(CodecError, match=expect):
        decode(frames)


def test_size_limit():
    frames = encode(torch.zeros(1000))
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode(frames, max_bytes=1000)


def test_split_frames_rejects_truncation_and_padding():
    data = join_frames(encode({"a": torch.ones(3)}))
    for bad in (data[:-1], data + b"\0", data[:3], b"XXXX" + data[4:]):
        with pytest.raises(CodecError):
            split_frames(bad)


def test_unsendable_objects_are_refused_with_a_reason():
    with pytest.raises(CodecError, match="cannot send an object of type"):
        encode({"f": print})
    with pytest.raises(CodecError, match="dtype"):
        encode(torch.zeros(2, dtype=torch.complex64))


@pytest.mark.parametrize("make", [
    lambda: torch.arange(10)[3:7],  # a contiguous view with an offset
    lambda: torch.randn(4, 1).expand(4, 3),  # zero strides
    lambda: torch.randn(3)._neg_view(),  # the negative bit, which numpy() refuses
    lambda: torch.tensor(7),  # 0-d
    lambda: torch.zeros(0, 3),
    lambda: torch.tensor([True, False, True]),
    lambda: torch.randn(2, 2).bfloat16(),
    lambda: torch.randn(3, requires_grad=True),
], ids=["offset", "expanded", "neg-bit", "0-d", "empty", "bool", "bfloat16", "grad"])
@pytest.mark.parametrize("owned", [False, True])
def test_tensor_frames_round_trip_and_never_alias_the_sender(make, owned):
    t = make()
    frames = codec.encode_tensors(["head"], [t])
    if owned:  # a receiver's own writable buffers, as a data link hands them over
        frames = [bytearray(f) for f in frames]
    head, (got,) = codec.decode_tensors(frames, owned=owned)
    plain = t.detach().resolve_neg().clone()
    assert head == ["head"] and got.dtype == t.dtype and torch.equal(got, plain)
    if got.numel() and not owned:
        got.view(-1)[0] = got.view(-1)[0].logical_not()  # the copy changes, the sender's not
        assert torch.equal(t.detach().resolve_neg(), plain)
