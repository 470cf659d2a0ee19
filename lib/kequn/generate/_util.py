"""Vectorised helpers: random streams, time, string building with pyarrow compute."""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400

# Hour-of-day weights (local time) for human activity.
_HOUR_W = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 3, 6, 8, 8, 8,
                    9, 8, 7, 7, 7, 7, 8, 10, 11, 10, 7, 3], dtype=float)
_HOUR_P = _HOUR_W / _HOUR_W.sum()


def stream(seed: int, *keys) -> np.random.Generator:
    """A random stream named by seed and keys (strings are hashed stably)."""
    ks = [int(k) if not isinstance(k, str) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *ks]))


def mix64(x, salt: int = 0) -> np.ndarray:
    """splitmix64 finaliser: a bijection of uint64, salted."""
    z = np.asarray(x).astype(np.uint64) ^ np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def perm10(x, salt: int) -> np.ndarray:
    """Unique 10-digit numbers for distinct x < 10**10 (affine map mod 10**10)."""
    mults = [7_919_391, 3_571_373, 2_750_159, 1_299_709, 4_256_233, 6_700_417]
    a = mults[salt % len(mults)]
    b = (salt * 1_234_567_891) % 10**10
    return (np.asarray(x, dtype=np.int64) * a + b) % 10**10


def keys(prefix: str, nums, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(np.asarray(nums, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "") if prefix else s


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_str(u, width: int = 16) -> pa.Array:
    u = np.asarray(u, dtype=np.uint64)
    shifts = (np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4))
    nib = ((u[:, None] >> shifts) & np.uint64(0xF)).astype(np.uint8)
    chars = np.ascontiguousarray(_HEX[nib])
    return pa.array(chars.view(f"S{width}").ravel()).cast(pa.string())


def cents_str(cents) -> pa.Array:
    """Decimal strings with two places from integer cents (non-negative or negative)."""
    c = np.asarray(cents, dtype=np.int64)
    neg = c < 0
    a = np.abs(c)
    ip = pc.cast(pa.array(a // 100), pa.string())
    fp = pc.utf8_lpad(pc.cast(pa.array(a % 100), pa.string()), 2, "0")
    s = pc.binary_join_element_wise(ip, fp, ".")
    if neg.any():
        s = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", s, ""), s)
    return s


def ts(t0: int, rel, mask=None) -> pa.Array:
    """Timestamps (seconds) from times relative to t0; mask marks nulls."""
    v = np.asarray(rel, dtype=np.int64) + t0
    return pa.array(v, type=pa.timestamp("s"), mask=mask)


def dates(days_since_epoch, mask=None) -> pa.Array:
    return pa.array(np.asarray(days_since_epoch, dtype=np.int32), type=pa.date32(), mask=mask)


def times_in(rng: np.random.Generator, lo, hi) -> np.ndarray:
    """Random times in [lo, hi) (seconds) with a day/night rhythm; lo < hi elementwise."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    n = lo.shape[0]
    t = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    hour = rng.choice(24, size=n, p=_HOUR_P)
    t2 = (t // DAY) * DAY + hour * 3600 + rng.integers(0, 3600, n)
    ok = (t2 >= lo) & (t2 < hi)
    return np.where(ok, t2, t)


def take(arr: pa.Array, idx) -> pa.Array:
    return pc.take(arr, pa.array(np.asarray(idx, dtype=np.int64)))


def choose(idx, options: list) -> pa.Array:
    """Per-row choice among equally long arrays/scalars (pyarrow choose)."""
    n = len(idx)
    opts = [o if isinstance(o, (pa.Array, pa.ChunkedArray)) else pa.array(np.full(n, o, dtype=object), pa.string())
            for o in options]
    return pc.choose(pa.array(np.asarray(idx, dtype=np.int8)), *opts)


def repeat_idx(counts) -> np.ndarray:
    """For counts per owner, the owner index of each generated row."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.repeat(np.arange(counts.shape[0]), counts)
