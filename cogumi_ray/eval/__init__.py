"""Evaluation harness: benchmarks (HumanEval, GSM8K, task suite), quality gates."""
