"""Session memory in SQLite: the last N turns of each conversation with the routing decision,
whether the user's message escalated, and feedback; what the router reads as session features
and what a replica reads to pre-load the modifier a session will likely need next.

Several processes (Serve replicas) write one file at once: WAL lets readers run beside the one
writer, every write is a short `BEGIN IMMEDIATE` transaction (the write lock is taken up front,
so two writers never deadlock upgrading a read lock), and SQLITE_BUSY past SQLite's own
busy_timeout is retried with jittered exponential backoff. The schema is versioned: opening a
file applies the missing migrations inside one write transaction, so concurrent openers
migrate it exactly once.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    from cogumi_ray.route.config import MemoryConfig
    from cogumi_ray.route.features import SessionState

T = TypeVar("T")

# MIGRATIONS[i] takes the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: sessions and their turns
        "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL)",
        "CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, "
        "turn INTEGER NOT NULL, ts REAL NOT NULL, option TEXT NOT NULL, confidence REAL, "
        "escalated INTEGER NOT NULL DEFAULT 0, query TEXT NOT NULL DEFAULT '', "
        "UNIQUE (session_id, turn))",
    ),
    (  # 2: user feedback per turn, and an index for expiry
        "ALTER TABLE turns ADD COLUMN feedback INTEGER",
        "CREATE INDEX sessions_updated ON sessions (updated_at)",
    ),
    (  # 3: the request id that answered each turn, and /v1/feedback ratings joined through it
        "ALTER TABLE turns ADD COLUMN request_id TEXT",
        "CREATE INDEX turns_request ON turns (request_id)",
        # session_id/turn: the turn the rating judges (NULL = no turn had its request id);
        # client_session: the conversation id the client gave, kept as given
        "CREATE TABLE feedback (id TEXT PRIMARY KEY, received_at REAL NOT NULL, request_id TEXT, "
        "client_session TEXT, session_id TEXT, turn INTEGER, rating INTEGER NOT NULL, comment TEXT)",
        "CREATE INDEX feedback_received ON feedback (received_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Turn:
    turn: int
    ts: float
    option: str
    confidence: float | None
    escalated: bool
    query: str
    feedback: int | None  # +1 / -1 from the client, None = none given
    request_id: str | None = None  # the answer's request id (x-request-id), when known


def _busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class SessionStore:
    def __init__(self, path: str, cfg: MemoryConfig | None = None, *, version: int = SCHEMA_VERSION) -> None:
        """Open (creating or migrating) the store at `path`. `version` < SCHEMA_VERSION stops the
        migration there (tests build old files with it: the schema only, this class's writes
        expect the current one)."""
        from cogumi_ray.route.config import MemoryConfig

        self.cfg = cfg or MemoryConfig()
        self.path = path
        self._lock = threading.Lock()  # one connection, shared by a replica's threads
        # A fresh run has no serve/ folder yet; sqlite would only say "unable to open".
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
        self._db = sqlite3.connect(path, timeout=self.cfg.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._retry(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        self._write(lambda db: self._migrate(db, version))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(self.cfg.retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _busy(e) or attempt == self.cfg.retries:
                    if _busy(e):
                        raise DataError(f"session store {self.path!r} stayed locked after "
                                        f"{self.cfg.retries} retries; raise route.memory.retries "
                                        "or busy_timeout_s") from None
                    raise
                time.sleep(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def attempt() -> T:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                    self._db.execute("COMMIT")
                    return out
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise

        return self._retry(attempt)

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def attempt() -> list[tuple[Any, ...]]:
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return self._retry(attempt)

    # -- schema ------------------------------------------------------------------------------

    @staticmethod
    def _migrate(db: sqlite3.Connection, target: int) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > SCHEMA_VERSION:
            raise DataError(f"session store schema version {current} is newer than this code's "
                            f"{SCHEMA_VERSION}; upgrade cogumi-ray or point route.memory.path elsewhere")
        for statements in MIGRATIONS[current:target]:
            for sql in statements:
                db.execute(sql)
        if row is None:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (max(current, target),))
        elif target > current:
            db.execute("UPDATE schema_version SET version = ?", (target,))

    def schema_version(self) -> int:
        return int(self._read("SELECT version FROM schema_version", ())[0][0])

    # -- writes ------------------------------------------------------------------------------

    def record(self, session_id: str, option: str, confidence: float | None, escalated: bool,
               query: str = "", now: float | None = None, request_id: str | None = None) -> int:
        """Append a turn (numbered 1, 2, ... per session, atomically); keep the last max_turns.
        `request_id` lets a later rating of the answer find this turn."""
        ts = time.time() if now is None else now

        def write(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO sessions (session_id, created_at, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (session_id) DO UPDATE SET updated_at = excluded.updated_at",
                       (session_id, ts, ts))
            turn = db.execute("SELECT COALESCE(MAX(turn), 0) + 1 FROM turns WHERE session_id = ?",
                              (session_id,)).fetchone()[0]
            db.execute("INSERT INTO turns (session_id, turn, ts, option, confidence, escalated, query, "
                       "request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (session_id, turn, ts, option, confidence, int(escalated), query[:2000],
                        request_id))
            db.execute("DELETE FROM turns WHERE session_id = ? AND turn <= ?",
                       (session_id, turn - self.cfg.max_turns))
            return int(turn)

        return self._write(write)

    def revise_last(self, session_id: str, option: str, confidence: float | None) -> None:
        """Change the latest turn's decision (a progressive switch re-decides the same turn)."""
        self._write(lambda db: db.execute(
            "UPDATE turns SET option = ?, confidence = ? WHERE id = (SELECT id FROM turns WHERE "
            "session_id = ? ORDER BY turn DESC LIMIT 1)", (option, confidence, session_id)))

    def forget(self, request_id: str) -> int:
        """Delete the turns recorded for `request_id`: the request failed after it was routed
        (e.g. its model replica died), so the conversation never got that answer and the
        client's retry records the turn again. Returns how many turns."""
        return self._write(lambda db: db.execute(
            "DELETE FROM turns WHERE request_id = ?", (request_id,)).rowcount)

    def feedback(self, session_id: str, turn: int, value: int) -> None:
        if value not in (-1, 1):
            raise DataError(f"feedback must be +1 or -1, got {value!r}")
        self._write(lambda db: db.execute(
            "UPDATE turns SET feedback = ? WHERE session_id = ? AND turn = ?", (value, session_id, turn)))

    def rate(self, feedback_id: str, value: int, *, request_id: str | None = None,
             client_session: str | None = None, comment: str | None = None,
             now: float | None = None) -> tuple[str, int] | None:
        """Store one rating (a /v1/feedback record). When a kept turn was answered by `request_id`
        the rating is joined to it: the row names that turn and the turn's feedback is set, so
        `likely_option` hears it. Returns the (session, turn) joined, or None (still stored)."""
        if value not in (-1, 1):
            raise DataError(f"feedback must be +1 or -1, got {value!r}")
        ts = time.time() if now is None else now

        def write(db: sqlite3.Connection) -> tuple[str, int] | None:
            row = None
            if request_id is not None:
                row = db.execute("SELECT session_id, turn FROM turns WHERE request_id = ? "
                                 "ORDER BY id DESC LIMIT 1", (request_id,)).fetchone()
                # A list of completion prompts is several turns under one request id.
                db.execute("UPDATE turns SET feedback = ? WHERE request_id = ?", (value, request_id))
            db.execute("INSERT INTO feedback (id, received_at, request_id, client_session, session_id, "
                       "turn, rating, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (feedback_id, ts, request_id, client_session, row[0] if row else None,
                        row[1] if row else None, value, comment))
            return (str(row[0]), int(row[1])) if row else None

        return self._write(write)

    def expire(self, now: float | None = None) -> int:
        """Delete sessions idle longer than ttl_s (their turns and ratings too, and ratings joined
        to no turn once as old); return how many sessions."""
        cutoff = (time.time() if now is None else now) - self.cfg.ttl_s

        def write(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM feedback WHERE session_id IN (SELECT session_id FROM sessions "
                       "WHERE updated_at < ?) OR (session_id IS NULL AND received_at < ?)",
                       (cutoff, cutoff))
            db.execute("DELETE FROM turns WHERE session_id IN "
                       "(SELECT session_id FROM sessions WHERE updated_at < ?)", (cutoff,))
            return db.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,)).rowcount

        return self._write(write)

    # -- reads -------------------------------------------------------------------------------

    def turns(self, session_id: str, n: int | None = None) -> list[Turn]:
        """The session's kept turns, oldest first (the last `n` only, if given)."""
        rows = self._read("SELECT turn, ts, option, confidence, escalated, query, feedback, request_id "
                          "FROM turns WHERE session_id = ? ORDER BY turn DESC LIMIT ?",
                          (session_id, n if n is not None else -1))
        return [Turn(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7]) for r in reversed(rows)]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM turns", ())[0][0])

    def ratings(self) -> list[dict[str, Any]]:
        """Every stored rating, oldest first (operators' export, tests)."""
        cols = ("id", "received_at", "request_id", "client_session", "session_id", "turn", "rating",
                "comment")
        rows = self._read(f"SELECT {', '.join(cols)} FROM feedback ORDER BY received_at, id", ())
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def state(self, session_id: str) -> SessionState:
        from cogumi_ray.route.features import SessionState

        last = self.turns(session_id, 1)
        if not last:
            return SessionState()
        return SessionState(last[0].option, last[0].escalated, last[0].turn)

    def likely_option(self, session_id: str, decay: float = 0.5) -> str | None:
        """The option the session's next turn most likely needs (recency-weighted vote; a turn the
        user disliked votes against its option), for pre-loading its adapter; None = no history."""
        scores: dict[str, float] = {}
        turns = self.turns(session_id)
        for age, t in enumerate(reversed(turns)):
            scores[t.option] = scores.get(t.option, 0.0) + decay**age * (-1 if t.feedback == -1 else 1)
        best = max(scores.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] > 0 else None
