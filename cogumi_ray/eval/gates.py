"""Quality gates: minimum scores from config; any unmet gate fails the evaluation."""

from __future__ import annotations

from collections.abc import Mapping

from cogumi_ray.errors import EvalError


def failed_gates(scores: Mapping[str, float], gates: Mapping[str, float]) -> list[str]:
    """One line per unmet gate; a gate whose score was not measured counts as unmet."""
    failed = []
    for key, minimum in sorted(gates.items()):
        if key not in scores:
            failed.append(f"{key}: not measured (enable the benchmark or remove the gate), "
                          f"needs >= {minimum:.3f}")
        elif scores[key] < minimum:
            failed.append(f"{key}: {scores[key]:.3f} < {minimum:.3f}")
    return failed


def enforce_gates(scores: Mapping[str, float], gates: Mapping[str, float]) -> None:
    failed = failed_gates(scores, gates)
    if failed:
        raise EvalError(
            f"{len(failed)} quality gate(s) failed:\n  - " + "\n  - ".join(failed)
            + "\nImprove the model or relax eval.gates."
        )
