"""Judging: verifier and LLM judges on Ray Data, failure analysis, distillation."""
