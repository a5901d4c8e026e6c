"""The clean suite: seeded, balanced, distinct enough to survive near-dup curation, well formed."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cogumi_ray.data.config import DIFFICULTIES, DOMAINS, SuiteConfig
from cogumi_ray.data.suite import generate_suite
from cogumi_ray.data.suite.base import char_ngrams, jaccard
from cogumi_ray.errors import DataError


@pytest.fixture(scope="module")
def suite():
    return generate_suite(SuiteConfig())


def test_same_seed_gives_identical_examples():
    cfg = SuiteConfig(examples_per_domain=30)
    a = [json.dumps(e.to_row(), sort_keys=True) for e in generate_suite(cfg)]
    b = [json.dumps(e.to_row(), sort_keys=True) for e in generate_suite(cfg)]
    assert a == b
    other = [json.dumps(e.to_row(), sort_keys=True)
             for e in generate_suite(SuiteConfig(examples_per_domain=30, seed=1))]
    assert other != a


def test_counts_balanced_by_domain_and_difficulty(suite):
    per_domain = Counter(e.domain for e in suite)
    assert per_domain == {d: 400 for d in DOMAINS}
    per_cell = Counter((e.domain, e.difficulty) for e in suite)
    assert set(per_cell) == {(d, k) for d in DOMAINS for k in DIFFICULTIES}
    assert min(per_cell.values()) >= 133
    assert len({e.id for e in suite}) == len(suite)


def test_no_two_clean_tasks_are_near_duplicates(suite):
    # Curation merges pairs at char-3-gram Jaccard >= 0.8; distinct tasks must never qualify.
    for domain in DOMAINS:
        texts = [(" ".join(f"{e.instruction}\n{e.response}".lower().split()), e.id)
                 for e in suite if e.domain == domain]
        grams = sorted(((char_ngrams(t), i) for t, i in texts), key=lambda g: len(g[0]))
        for i, (a, ida) in enumerate(grams):
            for b, idb in grams[i + 1:]:
                if len(a) < 0.8 * len(b):  # Jaccard <= |a| / |b|; sorted by size, so stop here
                    break
                assert jaccard(a, b) < 0.8, (ida, idb)


def test_responses_are_short_and_formatted(suite):
    for e in suite:
        assert e.instruction.strip() and e.response.strip()
        assert len(e.response.split()) <= 60, e.id
        if e.domain == "math":
            assert e.response.splitlines()[-1] == f"Answer: {e.metadata['answer']}"
        if e.domain == "automation":
            assert json.loads(e.response) == e.metadata["call"]
        if e.domain == "code":
            assert e.response.startswith(f"def {e.metadata['entry_point']}(")
    assert all("task" in e.metadata for e in suite)


def test_only_known_domains_and_a_subset_works():
    out = generate_suite(SuiteConfig(domains=["math"], examples_per_domain=9))
    assert {e.domain for e in out} == {"math"} and len(out) == 9
    with pytest.raises(ValueError, match="unknown domains"):
        SuiteConfig(domains=["poetry"])


def test_impossible_distinctness_fails_with_a_clear_error():
    with pytest.raises(DataError, match="ran out of distinct"):
        generate_suite(SuiteConfig(domains=["general"], examples_per_domain=300,
                                   clean_max_jaccard=0.2))


def test_identical_across_processes_with_different_hash_seeds():
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import hashlib, json\nfrom cogumi_ray.data.config import SuiteConfig\n"
            "from cogumi_ray.data.suite import generate_suite\n"
            "rows = [json.dumps(e.to_row(), sort_keys=True) "
            "for e in generate_suite(SuiteConfig(examples_per_domain=15))]\n"
            "print(hashlib.sha256('\\n'.join(rows).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
               for seed in ("1", "2")}
    rows = [json.dumps(e.to_row(), sort_keys=True)
            for e in generate_suite(SuiteConfig(examples_per_domain=15))]
    assert digests == {hashlib.sha256("\n".join(rows).encode()).hexdigest()}
