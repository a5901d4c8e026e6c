"""Curation filters by name (chosen in config), built in the order they run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogumi_ray.data.filters.base import KEEP, Filter, Outcome, drop
from cogumi_ray.data.filters.language import LanguageFilter
from cogumi_ray.data.filters.length import LengthFilter
from cogumi_ray.data.filters.pii import PIIFilter

if TYPE_CHECKING:
    from cogumi_ray.data.config import CurateConfig

__all__ = ["KEEP", "Filter", "LanguageFilter", "LengthFilter", "Outcome", "PIIFilter", "drop",
           "build_filters"]


def build_filters(cfg: CurateConfig) -> list[Filter]:
    """Length first (cheapest), then language, then PII (so scrub counts cover kept rows only)."""
    filters: list[Filter] = [LengthFilter(cfg.min_tokens, cfg.max_tokens)]
    if cfg.english_only:
        filters.append(LanguageFilter(cfg.min_english_prob, cfg.min_lang_letters))
    if cfg.pii != "keep":
        filters.append(PIIFilter(cfg.pii))
    return filters
