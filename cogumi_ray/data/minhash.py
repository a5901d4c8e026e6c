"""Shingling, MinHash signatures, LSH band keys and exact Jaccard, vectorised over a batch of texts.

Batch-wide numpy, plus three compiled loops (`cogumi_ray.data.kernels`: whitespace collapse,
the MinHash min-reduce, pair intersections), so the Ray Data pipeline (`cogumi_ray.data.dedup`),
the single-process reference (`cogumi_ray.data.lsh`), the tests and the benchmark share one kernel.

Normalisation (for both the exact hash and the shingles): lowercase, and collapse every run of
whitespace to one space (stripped at both ends). Punctuation is kept: in code and maths it carries
meaning, and texts that differ only in punctuation are still caught by the near-duplicate pass.

Shingles are n-grams of Unicode code points (`shingle="char"`) or of whitespace-separated words.
Two encodings of the same shingles:
- MinHash input: a 32-bit hash per shingle, computed inside the compiled `kernels.minhash`.
- Exact Jaccard input: a 64-bit code per shingle (`shingle_codes`). Character n-grams with n <= 3
  are packed losslessly (21 bits per code point), so that Jaccard is exact on the shingles; longer
  or word n-grams use a 64-bit hash (a collision is ~m^2/2^64 for m shingles: negligible).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from cogumi_ray.data.config import DedupConfig

U64 = np.uint64
U32 = np.uint32
_POLY = U64(0x9E3779B97F4A7C15)  # odd multiplier for polynomial hashes (invertible mod 2^64)
# Odd 32-bit multipliers, one per position inside an n-gram (cycled for n > 64).
_K32 = (np.random.default_rng(20240917).integers(0, 1 << 32, 64, dtype=U64) | U64(1)).astype(U32)


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace. The text compared for a row is instruction + "\\n" + response.

    The definition; `normalized_units` computes the same for a whole batch without a Python
    split per document."""
    return " ".join(text.lower().split())


def exact_key(norm: str) -> str:
    """128-bit hash (hex) of an already-normalised text: equal keys <=> exact duplicates (whp).
    Hashes the UTF-32 code points, as `exact_keys` does straight from a batch's units."""
    import xxhash

    return xxhash.xxh3_128_hexdigest(norm.encode("utf-32-le"))


def exact_keys(units: np.ndarray, offsets: np.ndarray) -> list[str]:
    """`exact_key` of every document of a normalised batch (`normalized_units`)."""
    import xxhash

    digest = xxhash.xxh3_128_hexdigest
    return [digest(units[offsets[i] : offsets[i + 1]]) for i in range(offsets.size - 1)]


@functools.cache
def _whitespace_table() -> np.ndarray:
    """Lookup table of the code points `str.split()` splits on (all in the BMP, the last is
    U+3000)."""
    spaces = [c for c in range(0x10000) if chr(c).isspace()]
    table = np.zeros(max(spaces) + 1, dtype=np.bool_)
    table[spaces] = True
    return table


