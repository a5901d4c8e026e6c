"""Session memory: concurrent writers, schema migration, expiry, pruning, likely option, ratings."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest
from routekit import write_turns

from cogumi_ray.errors import DataError
from cogumi_ray.route.config import MemoryConfig
from cogumi_ray.route.memory import SCHEMA_VERSION, SessionStore


def run_writers(target, path: str, workers: int, rows: int) -> None:
    """`workers` processes running target(path, worker, rows) at once on one created store."""
    SessionStore(path).close()  # created once; the writers race on rows, not on the schema
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited SQLite handles or threads
    procs = [ctx.Process(target=target, args=(path, w, rows)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "sessions.db")
    workers, rows = 4, 200
    run_writers(write_turns, path, workers, rows)
    with SessionStore(path, MemoryConfig(max_turns=100_000)) as store:
        assert store.count() == 2 * workers * rows
        shared = store.turns("shared")
        assert [t.turn for t in shared] == list(range(1, workers * rows + 1))  # no turn lost or doubled
        assert len({t.query for t in shared}) == workers * rows
        for w in range(workers):
            assert len(store.turns(f"own-{w}")) == rows
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _old_store(path: str, version: int, turns: list[tuple]) -> None:
    """A file as an older release left it: its schema, rows written in its own columns."""
    with SessionStore(path, version=version) as old:
        assert old.schema_version() == version
        cols = [r[1] for r in old._db.execute("PRAGMA table_info(turns)")]
        assert "request_id" not in cols
    db = sqlite3.connect(path)
    with db:
        for sid, turn, ts, option, *rest in turns:
            db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?)", (sid, ts, ts))
            names = ["session_id", "turn", "ts", "option", "confidence", "escalated", "query",
                     "feedback"][: 4 + len(rest)]
            db.execute(f"INSERT INTO turns ({', '.join(names)}) VALUES "
                       f"({', '.join('?' * len(names))})", (sid, turn, ts, option, *rest))
    db.close()


def test_migration_from_version_1_keeps_rows(tmp_path):
    path = str(tmp_path / "old.db")
    _old_store(path, 1, [("s", 1, 10.0, "code", 0.8, 0, "hi")])
    with SessionStore(path) as new:
        assert new.schema_version() == SCHEMA_VERSION == 3
        (turn,) = new.turns("s")
        assert (turn.option, turn.query, turn.feedback, turn.request_id) == ("code", "hi", None, None)
        new.feedback("s", 1, -1)
        assert new.turns("s")[0].feedback == -1
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(DataError, match="schema version 99 is newer"):
        SessionStore(path)


def test_migration_from_version_2_keeps_rows_and_takes_ratings(tmp_path):
    path = str(tmp_path / "v2.db")
    _old_store(path, 2, [("s", 1, 10.0, "code", 0.8, 0, "q1", 1),
                         ("s", 2, 11.0, "base", 0.6, 1, "q2", None)])
    with SessionStore(path) as new:
        assert new.schema_version() == 3
        old = new.turns("s")
        assert [(t.turn, t.option, t.escalated, t.feedback, t.request_id) for t in old] == [
            (1, "code", False, 1, None), (2, "base", True, None, None)]
        assert new.likely_option("s") == "base"
        # old turns have no request id: a rating naming one is stored, joined to nothing
        assert new.rate("fb-1", -1, request_id="r-old", now=12.0) is None
        assert new.record("s", "math", 0.9, False, "q3", now=13.0, request_id="r3") == 3
        assert new.rate("fb-2", 1, request_id="r3", now=14.0) == ("s", 3)
        assert [(r["id"], r["session_id"], r["turn"]) for r in new.ratings()] == [
            ("fb-1", None, None), ("fb-2", "s", 3)]
    with SessionStore(path) as again:  # reopening migrates nothing twice
        assert again.schema_version() == 3 and len(again.turns("s")) == 3


def test_a_rating_is_joined_to_the_turn_its_request_answered(tmp_path):
    with SessionStore(str(tmp_path / "s.db"), MemoryConfig(ttl_s=100)) as store:
        store.record("a", "code", 0.7, False, "q1", now=1000.0, request_id="r1")
        store.record("a", "base", 0.6, False, "q2", now=1001.0, request_id="r2")
        assert store.likely_option("a") == "base"
        # the user disliked the base answer: the rating finds turn 2 through its request id
        assert store.rate("fb-a", -1, request_id="r2", client_session="conv-9", comment="meh",
                          now=1002.0) == ("a", 2)
        assert [t.feedback for t in store.turns("a")] == [None, -1]
        assert store.likely_option("a") == "code"  # the disliked option votes against itself
        # a request id memory never saw (another app, an expired turn): kept with its session
        assert store.rate("fb-b", 1, request_id="nobody", client_session="conv-9", now=1003.0) is None
        assert store.rate("fb-c", 1, client_session="conv-7", now=1004.0) is None
        rows = {r["id"]: r for r in store.ratings()}
        assert rows["fb-a"] == {"id": "fb-a", "received_at": 1002.0, "request_id": "r2",
                                "client_session": "conv-9", "session_id": "a", "turn": 2,
                                "rating": -1, "comment": "meh"}
        assert (rows["fb-b"]["session_id"], rows["fb-b"]["client_session"]) == (None, "conv-9")
        assert rows["fb-c"]["request_id"] is None and rows["fb-c"]["rating"] == 1
        with pytest.raises(DataError, match="feedback must be"):
            store.rate("fb-d", 0, request_id="r1")
        # expiry takes a session's ratings with it, and unjoined ratings once as old
        store.record("b", "base", None, False, now=1090.0)
        assert store.expire(now=1103.5) == 1
        assert [r["id"] for r in store.ratings()] == ["fb-c"]


def rate_turns(path: str, worker: int, rows: int) -> None:
    """One process of the concurrent-ratings test: turns with request ids, each rated, plus a
    rating for a request memory never saw."""
    with SessionStore(path, MemoryConfig(max_turns=100_000, retries=20)) as store:
        for i in range(rows):
            rid = f"w{worker}-r{i}"
            store.record("shared", "code", 0.5, False, f"q{i}", request_id=rid)
            assert store.rate(f"fb-{rid}", 1 if i % 2 else -1, request_id=rid) is not None
            store.rate(f"fb-{rid}-x", 1, request_id=f"gone-{rid}", client_session=f"c{worker}")


def test_concurrent_raters_lose_no_ratings(tmp_path):
    path = str(tmp_path / "sessions.db")
    workers, rows = 3, 80
    run_writers(rate_turns, path, workers, rows)
    with SessionStore(path, MemoryConfig(max_turns=100_000)) as store:
        ratings = store.ratings()
        assert len(ratings) == len({r["id"] for r in ratings}) == 2 * workers * rows
        joined = [r for r in ratings if r["session_id"] is not None]
        assert len(joined) == workers * rows and all(r["session_id"] == "shared" for r in joined)
        turns = {t.request_id: t for t in store.turns("shared")}
        assert len(turns) == workers * rows
        for r in joined:  # each rating names the turn its request answered, which carries it
            assert turns[r["request_id"]].turn == r["turn"]
            assert turns[r["request_id"]].feedback == r["rating"]


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
