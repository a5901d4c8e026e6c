"""Compiled (numba) loops behind MinHash dedup: the three places where numpy needs several passes
over large temporaries, or a Python loop per document.

- `collapse_whitespace`: the whitespace half of `minhash.normalize` over a batch of code points.
- `minhash`: shingle hashes and, per document, the minimum of a_p * h (mod 2^32) for all
  permutations p in one pass (numpy needs the hashes, a [num_perm, width] product, then a reduce).
- `intersections`: distinct and shared shingle counts of two documents, via one small open-
  addressing table per pair instead of sorting both sets.

Compiled on first use and cached next to this file (`cache=True`): Ray workers load the cached
machine code instead of compiling again. `nogil` lets threads of one worker run them side by side.
"""

from __future__ import annotations

import numba
import numpy as np

_SPACE = np.uint32(32)
_MAX32 = np.uint32(0xFFFFFFFF)
_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)  # no shingle code has all 64 bits set (see minhash)


@numba.njit(nogil=True, cache=True)
def collapse_whitespace(
    units: np.ndarray, offsets: np.ndarray, is_space: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per document: drop leading/trailing whitespace and turn each inner run into one space.

    units: uint32 code points of all documents back to back, offsets [n+1]; is_space: bool lookup
    table over code points (those beyond it are not whitespace).
    """
    n = offsets.size - 1
    out = np.empty(units.size, dtype=np.uint32)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    k = 0
    for d in range(n):
        started = False
        pending = False
        for i in range(offsets[d], offsets[d + 1]):
            c = units[i]
            if c < is_space.size and is_space[c]:
                pending = started
            else:
                if pending:
                    out[k] = _SPACE
                    k += 1
                    pending = False
                out[k] = c
                k += 1
                started = True
        out_offsets[d + 1] = k
    return out[:k], out_offsets


@numba.njit(nogil=True, cache=True)
def _fmix32(h: np.uint32) -> np.uint32:
    h ^= h >> np.uint32(16)
    h = np.uint32(h * np.uint32(0x85EBCA6B))
    h ^= h >> np.uint32(13)
    h = np.uint32(h * np.uint32(0xC2B2AE35))
    h ^= h >> np.uint32(16)
    return h


@numba.njit(nogil=True, cache=True)
def minhash(
    units: np.ndarray, offsets: np.ndarray, n: int, position: np.ndarray, multipliers: np.ndarray
) -> np.ndarray:
    """[n_docs, num_perm] uint32 MinHash signatures straight from a batch's shingle units.

    Each window of n units hashes to h = fmix32(sum_k u_k * position_k) | 1; a document shorter
    than n gives one whole-text shingle, tagged with the top bit. The signature is the minimum
    over the document's shingles of (a_p * h) mod 2^32 for every permutation p; a document
    without units keeps the all-ones signature. The loop over permutations has no branch, so
    LLVM vectorises it (8 lanes of multiply + min on AVX2).
    """
    n_docs = offsets.size - 1
    p = multipliers.size
    out = np.empty((n_docs, p), dtype=np.uint32)
    row = np.empty(p, dtype=np.uint32)
    for d in range(n_docs):
        row[:] = _MAX32
        lo, hi = offsets[d], offsets[d + 1]
        width = min(n, hi - lo)
        for s in range(lo, max(hi - n + 1, lo + 1) if hi > lo else lo):
            h = np.uint32(0)
            for k in range(width):
                h = np.uint32(h + np.uint32(units[s + k] * position[k]))
            x = _fmix32(h) | np.uint32(1)
            if width < n:
                x ^= np.uint32(0x80000000)
            for j in range(p):
                row[j] = min(row[j], np.uint32(multipliers[j] * x))
        out[d] = row
    return out


@numba.njit(nogil=True, cache=True)
def _slot(keys: np.ndarray, x: np.uint64, mask: np.uint64) -> np.uint64:
    """Where x is, or would go, in a linear-probing table (mask = size - 1)."""
    s = ((x * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask
    while keys[s] != _EMPTY and keys[s] != x:
        s = (s + np.uint64(1)) & mask
    return s


@numba.njit(nogil=True, cache=True)
def intersections(
    codes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair k of documents (a[k], b[k]): distinct codes of a, of b, and shared.

    codes: uint64 shingle codes of all documents back to back (repeats allowed), offsets [n+1].
    Each pair fills a linear-probing table with a's codes, then looks b's codes up, marking each
    shared one so a repeat in b counts once. (A hashed code equal to the empty marker, odds
    2^-64, would be missed; packed 3-grams never are.)
    """
    m = a.size
    sizes = np.zeros((2, m), dtype=np.int64)  # distinct codes of a, of b
    shared = np.zeros(m, dtype=np.int64)
    keys = np.empty(16, dtype=np.uint64)
    owner = np.empty(16, dtype=np.uint8)  # 0: seen in a, 1: seen in b only, 2: in both
    for k in range(m):
        need = 2 * (offsets[a[k] + 1] - offsets[a[k]] + offsets[b[k] + 1] - offsets[b[k]]) + 2
        size = 16  # load <= 1/2; sized per pair so a long doc does not slow later pairs
        while size < need:
            size *= 2
        if size > keys.size:
            keys = np.empty(size, dtype=np.uint64)
            owner = np.empty(size, dtype=np.uint8)
        keys[:size] = _EMPTY
        mask = np.uint64(size - 1)
        for side in range(2):
            doc = a[k] if side == 0 else b[k]
            for i in range(offsets[doc], offsets[doc + 1]):
                x = codes[i]
                s = _slot(keys, x, mask)
                if keys[s] == _EMPTY:
                    keys[s] = x
                    owner[s] = side
                    sizes[side, k] += 1
                elif side == 1 and owner[s] == 0:
                    owner[s] = 2
                    sizes[1, k] += 1
                    shared[k] += 1
    return sizes[0], sizes[1], shared