def normalized_units(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`normalize` of every text as uint32 code points back to back, and offsets [n+1]."""
    from cogumi_ray.data.kernels import collapse_whitespace

    lowered = [t.lower() for t in texts]
    units = np.frombuffer("".join(lowered).encode("utf-32-le"), dtype=U32)
    lens = np.fromiter((len(t) for t in lowered), dtype=np.int64, count=len(lowered))
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lens)])
    return collapse_whitespace(units, offsets, _whitespace_table())


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads structured 64-bit codes uniformly (returns a new array)."""
    x = x.astype(U64, copy=True)
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


# --- units and windows -----------------------------------------------------------------------


def _units(units: np.ndarray, offsets: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """The shingle units of a normalised batch: its code points, or one hash per word."""
    if cfg.shingle == "char":
        return units, offsets
    joined = units.tobytes().decode("utf-32-le")
    return _word_units([joined[offsets[i] : offsets[i + 1]] for i in range(offsets.size - 1)])


def _word_units(norm: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One 64-bit hash per word via prefix sums of c_j * P^j (mod 2^64), no loop per word."""
    # Each doc gets a trailing space so every word ends at a space and no word spans two docs.
    joined = "".join(s + " " for s in norm if s)
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=U32).astype(U64)
    words_per_doc = np.fromiter((s.count(" ") + 1 if s else 0 for s in norm), np.int64, len(norm))
    offsets = np.concatenate([[0], np.cumsum(words_per_doc)])
    if cps.size == 0:
        return np.zeros(0, dtype=U64), offsets
    powers = np.cumprod(np.full(cps.size, _POLY, dtype=U64))  # P^1 .. P^N, wrapping
    prefix = np.concatenate([[U64(0)], np.cumsum((cps + U64(1)) * powers, dtype=U64)])
    ends = np.flatnonzero(cps == U64(32))  # index of each word's terminating space
    starts = np.concatenate([[0], ends[:-1] + 1])
    inv = U64(pow(int(_POLY), -1, 1 << 64))
    inv_pow = np.cumprod(np.concatenate([[U64(1)], np.full(cps.size, inv, dtype=U64)]))
    # (prefix[e] - prefix[s]) * P^-(s+1) depends only on the word's own characters.
    word = (prefix[ends] - prefix[starts]) * inv_pow[starts + 1]
    return mix64(word), offsets


def _valid_windows(offsets: np.ndarray, n: int, m: int) -> np.ndarray:
    """Mask of the m windows (n units each, over the concatenated batch) that stay inside one doc."""
    valid = np.ones(max(m, 0), dtype=bool)
    ends = offsets[1:]
    for k in range(1, n):  # a window starting in the last n-1 units of a doc spills over
        pos = ends - k
        valid[pos[(pos >= 0) & (pos < m)]] = False
    return valid


# Windows per chunk: each combine step's temporaries stay in cache (one pass over a whole
# batch of ~18M windows is ~4x slower: fresh multi-MB arrays for every intermediate).
_WINDOWS = 1 << 17


def _windowed(
    units: np.ndarray, n: int, combine: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """combine(units, n) over every window of the batch, computed chunk by chunk."""
    m = units.size - n + 1
    parts = [combine(units[lo : min(lo + _WINDOWS, m) + n - 1], n) for lo in range(0, m, _WINDOWS)]
    if not parts:  # the whole batch is shorter than one n-gram: empty, of combine's dtype
        return combine(np.zeros(n, dtype=units.dtype), n)[:0]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _shingles(
    units: np.ndarray, offsets: np.ndarray, n: int, combine: Callable[[np.ndarray, int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """combine(units, n) of every in-doc window; a doc shorter than n gives one whole-text shingle."""
    lens = np.diff(offsets)
    counts = np.maximum(lens - n + 1, 0)
    codes = _windowed(units, n, combine)
    if codes.size:
        codes = codes[_valid_windows(offsets, n, codes.size)]
    short = np.flatnonzero((lens > 0) & (lens < n))
    if short.size:  # rare: texts shorter than one n-gram, spliced in place
        per_doc = np.split(codes, np.cumsum(counts)[:-1])
        for d in short:
            whole = units[offsets[d] : offsets[d + 1]]
            # The tag keeps a short text's shingle apart from any full n-gram's code.
            per_doc[d] = combine(whole, whole.size) ^ codes.dtype.type(1 << (codes.itemsize * 8 - 1))
            counts[d] = 1
        codes = np.concatenate(per_doc)
    return codes, np.concatenate([[0], np.cumsum(counts)])


# --- the two shingle encodings ---------------------------------------------------------------


def _pack21(units: np.ndarray, n: int) -> np.ndarray:
    """Lossless code of n <= 3 code points (21 bits each, <= 63 bits: bit 63 is the short tag)."""
    m = max(units.size - n + 1, 0)
    code = np.zeros(m, dtype=U64)
    for k in range(n):
        code = (code << U64(21)) | units[k : k + m].astype(U64)
    return code


def _poly64(units: np.ndarray, n: int) -> np.ndarray:
    """64-bit polynomial hash of every window (longer char n-grams, word n-grams)."""
    m = max(units.size - n + 1, 0)
    code = np.zeros(m, dtype=U64)
    for k in range(n):
        code = code * _POLY + mix64(units[k : k + m])
    return mix64(code)


def shingle_codes(texts: Sequence[str], cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """64-bit code of every shingle of the texts (repeats kept), and offsets [n+1]: the sets
    exact Jaccard compares."""
    units, offsets = _units(*normalized_units(texts), cfg)
    exact = cfg.shingle == "char" and cfg.ngram <= 3
    return _shingles(units, offsets, cfg.ngram, _pack21 if exact else _poly64)


def shingle_sets(texts: Sequence[str], cfg: DedupConfig) -> list[np.ndarray]:
    """Sorted distinct 64-bit shingle codes of each text."""
    codes, offs = shingle_codes(texts, cfg)
    return [_distinct(codes[offs[i] : offs[i + 1]]) for i in range(offs.size - 1)]


def pair_jaccards(
    texts: Sequence[str], a: np.ndarray, b: np.ndarray, cfg: DedupConfig
) -> np.ndarray:
    """Exact Jaccard [m] of the shingle sets of texts[a[k]] and texts[b[k]] (two empty sets
    count as identical), without building the sets: one hash table per pair."""
    from cogumi_ray.data.kernels import intersections

    codes, offs = shingle_codes(texts, cfg)
    size_a, size_b, shared = intersections(
        codes, np.asarray(offs, np.int64), np.asarray(a, np.int64), np.asarray(b, np.int64)
    )
    union = size_a + size_b - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 1.0)


def _distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique is several times slower on uint64 in numpy 2.x)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted distinct code arrays; two empty sets count as identical."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


# --- MinHash and LSH bands -------------------------------------------------------------------


def permutations(cfg: DedupConfig) -> np.ndarray:
    """Multipliers a_i (odd) of the num_perm hash functions h_i(x) = a_i * x mod 2^32.

    x is already a uniformly mixed, odd 32-bit shingle hash and multiplying by an odd a_i
    permutes the odd residues, so these maps act as independent random permutations for MinHash
    (the tests check estimates against exact Jaccard and band collision rates against J^rows).
    uint32 keeps the compiled kernel 8 lanes wide, and with no additive term it is one multiply
    and one min per value: ~35% faster than a*x + b, with the same measured accuracy.
    """
    rng = np.random.default_rng(cfg.seed)
    return rng.integers(0, 1 << 32, size=cfg.num_perm, dtype=U64).astype(U32) | U32(1)


def signatures(units: np.ndarray, offsets: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures [n_docs, num_perm] uint32 of a normalised batch (`normalized_units`).

    Repeated shingles are not removed first: min() ignores them, and a per-doc sort costs more
    than the multiplies it would save. A doc without shingles keeps the all-ones signature.
    """
    from cogumi_ray.data.kernels import minhash

    units, offsets = _units(units, offsets, cfg)
    if units.dtype != U32:  # 64-bit word hashes: fold to 32 bits
        units = (units ^ (units >> U64(32))).astype(U32)
    position = _K32[np.arange(cfg.ngram) % _K32.size]
    return minhash(units, np.asarray(offsets, np.int64), cfg.ngram, position, permutations(cfg))


def minhash_signatures(texts: Sequence[str], cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures [len(texts), num_perm] (uint32) of the texts' shingle sets."""
    return signatures(*normalized_units(texts), cfg)


def band_keys(signatures: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """One 64-bit key per (doc, band) [n, bands]: equal keys <=> equal band rows (whp).

    The band index is mixed in, so a key names its band too and all bands share one groupby.
    """
    n = signatures.shape[0]
    sig = signatures.reshape(n, cfg.bands, cfg.rows).astype(U64)
    key = np.broadcast_to(np.arange(1, cfg.bands + 1, dtype=U64), (n, cfg.bands)).copy()
    for r in range(cfg.rows):
        key = mix64(key * _POLY + sig[:, :, r])
    return key


# --- 4-bit sketches: a cheap pre-filter for LSH candidates -------------------------------------
#
# Unrelated English texts still share ~20-30% of their character 3-grams, and at that Jaccard a
# pair lands in some 16x8 bucket with p = 1-(1-J^8)^16 ~ 1e-4..1e-3: millions of false candidates
# over ~10^11 pairs of a 640K-row corpus. Each band row therefore carries 4 bits of every MinHash
# value (b-bit MinHash, 64 bytes for 128 permutations), and a bucket keeps only pairs whose
# estimated Jaccard is within 5 standard deviations of the threshold; exact Jaccard decides.

SKETCH_BITS = 4
_PREFILTER_Z = 5.0


def sketches(signatures: np.ndarray) -> np.ndarray:
    """[n, num_perm/2] uint8: 4 well-mixed bits of each MinHash value, two per byte."""
    top = ((signatures.astype(U32) * U32(0x9E3779B1)) >> U32(28)).astype(np.uint8)  # [n, P]
    return (top[:, 0::2] << np.uint8(4)) | top[:, 1::2]


# Equal 4-bit values in a byte of (a XOR b): 0, 1 or 2.
_EQUAL_NIBBLES = np.array([((x & 15) == 0) + ((x >> 4) == 0) for x in range(256)], dtype=np.uint8)


def pair_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard [m] of aligned packed sketches a[k], b[k] ([m, num_perm/2] each): equal
    4-bit values occur with probability J + (1 - J)/16, so J' = (match - 1/16) / (1 - 1/16)."""
    n_values = 2 * a.shape[1]
    match = _EQUAL_NIBBLES[a ^ b].sum(axis=1, dtype=np.int32) / n_values
    chance = 1.0 / (1 << SKETCH_BITS)
    return (match - chance) / (1.0 - chance)


def prefilter_threshold(cfg: DedupConfig) -> float:
    """Lowest sketch estimate kept: threshold minus 5 standard deviations of the estimate there
    (a pair at the threshold is dropped by the pre-filter with probability ~3e-7)."""
    chance = 1.0 / (1 << SKETCH_BITS)
    p = cfg.threshold + (1 - cfg.threshold) * chance
    sd = float(np.sqrt(p * (1 - p) / cfg.num_perm)) / (1 - chance)
    return cfg.threshold - _PREFILTER_Z * sd


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    return float(np.mean(sig_a == sig_b))
