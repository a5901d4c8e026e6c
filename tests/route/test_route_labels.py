"""Labels from scores.parquet: the cheapest passing option, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from routekit import make_rows, write_scores, write_split

from cogumi_ray.errors import ConfigError, DataError
from cogumi_ray.route.config import FeatureConfig, RouterConfig
from cogumi_ray.route.labels import cheapest_passing, load_labels


def test_cheapest_passing_prefers_base_on_ties_and_when_none_passes():
    passed = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [0, 1, 1]], dtype=bool)
    costs = np.array([1.0, 3.0, 2.0])
    assert cheapest_passing(passed, costs).tolist() == [0, 2, 2, 0, 2]
    tied = np.array([1.0, 1.0, 2.0])  # a modifier as cheap as the base: the base still wins
    assert cheapest_passing(passed, tied).tolist() == [0, 1, 2, 0, 1]


def test_labels_join_instructions_and_costs(synthetic):
    rc = RouterConfig(costs={"base": 1.0, "code": 3.0})
    ls = load_labels(synthetic.scores, synthetic.val, "val", rc)
    assert ls.options == ["base", "code", "math", "writing"]
    assert ls.costs.tolist() == [1.0, 3.0, 2.0, 2.0]
    assert len(ls) == 540 and ls.passed.shape == (540, 4)
    assert "Python" in ls.texts[0] and ls.domains[0] == "code"
    t = ls.targets
    assert set(np.unique(t)) <= {0, 1, 2, 3} and (t == 0).mean() > 0.3


@pytest.fixture
def small(tmp_path):
    rows = make_rows(12, 0, "x")
    split = str(tmp_path / "val.parquet")
    write_split(split, rows)
    return tmp_path, rows, split


def test_missing_columns_are_named(small):
    tmp, rows, split = small
    bad = str(tmp / "bad.parquet")
    write_scores(bad, {"val": rows}, drop=("passed",))
    with pytest.raises(DataError, match=r"lacks columns \['passed'\]"):
        load_labels(bad, split, "val", RouterConfig())


def test_unknown_options_and_costs_fail(small):
    tmp, rows, split = small
    scores = str(tmp / "s.parquet")
    write_scores(scores, {"val": rows})
    with pytest.raises(ConfigError, match=r"unknown options \['writing'\]"):
        load_labels(scores, split, "val", RouterConfig(options=["base", "code", "math"]))
    with pytest.raises(ConfigError, match=r"unknown options \['poetry'\]"):
        load_labels(scores, split, "val", RouterConfig(costs={"base": 1.0, "poetry": 2.0}))
    with pytest.raises(ConfigError, match="base must be the cheapest"):
        load_labels(scores, split, "val", RouterConfig(costs={"base": 5.0}))


def test_empty_label_set_fails(small):
    tmp, rows, split = small
    scores = str(tmp / "s.parquet")
    write_scores(scores, {"val": rows})
    with pytest.raises(DataError, match="no rows for split 'test'"):
        load_labels(scores, split, "test", RouterConfig())
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = str(tmp / "empty.parquet")
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in ("split", "id", "option")}
                            | {"passed": pa.array([], pa.bool_())}), empty)
    with pytest.raises(DataError, match="no rows for split 'val'"):
        load_labels(empty, split, "val", RouterConfig())


def test_extra_feature_columns(small):
    tmp, rows, split = small
    scores = str(tmp / "s.parquet")
    write_scores(scores, {"val": rows}, extra={"base_confidence": 0.7})
    rc = RouterConfig(features=FeatureConfig(extra_columns=["base_confidence"]))
    ls = load_labels(scores, split, "val", rc)
    assert ls.extras.shape == (12, 1) and np.allclose(ls.extras, 0.7)
    rc = RouterConfig(features=FeatureConfig(extra_columns=["nope"]))
    with pytest.raises(DataError, match=r"lack the feature columns \['nope'\]"):
        load_labels(scores, split, "val", rc)
