"""Fixtures of the router tests: the synthetic scores/splits, written once per session."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from routekit import make_rows, write_scores, write_split


@dataclass
class Synthetic:
    scores: str
    val: str
    test: str


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Synthetic:
    d = tmp_path_factory.mktemp("route_data")
    val, test = make_rows(540, 1, "v"), make_rows(300, 2, "t")
    s = Synthetic(str(d / "scores.parquet"), str(d / "val.parquet"), str(d / "test.parquet"))
    write_split(s.val, val)
    write_split(s.test, test)
    write_scores(s.scores, {"val": val, "test": test})
    return s
