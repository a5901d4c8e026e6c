"""Session memory: concurrent writers, schema migration, expiry, pruning, likely option."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest
from routekit import write_turns

from cogumi_ray.errors import DataError
from cogumi_ray.route.config import MemoryConfig
from cogumi_ray.route.memory import SCHEMA_VERSION, SessionStore


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "sessions.db")
    SessionStore(path).close()  # created once; the writers race on rows, not on the schema
    workers, rows = 4, 200
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited SQLite handles or threads
    procs = [ctx.Process(target=write_turns, args=(path, w, rows)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    with SessionStore(path, MemoryConfig(max_turns=100_000)) as store:
        assert store.count() == 2 * workers * rows
        shared = store.turns("shared")
        assert [t.turn for t in shared] == list(range(1, workers * rows + 1))  # no turn lost or doubled
        assert len({t.query for t in shared}) == workers * rows
        for w in range(workers):
            assert len(store.turns(f"own-{w}")) == rows
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_from_version_1_keeps_rows(tmp_path):
    path = str(tmp_path / "old.db")
    with SessionStore(path, version=1) as old:
        assert old.schema_version() == 1
        old.record("s", "code", 0.8, False, "hi")
        cols = [r[1] for r in old._db.execute("PRAGMA table_info(turns)")]
        assert "feedback" not in cols
    with SessionStore(path) as new:
        assert new.schema_version() == SCHEMA_VERSION == 2
        (turn,) = new.turns("s")
        assert (turn.option, turn.query, turn.feedback) == ("code", "hi", None)
        new.feedback("s", 1, -1)
        assert new.turns("s")[0].feedback == -1
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(DataError, match="schema version 99 is newer"):
        SessionStore(path)


def test_pruning_expiry_and_likely_option(tmp_path):
    cfg = MemoryConfig(max_turns=3, ttl_s=100)
    with SessionStore(str(tmp_path / "s.db"), cfg) as store:
        for i, opt in enumerate(["base", "code", "code", "math", "code"]):
            store.record("a", opt, 0.5, i == 3, f"q{i}", now=1000.0 + i)
        kept = store.turns("a")
        assert [t.turn for t in kept] == [3, 4, 5] and [t.option for t in kept] == ["code", "math", "code"]
        st = store.state("a")
        assert (st.last_option, st.escalated, st.turns) == ("code", False, 5)
        assert store.likely_option("a") == "code"
        store.feedback("a", 5, -1)  # the user disliked the last code answer
        assert store.likely_option("a") == "math"
        assert store.likely_option("nobody") is None
        store.revise_last("a", "writing", 0.9)
        assert store.turns("a", 1)[0].option == "writing"
        store.record("b", "base", None, False, now=1100.0)
        assert store.expire(now=1150.0) == 1  # "a" idle 146 s > ttl 100 s; "b" 50 s
        assert store.turns("a") == [] and len(store.turns("b")) == 1
        with pytest.raises(DataError, match="feedback must be"):
            store.feedback("b", 1, 3)


def test_a_fresh_run_gets_its_serve_folder(tmp_path):
    # `cogumi serve` on a new run points the store at <run>/serve/sessions.sqlite before any
    # file of serve/ exists; opening it must not fail with sqlite's "unable to open".
    path = tmp_path / "run" / "serve" / "sessions.sqlite"
    store = SessionStore(str(path))
    store.record("s1", "base", None, False, "hi")
    assert path.exists() and store.state("s1").turns == 1
