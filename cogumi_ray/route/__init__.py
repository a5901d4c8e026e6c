"""Learned routing: which option (the base, or base + one domain's LoRA modifier) answers a query.

labels (scores.parquet -> targets) -> features (MiniLM -> PCA) -> models (MLP / kNN / logistic,
temperature-calibrated) -> policy (confidence cut or progressive) -> report (RouteLLM metrics);
escalation (dissatisfied follow-ups), memory (SQLite sessions) and stage (`cogumi router train`).
"""
