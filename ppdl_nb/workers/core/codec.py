"""The wire format: msgpack headers plus raw tensor buffers, and nothing executable.

A message is a tree of None, bool, int, float, str, bytes, lists, tuples, str-keyed dicts,
slices, ``...``, torch dtypes and tensors of allowlisted dtypes. It is encoded as a list
of frames: frame 0 is the msgpack header; each tensor's bytes follow as its own frame,
so large tensors are never copied into the header (zero-copy on the way out). Decoding
checks everything a peer could get wrong: frame count, header size, dtype, that a
declared shape matches its buffer, and a total size limit. Other layers may register
extra object types (e.g. pointer descriptors) with :func:`register_type`.

>>> import torch
>>> frames = encode({"kind": "store", "obj": torch.arange(3)})
>>> decode(frames)["obj"]
tensor([0, 1, 2])
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import torch

from ppdl_nb.errors import CodecError

__all__ = [
    "DTYPES",
    "MAX_MESSAGE_BYTES",
    "Ref",
    "decode",
    "encode",
    "decode_tensors",
    "encode_tensors",
    "frames_nbytes",
    "join_frames",
    "register_type",
    "split_frames",
]

MAX_MESSAGE_BYTES = 4 << 30
MAX_HEADER_BYTES = 16 << 20
MAX_FRAMES = 65536

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_ITEMSIZE = {d: d.itemsize for d in DTYPES.values()}
# numpy's view of a dtype, where it has one: a tensor's bytes in one torch call each way
_NUMPY = {d: np.dtype(n) for n, d in DTYPES.items() if n != "bfloat16"}

_EXT_TENSOR, _EXT_TUPLE, _EXT_SLICE, _EXT_ELLIPSIS, _EXT_DTYPE, _EXT_REF = 1, 2, 3, 4, 5, 6
_FIRST_USER_CODE = 16


@dataclass(frozen=True)
class Ref:
    """A reference to an object in the receiving worker's store, by id."""

    id: int


@dataclass(frozen=True)
class _ExtraType:
    code: int
    cls: type
    to_wire: Callable[[Any], Any]
    from_wire: Callable[[Any, Any], Any]


_EXTRA_BY_CODE: dict[int, _ExtraType] = {}
_EXTRA_BY_CLASS: dict[type, _ExtraType] = {}


