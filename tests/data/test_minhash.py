"""MinHash kernel: shingles, exact Jaccard, signature estimates, band collisions, config errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from cogumi_ray.data.config import DedupConfig
from cogumi_ray.data.minhash import (
    band_keys,
    exact_key,
    exact_keys,
    jaccard,
    minhash_signatures,
    normalize,
    normalized_units,
    pair_jaccards,
    pair_similarity,
    prefilter_threshold,
    shingle_sets,
    sketches,
)

CFG = DedupConfig()


def _words(rng: random.Random, n: int = 3000) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    return ["".join(rng.choice(letters[:18]) for _ in range(rng.randint(2, 8))) for _ in range(n)]


def _pairs(seed: int, n_pairs: int, length: int = 250) -> list[tuple[str, str]]:
    """(doc, edited copy) with an edit rate drawn per pair: Jaccard spreads over ~0.2..1."""
    rng = random.Random(seed)
    vocab = _words(rng)
    out = []
    for _ in range(n_pairs):
        words = [rng.choice(vocab) for _ in range(length)]
        edited = list(words)
        for i in rng.sample(range(length), rng.randint(0, length // 2)):
            edited[i] = rng.choice(vocab)
        out.append((" ".join(words), " ".join(edited)))
    return out


def _py_jaccard(a: str, b: str, n: int = 3) -> float:
    sa = {a[i : i + n] for i in range(len(a) - n + 1)}
    sb = {b[i : i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def test_normalize_lowercases_and_collapses_whitespace() -> None:
    assert normalize("  Hello\t\tWORLD \n x  ") == "hello world x"
    assert exact_key(normalize("A  b\nC")) == exact_key(normalize("a b c"))
    assert exact_key(normalize("a b c")) != exact_key(normalize("a b c."))


# Every code point str.split() treats as whitespace, and lowercasings that change the length.
_TRICKY = [
    "", "   ", "a", " \t a\x1cb\x1fc\x85d\xa0e\u2028f\u3000g \n", "İstanbul ẞ ΣΑΣ",
    "emoji 🙂  x\r\n\x0b\x0cy", "no-space", "tab\tend\t",
]


def test_batch_normalisation_equals_the_definition() -> None:
    units, offsets = normalized_units(_TRICKY)
    joined = units.tobytes().decode("utf-32-le")
    got = [joined[offsets[i] : offsets[i + 1]] for i in range(len(_TRICKY))]
    assert got == [normalize(t) for t in _TRICKY]
    assert exact_keys(units, offsets) == [exact_key(normalize(t)) for t in _TRICKY]
    assert normalized_units([])[1].tolist() == [0]


def test_pair_jaccards_equal_set_jaccard() -> None:
    rng = random.Random(5)
    vocab = _words(rng)
    long_a = " ".join(rng.choice(vocab) for _ in range(30000))  # > one 131072-window chunk
    long_b = long_a[: len(long_a) // 2] + " ".join(rng.choice(vocab) for _ in range(15000))
    texts = ["", "", "ab", "aaaa aaaa aaaa", "aaaa", "the cat sat", "The  CAT sat!",
             long_a, long_b, "x"]
    a = np.array([0, 0, 2, 3, 5, 7, 2, 9])
    b = np.array([1, 2, 4, 4, 6, 8, 9, 2])
    got = pair_jaccards(texts, a, b, CFG)
    sets = shingle_sets(texts, CFG)
    assert got.tolist() == pytest.approx([jaccard(sets[i], sets[k]) for i, k in zip(a, b, strict=True)])
    assert got[0] == 1.0 and got[1] == 0.0  # empty vs empty, empty vs short
    assert got[5] == pytest.approx(_py_jaccard(normalize(long_a), normalize(long_b)))
    words = DedupConfig(shingle="word", ngram=2)
    w = pair_jaccards(["one two three four", "zero one two three"], np.array([0]),
                      np.array([1]), words)
    assert w[0] == pytest.approx(0.5)
    assert pair_jaccards(texts, np.array([], np.int64), np.array([], np.int64), CFG).size == 0


def test_char_shingle_sets_match_python_sets() -> None:
    texts = ["the cat sat on the mat", "Ünïcödé — ünïcödé 東京タワー", "ab", "", "x y z"]
    sets = shingle_sets(texts, CFG)
    for t, s in zip(texts, sets, strict=True):
        norm = normalize(t)
        expect = {norm[i : i + 3] for i in range(len(norm) - 2)} or ({norm} if norm else set())
        assert s.size == len(expect), t
    a, b = "the quick brown fox jumps", "the quick brown cat jumps"
    sa, sb = shingle_sets([a, b], CFG)
    assert jaccard(sa, sb) == pytest.approx(_py_jaccard(a, b))
    assert jaccard(sets[3], sets[3]) == 1.0  # two empty texts are identical
    assert jaccard(sets[3], sets[0]) == 0.0


def test_word_shingles_depend_only_on_the_words() -> None:
    cfg = DedupConfig(shingle="word", ngram=2)
    a, b = shingle_sets(["one two three four", "zero one two three"], cfg)
    # bigrams {12,23,34} vs {01,12,23}: 2 shared of 4
    assert jaccard(a, b) == pytest.approx(0.5)
    s1 = minhash_signatures(["alpha beta gamma"], cfg)
    s2 = minhash_signatures(["other words here first", "alpha  BETA gamma"], cfg)[1:]
    assert np.array_equal(s1, s2)


def test_signature_is_independent_of_batch() -> None:
    rng = random.Random(3)
    vocab = _words(rng)
    long_doc = " ".join(rng.choice(vocab) for _ in range(5000))
    texts = ["hi", "", long_doc, "a normal sentence about nothing in particular", "ab"]
    together = minhash_signatures(texts, CFG)
    alone = np.vstack([minhash_signatures([t], CFG) for t in texts])
    assert np.array_equal(together, alone)
    assert together.shape == (5, 128) and together.dtype == np.uint32
    assert (together[1] == np.iinfo(np.uint32).max).all()  # empty text: no shingles
    assert minhash_signatures([], CFG).shape == (0, 128)


def test_estimates_track_exact_jaccard() -> None:
    pairs = _pairs(seed=0, n_pairs=150)
    sig_a = minhash_signatures([a for a, _ in pairs], CFG)
    sig_b = minhash_signatures([b for _, b in pairs], CFG)
    sets = shingle_sets([t for p in pairs for t in p], CFG)
    exact = np.array([jaccard(sets[2 * i], sets[2 * i + 1]) for i in range(len(pairs))])
    est = (sig_a == sig_b).mean(axis=1)
    assert exact.min() < 0.5 and exact.max() > 0.95  # the pairs really span the range
    sd = np.sqrt(exact * (1 - exact) / CFG.num_perm)
    # Each estimate within 5 binomial standard deviations, and no systematic bias.
    assert (np.abs(est - exact) <= 5 * sd + 1e-9).all()
    assert abs(float(np.mean(est - exact))) < 0.01
    z = (est - exact)[sd > 0] / sd[sd > 0]
    assert 0.7 < float(z.std()) < 1.3  # permutations behave as independent ones


def test_band_collisions_follow_j_to_the_rows() -> None:
    pairs = _pairs(seed=1, n_pairs=200)
    ka = band_keys(minhash_signatures([a for a, _ in pairs], CFG), CFG)
    kb = band_keys(minhash_signatures([b for _, b in pairs], CFG), CFG)
    sets = shingle_sets([t for p in pairs for t in p], CFG)
    exact = np.array([jaccard(sets[2 * i], sets[2 * i + 1]) for i in range(len(pairs))])
    expected = float(np.mean(exact**CFG.rows))
    observed = float((ka == kb).mean())
    assert observed == pytest.approx(expected, abs=0.03)
    # Keys of different bands never collide: the band index is part of the key.
    assert not np.intersect1d(ka[:, 0], ka[:, 1]).size


def test_sketch_estimates_and_prefilter() -> None:
    pairs = _pairs(seed=2, n_pairs=150)
    sig_a = minhash_signatures([a for a, _ in pairs], CFG)
    sig_b = minhash_signatures([b for _, b in pairs], CFG)
    sets = shingle_sets([t for p in pairs for t in p], CFG)
    exact = np.array([jaccard(sets[2 * i], sets[2 * i + 1]) for i in range(len(pairs))])
    sk_a, sk_b = sketches(sig_a), sketches(sig_b)
    assert sk_a.shape == (150, 64) and sk_a.dtype == np.uint8
    est = pair_similarity(sk_a, sk_b)
    assert abs(float(np.mean(est - exact))) < 0.02
    assert float(np.abs(est - exact).max()) < 0.25
    cut = prefilter_threshold(CFG)
    assert 0.55 < cut < 0.7
    assert (est[exact >= CFG.threshold] >= cut).all()  # the pre-filter keeps every true pair


def test_lsh_finds_planted_near_duplicates() -> None:
    rng = random.Random(5)
    vocab = _words(rng)
    base = [" ".join(rng.choice(vocab) for _ in range(300)) for _ in range(120)]
    dups = []
    for doc in base:
        words = doc.split()
        for i in rng.sample(range(len(words)), 6):  # ~2% of words edited: J ~ 0.9
            words[i] = rng.choice(vocab)
        dups.append(" ".join(words))
    sets = shingle_sets(base + dups, CFG)
    exact = [jaccard(sets[i], sets[i + len(base)]) for i in range(len(base))]
    assert min(exact) >= CFG.threshold
    ka = band_keys(minhash_signatures(base, CFG), CFG)
    kb = band_keys(minhash_signatures(dups, CFG), CFG)
    recall = float(((ka == kb).any(axis=1)).mean())
    assert recall >= 0.98
    # Unrelated docs share no bucket.
    assert not (ka[:60] == ka[60:]).any()


def test_config_rejects_inconsistent_banding() -> None:
    with pytest.raises(ValidationError, match="bands\\*rows must equal num_perm"):
        DedupConfig(bands=10, rows=10)
    with pytest.raises(ValidationError, match="probability"):
        DedupConfig(threshold=0.5)  # 16x8 finds a J=0.5 pair with p ~ 0.06
    assert DedupConfig(threshold=0.5, bands=64, rows=2).bands == 64
    with pytest.raises(ValidationError, match="shingle"):
        DedupConfig(shingle="byte")
