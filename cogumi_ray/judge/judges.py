"""Judges by name (`judge.judge` in config) and mode (`judge.mode`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogumi_ray.judge.config import JUDGES

if TYPE_CHECKING:
    from cogumi_ray.judge.base import Judge
    from cogumi_ray.judge.cache import JudgeCache
    from cogumi_ray.judge.config import JudgeConfig


def make_judge(cfg: JudgeConfig, cache: JudgeCache | None = None, qps: float | None = None) -> Judge:
    """The verifier, or an LLM judge (reference or pairwise) over the configured API client."""
    from cogumi_ray.errors import JudgeError

    if cfg.judge == "verifier":
        from cogumi_ray.judge.verifier import VerifierJudge

        return VerifierJudge(cfg)
    if cfg.judge not in JUDGES:
        raise JudgeError(f"unknown judge {cfg.judge!r}; judges are {list(JUDGES)}")
    from cogumi_ray.judge.clients import make_client

    client = make_client(cfg, cache=cache, qps=qps)
    if cfg.mode == "pairwise":
        from cogumi_ray.judge.pairwise import PairwiseJudge

        return PairwiseJudge(cfg, client)
    from cogumi_ray.judge.reference import ReferenceJudge

    return ReferenceJudge(cfg, client)