def register_type(
    code: int, cls: type, to_wire: Callable[[Any], Any], from_wire: Callable[[Any, Any], Any]
) -> None:
    """Let the codec carry ``cls`` as plain data: ``to_wire(obj)`` gives an encodable value,
    ``from_wire(value, context)`` rebuilds it on the receiver (``context`` is the decoder's).
    """
    if code < _FIRST_USER_CODE or code > 127:
        raise ValueError(f"extension code {code} must be in [{_FIRST_USER_CODE}, 127]")
    entry = _ExtraType(code, cls, to_wire, from_wire)
    _EXTRA_BY_CODE[code] = entry
    _EXTRA_BY_CLASS[cls] = entry


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    if type(t) is torch.Tensor and not t.requires_grad and t.dtype in _NUMPY:
        try:  # the common case, in few torch calls (numpy() refuses a GPU, sparse,
            array = t.numpy()  # conjugate or negative-bit tensor)
        except (TypeError, RuntimeError):
            pass
        else:
            if array.size and array.flags.c_contiguous:
                return memoryview(array).cast("B")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    flat = t.reshape(-1)
    if flat.numel() and flat.stride(0) != 1:  # e.g. a column of a column-major matrix
        flat = flat.clone(memory_format=torch.contiguous_format)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def encode(message: Any) -> list[bytes | memoryview]:
    """Encode ``message`` into frames: ``[header, buffer0, buffer1, ...]``."""
    buffers: list[memoryview] = []

    def pack(value: Any) -> bytes:
        return msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)

    def default(obj: Any) -> msgpack.ExtType:
        if isinstance(obj, torch.Tensor):
            if obj.dtype not in _DTYPE_NAMES:
                raise CodecError(
                    f"cannot send a tensor of dtype {obj.dtype}: allowed dtypes are "
                    f"{sorted(DTYPES)}; convert it first, e.g. t.float()"
                )
            if obj.layout != torch.strided:
                raise CodecError("only dense tensors can be sent; call .to_dense() first")
            buffers.append(_tensor_bytes(obj))
            meta = [_DTYPE_NAMES[obj.dtype], list(obj.shape), len(buffers)]
            if obj.requires_grad:
                meta.append(True)
            return msgpack.ExtType(_EXT_TENSOR, pack(meta))
        if isinstance(obj, tuple):  # torch.Size is a tuple too
            return msgpack.ExtType(_EXT_TUPLE, pack(list(obj)))
        if isinstance(obj, slice):
            return msgpack.ExtType(_EXT_SLICE, pack([obj.start, obj.stop, obj.step]))
        if obj is Ellipsis:
            return msgpack.ExtType(_EXT_ELLIPSIS, b"")
        if isinstance(obj, torch.dtype):
            if obj not in _DTYPE_NAMES:
                raise CodecError(f"dtype {obj} is not in the allowlist {sorted(DTYPES)}")
            return msgpack.ExtType(_EXT_DTYPE, _DTYPE_NAMES[obj].encode())
        if isinstance(obj, Ref):
            return msgpack.ExtType(_EXT_REF, pack(obj.id))
        for plain in (bool, int, float, str):  # subclasses: IntEnum, numpy.float64, ...
            if isinstance(obj, plain):
                return plain(obj)
        extra = _EXTRA_BY_CLASS.get(type(obj))
        if extra is not None:
            return msgpack.ExtType(extra.code, pack(extra.to_wire(obj)))
        raise CodecError(
            f"cannot send an object of type {type(obj).__name__}: messages carry only "
            "tensors, numbers, strings, bytes, lists, tuples, dicts, slices and dtypes"
        )

    try:
        header = pack(message)
    except CodecError:
        raise
    except (OverflowError, ValueError, TypeError, RecursionError) as exc:
        raise CodecError(f"cannot encode message: {type(exc).__name__}: {exc}") from None
    return [header, *buffers]


def encode_tensors(head: Any, tensors: Sequence[torch.Tensor]) -> list[bytes | memoryview]:
    """The lean form of :func:`encode` for a hot path (a protocol round): plain msgpack
    values in ``head`` (no tensors, no extension types) and a list of tensors, each a raw
    buffer. :func:`decode_tensors` reads it back with the same checks as :func:`decode`.

    >>> head, ts = decode_tensors(encode_tensors([b"r/1", 0], [torch.arange(3)]))
    >>> head, ts[0].tolist()
    ([b'r/1', 0], [0, 1, 2])
    """
    metas = []
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.dtype not in _DTYPE_NAMES:
            raise CodecError(f"encode_tensors carries tensors of dtypes {sorted(DTYPES)}")
        metas.append([_DTYPE_NAMES[t.dtype], list(t.shape)])
    try:
        header = msgpack.packb([head, metas], use_bin_type=True, strict_types=True)
    except (OverflowError, ValueError, TypeError) as exc:
        raise CodecError(f"cannot encode message: {type(exc).__name__}: {exc}") from None
    return [header, *(_tensor_bytes(t) for t in tensors)]


