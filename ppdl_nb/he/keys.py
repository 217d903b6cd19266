"""Keys and contexts: who makes them, what a fingerprint pins, what may travel.

A party that wants others to compute on its data (or sums to be decrypted only by it)
makes a TenSEAL context with :func:`make_context`: the secret key never leaves that
party's worker. Others get the *public* context (public, relinearisation and, for
one-image CKKS inference, Galois keys) as TenSEAL's own serialized bytes, and pin it by
its SHA-256 :func:`fingerprint`, so that nobody in the middle (the notebook) can swap in
a key of its own: a worker that was told to trust fingerprint F fetches the context
from the key's owner itself and refuses bytes that do not hash to F, or that carry a
secret key.

Presets (:data:`PRESETS`) fix the parameters: ``cnn`` is CKKS with N=8192 and the
modulus chain [36, 26 x 5, 52] (218 bits: SEAL's 128-bit-security limit for N=8192, as
TenSEAL's tutorial chain [31, 26 x 6, 31]) for the square-activation CNN: five levels for
conv, square, dense, square, dense (results are masked at no level); the 52-bit special
prime keeps the key-switching noise of rotations far below the 26-bit scale, and the
36-bit first prime leaves the logits a range of +-512. ``sum`` is BFV with N=8192 and a
30-bit batching plain modulus, for exact sums of quantised integers.

>>> if has_tenseal():
...     ctx = make_context("sum")
...     public = public_bytes(ctx)
...     load_public(public, fingerprint(public)).is_private()
... else:
...     False
False
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PRESETS", "CiphertextMismatchError", "HEKeyError", "Preset", "fingerprint", "has_tenseal",
    "load_public", "make_context", "public_bytes", "require_tenseal",
]


class HEKeyError(PermissionError):
    """A key is missing, is the wrong one, or would leave the party that must keep it."""


class CiphertextMismatchError(ValueError):
    """A ciphertext does not belong to the context it was sent under."""


def has_tenseal() -> bool:
    """Whether TenSEAL (the ``he`` extra) is importable."""
    try:
        import tenseal  # noqa: F401
    except ImportError:
        return False
    return True


def require_tenseal() -> Any:
    """The ``tenseal`` module, or an ImportError saying how to install it."""
    try:
        import tenseal
    except ImportError:
        raise ImportError("homomorphic encryption needs TenSEAL: pip install 'ppdl-nb[he]' "
                          "(tenseal==0.3.18, Linux x86-64 / macOS wheels for Python 3.11)"
                          ) from None
    return tenseal


@dataclass(frozen=True)
class Preset:
    """Parameters of a context: scheme, ring degree, modulus chain and scale."""

    scheme: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...] = ()
    scale_bits: int = 0
    plain_modulus_bits: int = 0

    @property
    def levels(self) -> int:
        """Multiplications (rescalings) a CKKS ciphertext survives."""
        return max(len(self.coeff_mod_bit_sizes) - 2, 0)

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2 if self.scheme == "ckks" else \
            self.poly_modulus_degree


PRESETS: dict[str, Preset] = {
    "cnn": Preset("ckks", 8192, (36, 26, 26, 26, 26, 26, 52), scale_bits=26),
    "small": Preset("ckks", 8192, (40, 26, 26, 40), scale_bits=26),
    "sum": Preset("bfv", 8192, plain_modulus_bits=30),
}


def make_context(preset: str = "cnn", *, rotations: bool = False) -> Any:
    """A fresh context holding a secret key (for the key owner's worker only).

    ``rotations``: also make Galois keys (needed for one-image-per-ciphertext CKKS
    inference, whose matrix products rotate; they make the public context ~10x larger).
    """
    ts = require_tenseal()
    if preset not in PRESETS:
        raise ValueError(f"unknown HE parameter preset {preset!r}; choose one of "
                         f"{sorted(PRESETS)} (see ppdl_nb.he.keys.PRESETS)")
    p = PRESETS[preset]
    if p.scheme == "ckks":
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, p.poly_modulus_degree, -1,
                         list(p.coeff_mod_bit_sizes))
        ctx.global_scale = 2.0 ** p.scale_bits
    else:
        from tenseal import sealapi

        t = sealapi.PlainModulus.Batching(p.poly_modulus_degree, p.plain_modulus_bits).value()
        ctx = ts.context(ts.SCHEME_TYPE.BFV, p.poly_modulus_degree, t)
    if rotations:
        ctx.generate_galois_keys()
    return ctx


def public_bytes(ctx: Any) -> bytes:
    """The context without its secret key, as TenSEAL's serialized bytes."""
    return bytes(ctx.serialize(save_secret_key=False))


def fingerprint(public: bytes) -> str:
    """SHA-256 of a public context's bytes, in hex: what a party pins."""
    return hashlib.sha256(public).hexdigest()


def load_public(public: bytes, expected: str) -> Any:
    """A public context from ``public``, if it hashes to ``expected`` and holds no secret key."""
    ts = require_tenseal()
    if not isinstance(public, bytes | bytearray):
        raise TypeError(f"a public context travels as bytes, got {type(public).__name__}")
    got = fingerprint(bytes(public))
    if got != expected:
        raise HEKeyError(f"the public context received hashes to {got[:16]}..., not the pinned "
                         f"{expected[:16]}...: it is not the key owner's context (a substituted "
                         "key?). Fetch it again from the key owner and compare fingerprints")
    try:
        ctx = ts.context_from(bytes(public))
    except Exception as exc:
        raise ValueError(f"not a TenSEAL context: {exc}") from None
    if ctx.is_private():
        raise HEKeyError("the context received carries a secret key: a key owner must send "
                         "only its public context (ppdl_nb.he.keys.public_bytes)")
    return ctx


def scheme_of(ctx: Any) -> str:
    """'ckks' or 'bfv'."""
    ts = require_tenseal()
    return "ckks" if ctx.seal_context().data.key_context_data().parms().scheme() == \
        ts.sealapi.SCHEME_TYPE.CKKS else "bfv"
