"""Judging: verifier and LLM judges on Ray Data, their API clients, reply cache and costs."""
