"""Config sections for the task suite generator and the curation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

DOMAINS: tuple[str, ...] = ("code", "math", "reasoning", "automation", "general")
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")


class SuiteConfig(StrictModel):
    """The bundled task suite: seeded, verifiable, with planted mess for curation to clean."""

    examples_per_domain: int = Field(
        6000, ge=1,
        description="Clean examples generated per domain (tens of thousands work; each template "
        "gets an equal share until it runs out of distinct tasks).",
    )
    domains: list[str] = Field(default_factory=lambda: list(DOMAINS), description="Domains to generate.")
    seed: int = Field(0, description="Generator seed (same seed -> identical suite).")
    exact_dup_rate: float = Field(0.05, ge=0, le=1, description="Fraction re-emitted verbatim.")
    near_dup_rate: float = Field(0.05, ge=0, le=1, description="Fraction re-emitted with small edits.")
    noise_rate: float = Field(
        0.02, ge=0, le=1,
        description="Fraction of each kind of junk: too short/long, non-English, PII, malformed lines.",
    )
    clean_max_jaccard: float = Field(
        0.8, gt=0, le=1,
        description="Clean tasks in a domain stay below this char-3-gram Jaccard with each other "
        "(checked exactly), so curation's near-dup step (merges at >= 0.8) never merges two "
        "distinct tasks, while planted near-duplicates (>= 0.85) are still caught.",
    )
    formats: list[Literal["alpaca", "sharegpt", "prompt_response", "qa"]] = Field(
        default_factory=lambda: ["alpaca", "sharegpt", "prompt_response", "qa"],
        min_length=1,
        description="Raw instruction formats written (rows are spread across one file per format).",
    )

    @model_validator(mode="after")
    def _known_domains(self) -> SuiteConfig:
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad:
            # only the generator is limited to its templates' domains; curation, modifiers,
            # router and serve take any domain the data labels rows with
            raise ValueError(
                f"unknown domains {bad}; the task suite generates {list(DOMAINS)}. A new domain "
                "needs its own data (curate.inputs, or modifiers.data) and modifiers.domains"
            )
        return self


class DedupConfig(StrictModel):
    """MinHash LSH near-duplicate detection (defaults as in the original spec)."""

    shingle: Literal["char", "word"] = Field("char", description="Shingle unit.")
    ngram: int = Field(3, ge=1, description="Shingle length in units.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity that counts as duplicate.")
    bands: int = Field(16, ge=1, description="LSH bands; bands*rows must equal num_perm.")
    rows: int = Field(8, ge=1, description="Rows per band.")
    exact: bool = Field(True, description="Drop exact duplicates (normalised text hash) first.")
    near: bool = Field(True, description="Drop near duplicates (MinHash LSH + exact Jaccard).")
    seed: int = Field(1, description="Seed of the MinHash permutations (same seed -> same result).")
    batch_size: int = Field(512, ge=1, description="Rows per MinHash map_batches call.")
    max_bucket_size: int = Field(
        64, ge=2,
        description="LSH buckets larger than this pair each member only with the bucket's first "
        "max_bucket_size members (bounds the pairs a huge cluster of templated rows creates).",
    )
    shuffle_partitions: int = Field(
        0, ge=0, description="Hash-shuffle partitions for buckets and pairs; 0 = 2 per cluster CPU."
    )
    min_candidate_prob: float = Field(
        0.9, ge=0, le=1,
        description="Reject bands x rows that find a pair at the threshold with lower probability.",
    )
    materialize: bool = Field(
        True,
        description="Read the input once into Ray's object store (spilled to disk when it does "
        "not fit) for dedup's three passes over it; False re-reads (and re-computes) it each time.",
    )

    @model_validator(mode="after")
    def _bands_rows(self) -> DedupConfig:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(
                f"bands*rows must equal num_perm: {self.bands}*{self.rows} != {self.num_perm}; "
                "e.g. bands=16, rows=8 for num_perm=128"
            )
        # A pair with Jaccard J shares one band with probability J^rows, so it becomes an LSH
        # candidate with probability 1 - (1 - J^rows)^bands (16x8 at J=0.8: 0.9996).
        p = 1 - (1 - self.threshold**self.rows) ** self.bands
        if p < self.min_candidate_prob:
            raise ValueError(
                f"bands={self.bands} x rows={self.rows} find a pair at Jaccard {self.threshold} "
                f"with probability {p:.3f} < min_candidate_prob={self.min_candidate_prob}; "
                "use more bands with fewer rows (num_perm = bands*rows)"
            )
        return self


class SplitConfig(StrictModel):
    """Stratified train/val/test split: every (domain, difficulty) stratum is split in proportion."""

    val_fraction: float = Field(0.1, ge=0, lt=1, description="Validation share per stratum.")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="Held-out test share per stratum.")
    max_val_per_stratum: int | None = Field(
        20, ge=0, description="At most this many validation rows per stratum (None = no cap)."
    )
    max_test_per_stratum: int | None = Field(
        20, ge=0, description="At most this many held-out test rows per stratum (None = no cap); "
        "the default 15 strata x 20 = 300 rows keep every evaluation of the held-out split short.",
    )
    seed: int = Field(0, description="Split seed (same seed and rows -> same assignment).")

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 (got {self.val_fraction} + "
                f"{self.test_fraction}); lower one so train keeps some rows"
            )
        return self


class CurateConfig(StrictModel):
    """`cogumi data curate`: read, normalise, filter, deduplicate, split."""

    inputs: list[str] = Field(
        default_factory=list,
        description="JSONL/Parquet files, directories or URIs; empty = the generated task suite.",
    )
    min_tokens: int = Field(
        5, ge=0,
        description="Drop rows with fewer tokens (instruction+response, regex approximation of "
        "subword tokens: see cogumi_ray/data/filters/length.py).",
    )
    max_tokens: int = Field(1024, ge=1, description="Drop rows with more tokens.")
    english_only: bool = Field(True, description="Drop rows detected as not English (py3langid).")
    min_english_prob: float = Field(
        0.02, ge=0, le=1,
        description="Keep a row whose English probability reaches this even when another language "
        "scores higher: short English text spreads probability over related languages (Pidgin, "
        "Scots), while real non-English prose gives English almost nothing.",
    )
    min_lang_letters: int = Field(
        20, ge=0,
        description="ASCII-only rows with fewer letters in their natural-language part (code, JSON "
        "and numbers removed) are too short to judge and are kept.",
    )
    pii: Literal["scrub", "drop", "keep"] = Field(
        "scrub", description="PII (emails, phones, API keys/secrets): replace by placeholders "
        "like [EMAIL], drop the row, or keep it untouched.",
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _token_bounds(self) -> CurateConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})"
            )
        return self