def decode_tensors(frames: Sequence[Any], *, owned: bool = False,
                   max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[Any, list[torch.Tensor]]:
    """Inverse of :func:`encode_tensors`: ``(head, tensors)``; :class:`CodecError` if
    malformed (``owned``: as in :func:`decode`)."""
    if not isinstance(frames, list | tuple) or not 1 <= len(frames) <= MAX_FRAMES:
        raise CodecError("a message must be a non-empty list of frames (header first)")
    views = [memoryview(f).cast("B") for f in frames]
    if sum(v.nbytes for v in views) > max_bytes or views[0].nbytes > MAX_HEADER_BYTES:
        raise CodecError(f"message exceeds the limit of {max_bytes} bytes")
    try:
        parsed = msgpack.unpackb(views[0], raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise CodecError(f"malformed message header: {type(exc).__name__}: {exc}") from None
    if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[1], list)
            and len(parsed[1]) == len(views) - 1):
        raise CodecError("header must be [head, [[dtype, shape], ...]], one per buffer")
    used: set[int] = set()
    tensors = [_decode_tensor(meta[:2] + [i] if isinstance(meta, list) else meta, views,
                              used, owned) for i, meta in enumerate(parsed[1], start=1)]
    return parsed[0], tensors


def frames_nbytes(frames: Sequence[Any]) -> int:
    """Total size in bytes of a list of frames."""
    total = 0
    for f in frames:
        total += len(f) if type(f) is bytes else memoryview(f).nbytes
    return total


