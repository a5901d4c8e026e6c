"""Config sections for the task suite generator and the curation stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

DOMAINS: tuple[str, ...] = ("code", "math", "reasoning", "automation", "general")
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")


class SuiteConfig(StrictModel):
    """The bundled task suite: seeded, verifiable, with planted mess for curation to clean."""

    examples_per_domain: int = Field(400, ge=1, description="Clean examples generated per domain.")
    domains: list[str] = Field(default_factory=lambda: list(DOMAINS), description="Domains to generate.")
    seed: int = Field(0, description="Generator seed (same seed -> identical suite).")
    exact_dup_rate: float = Field(0.05, ge=0, le=1, description="Fraction re-emitted verbatim.")
    near_dup_rate: float = Field(0.05, ge=0, le=1, description="Fraction re-emitted with small edits.")
    noise_rate: float = Field(
        0.02, ge=0, le=1,
        description="Fraction of each kind of junk: too short/long, non-English, PII, malformed lines.",
    )

    @model_validator(mode="after")
    def _known_domains(self) -> SuiteConfig:
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad:
            raise ValueError(f"unknown domains {bad}; valid: {list(DOMAINS)}")
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

    @model_validator(mode="after")
    def _bands_rows(self) -> DedupConfig:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(
                f"bands*rows must equal num_perm: {self.bands}*{self.rows} != {self.num_perm}"
            )
        return self


class SplitConfig(StrictModel):
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Validation share per stratum.")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="Held-out test share per stratum.")
    seed: int = Field(0, description="Split seed.")


class CurateConfig(StrictModel):
    """`cogumi data curate`: read, normalise, filter, deduplicate, split."""

    inputs: list[str] = Field(
        default_factory=list,
        description="JSONL/Parquet files, directories or URIs; empty = the generated task suite.",
    )
    min_tokens: int = Field(3, ge=0, description="Drop rows with fewer tokens (instruction+response).")
    max_tokens: int = Field(1024, ge=1, description="Drop rows with more tokens.")
    english_only: bool = Field(True, description="Drop rows not detected as English.")
    min_english_prob: float = Field(0.5, ge=0, le=1, description="Language-detector confidence needed.")
    pii: Literal["scrub", "drop", "keep"] = Field("scrub", description="What to do with PII rows.")
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