# long: one closure over the frames keeps this hot path free of per-message objects
def decode(
    frames: Sequence[Any], *, context: Any = None, max_bytes: int = MAX_MESSAGE_BYTES,
    owned: bool = False,
) -> Any:
    """Decode frames made by :func:`encode`; raise :class:`CodecError` on anything malformed.

    ``owned=True`` says the frames are fresh buffers nobody else holds (a socket's receive
    buffers): writable tensor buffers are then used in place instead of copied.
    """
    if not isinstance(frames, list | tuple) or not frames:
        raise CodecError("a message must be a non-empty list of frames (header first)")
    if len(frames) > MAX_FRAMES:
        raise CodecError(f"message has {len(frames)} frames; the limit is {MAX_FRAMES}")
    try:
        views = [memoryview(f).cast("B") for f in frames]
    except TypeError as exc:
        raise CodecError(f"frames must be bytes-like: {exc}") from None
    total = sum(v.nbytes for v in views)
    if total > max_bytes:
        raise CodecError(
            f"message of {total} bytes exceeds the limit of {max_bytes} bytes; "
            "send large data in parts"
        )
    if views[0].nbytes > MAX_HEADER_BYTES:
        raise CodecError(f"header of {views[0].nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    used: set[int] = set()

    def unpack(data: bytes) -> Any:
        return msgpack.unpackb(
            data, ext_hook=ext_hook, raw=False, strict_map_key=True, use_list=True
        )

    def ext_hook(code: int, data: bytes) -> Any:
        if code == _EXT_TENSOR:
            return _decode_tensor(unpack(data), views, used, owned)
        if code == _EXT_TUPLE:
            items = unpack(data)
            if not isinstance(items, list):
                raise CodecError("tuple payload is not a list")
            return tuple(items)
        if code == _EXT_SLICE:
            parts = unpack(data)
            if not (isinstance(parts, list) and len(parts) == 3):
                raise CodecError("slice payload must be [start, stop, step]")
            if not all(p is None or type(p) is int for p in parts):
                raise CodecError("slice bounds must be integers or None")
            return slice(*parts)
        if code == _EXT_ELLIPSIS:
            return Ellipsis
        if code == _EXT_DTYPE:
            name = data.decode("ascii", "replace")
            if name not in DTYPES:
                raise CodecError(f"dtype {name!r} is not allowed; allowed: {sorted(DTYPES)}")
            return DTYPES[name]
        if code == _EXT_REF:
            ref = unpack(data)
            if type(ref) is not int or ref < 0:
                raise CodecError("a reference must be a non-negative integer id")
            return Ref(ref)
        extra = _EXTRA_BY_CODE.get(code)
        if extra is None:
            raise CodecError(f"unknown extension type {code} in message")
        return extra.from_wire(unpack(data), context)

    try:
        message = unpack(views[0])
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises its own (ExtraData, StackError, ...)
        raise CodecError(f"malformed message header: {type(exc).__name__}: {exc}") from None
    if len(used) != len(views) - 1:
        raise CodecError(
            f"message carries {len(views) - 1} buffers but its header uses {len(used)}"
        )
    return message


def _decode_tensor(meta: Any, views: list[memoryview], used: set[int], owned: bool = False
                   ) -> torch.Tensor:
    if not (isinstance(meta, list) and len(meta) in (3, 4)):
        raise CodecError("tensor header must be [dtype, shape, buffer index, (requires_grad)]")
    dtype_name, shape, index = meta[:3]
    requires_grad = len(meta) == 4 and meta[3] is True
    if dtype_name not in DTYPES:
        raise CodecError(f"tensor dtype {dtype_name!r} is not allowed; allowed: {sorted(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 32:
        raise CodecError(f"tensor shape {shape!r} must be a list of at most 32 non-negative "
                         "integers")
    numel = 1
    for d in shape:
        if type(d) is not int or d < 0:
            raise CodecError(f"tensor shape {shape!r} must be a list of non-negative integers")
        numel *= d
    if type(index) is not int or not 1 <= index < len(views) or index in used:
        raise CodecError(f"tensor buffer index {index!r} is missing or used twice")
    used.add(index)
    dtype = DTYPES[dtype_name]
    expected = numel * _ITEMSIZE[dtype]
    buf = views[index]
    if buf.nbytes != expected:
        raise CodecError(
            f"tensor of shape {tuple(shape)} and dtype {dtype_name} needs {expected} bytes "
            f"but its buffer has {buf.nbytes} (truncated or wrong shape)"
        )
    if expected == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        as_numpy = _NUMPY.get(dtype)  # None for bfloat16: read bytes, view them in torch
        array = np.frombuffer(buf, dtype=np.uint8 if as_numpy is None else as_numpy)
        if not (owned and not buf.readonly):
            array = array.copy()  # never alias memory the sender (or anyone) still holds
        tensor = (torch.from_numpy(array).view(dtype).reshape(shape) if as_numpy is None
                  else torch.from_numpy(array.reshape(shape)))
    if requires_grad:
        if not tensor.is_floating_point():
            raise CodecError("only floating-point tensors can require gradients")
        tensor.requires_grad_(True)
    return tensor


_LEN = struct.Struct("<Q")
_MAGIC = b"PPDL\x01"


def join_frames(frames: Sequence[Any]) -> bytes:
    """Pack frames into one byte string (for byte-stream transports and tests)."""
    parts = [_MAGIC, _LEN.pack(len(frames))]
    for f in frames:
        parts.append(_LEN.pack(memoryview(f).nbytes))
    parts.extend(bytes(f) if isinstance(f, memoryview) else f for f in frames)
    return b"".join(parts)


def split_frames(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> list[memoryview]:
    """Inverse of :func:`join_frames`; raises :class:`CodecError` if ``data`` is malformed."""
    view = memoryview(data)
    if view[: len(_MAGIC)] != _MAGIC:
        raise CodecError("not a ppdl message (bad magic or version)")
    pos = len(_MAGIC)
    if view.nbytes < pos + 8:
        raise CodecError("truncated message: missing frame count")
    (count,) = _LEN.unpack_from(view, pos)
    pos += 8
    if count == 0 or count > MAX_FRAMES:
        raise CodecError(f"frame count {count} out of range 1..{MAX_FRAMES}")
    if view.nbytes < pos + 8 * count:
        raise CodecError("truncated message: missing frame lengths")
    lengths = [_LEN.unpack_from(view, pos + 8 * i)[0] for i in range(count)]
    pos += 8 * count
    if sum(lengths) > max_bytes:
        raise CodecError(f"message declares {sum(lengths)} bytes; the limit is {max_bytes}")
    if view.nbytes != pos + sum(lengths):
        raise CodecError(
            f"message length {view.nbytes} does not match its frame table "
            f"({pos + sum(lengths)} bytes): truncated or padded"
        )
    frames = []
    for n in lengths:
        frames.append(view[pos : pos + n])
        pos += n
    return frames
