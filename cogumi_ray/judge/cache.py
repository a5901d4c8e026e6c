"""Durable cache of judge replies, so a re-run (after a kill, or with a changed downstream config)
never pays for the same request twice.

Layout: a directory of SQLite files. Each process (one per Ray actor) writes only its own shard
`shard-<uuid>.sqlite` and reads every shard that existed when it opened the cache. One writer per
file means no lock contention between actors and no reliance on WAL shared memory, so the
directory may live on shared POSIX storage (NFS/EFS/Lustre) and give hits across the nodes of a
cluster; on one machine a local directory is enough. Each write is its own committed transaction,
so a killed run loses at most the reply in flight. `compact()` folds the shards into one file.

Besides replies, the cache remembers which request keys were submitted in which provider batch
(`pending`), so a run killed while a Message Batch / Batch job was processing collects that batch
on re-run instead of submitting (and paying for) the same requests again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS pending (key TEXT NOT NULL, batch_id TEXT NOT NULL, created REAL,
                                    PRIMARY KEY (key, batch_id));
CREATE TABLE IF NOT EXISTS closed (batch_id TEXT PRIMARY KEY);
"""
_BUSY_MS = 30_000  # a reader may briefly wait for a writer committing to the same shard
_CHUNK = 500  # keys per `IN (...)` query, below SQLite's parameter limit


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}?mode=rwc"
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    return conn


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class JudgeCache:
    """Reply cache in `root` (a local or shared POSIX directory)."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        self._lock = threading.Lock()  # actor threads share the connections
        self._path = os.path.join(root, f"shard-{uuid.uuid4().hex[:12]}.sqlite")
        self._writer: sqlite3.Connection | None = None  # created on first write
        self._readers: list[sqlite3.Connection] = []
        for path in sorted(glob.glob(os.path.join(root, "*.sqlite"))):
            try:
                conn = _connect(path, readonly=True)
                conn.execute("SELECT 1 FROM replies LIMIT 1")
                self._readers.append(conn)
            except sqlite3.DatabaseError as e:  # a shard created but never written, or damaged
                log.warning("judge cache: skipping unreadable shard %s (%s)", path, e)

    def _write(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = _connect(self._path, readonly=False)
            self._writer.executescript(_SCHEMA)
            self._writer.commit()
            self._readers.append(self._writer)
        return self._writer

    def _query(self, sql: str, keys: list[str]) -> list[tuple]:
        rows: list[tuple] = []
        for conn in self._readers:
            for part in _chunks(keys):
                marks = ",".join("?" * len(part))
                try:
                    rows.extend(conn.execute(sql.format(marks=marks), part).fetchall())
                except sqlite3.DatabaseError as e:
                    log.warning("judge cache: read failed (%s); treating as a miss", e)
        return rows

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        with self._lock:
            rows = self._query("SELECT key, value FROM replies WHERE key IN ({marks})", keys)
        return {k: json.loads(v) for k, v in rows}

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        if not items:
            return
        now = time.time()
        with self._lock:
            conn = self._write()
            conn.executemany(
                "INSERT OR REPLACE INTO replies (key, value, created) VALUES (?, ?, ?)",
                [(k, json.dumps(v, sort_keys=True), now) for k, v in items.items()],
            )
            conn.commit()

    def pending(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> id of a provider batch that holds it and has not been closed."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        with self._lock:
            rows = self._query(
                "SELECT key, batch_id FROM pending WHERE key IN ({marks}) ORDER BY created", keys
            )
            closed = {
                b for conn in self._readers for (b,) in conn.execute("SELECT batch_id FROM closed")
            }
        return {k: b for k, b in rows if b not in closed}  # later batches win

    def add_pending(self, batch_id: str, keys: Iterable[str]) -> None:
        now = time.time()
        with self._lock:
            conn = self._write()
            conn.executemany(
                "INSERT OR IGNORE INTO pending (key, batch_id, created) VALUES (?, ?, ?)",
                [(k, batch_id, now) for k in keys],
            )
            conn.commit()

    def close_batch(self, batch_id: str) -> None:
        """Mark a batch as collected (or dead): its keys are no longer pending anywhere."""
        with self._lock:
            conn = self._write()
            conn.execute("INSERT OR IGNORE INTO closed (batch_id) VALUES (?)", (batch_id,))
            conn.commit()

    def close(self) -> None:
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers = []
            self._writer = None


def compact(root: str) -> int:
    """Fold every shard in `root` into one new file and delete the folded shards; returns the
    number of replies kept. Run it when no actor is writing (the stage does, after judging)."""
    shards = sorted(glob.glob(os.path.join(root, "*.sqlite")))
    if len(shards) <= 1:
        return 0 if not shards else _count(shards[0])
    out = os.path.join(root, f"merged-{uuid.uuid4().hex[:12]}.sqlite.tmp")
    conn = _connect(out, readonly=False)
    conn.executescript(_SCHEMA)
    merged: list[str] = []
    for i, path in enumerate(shards):
        try:
            conn.execute(f"ATTACH DATABASE ? AS s{i}", (f"file:{path}?mode=ro",))
            for table in ("replies", "pending", "closed"):
                conn.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM s{i}.{table}")
            conn.commit()
            conn.execute(f"DETACH DATABASE s{i}")
            merged.append(path)
        except sqlite3.DatabaseError as e:
            log.warning("judge cache: not compacting unreadable shard %s (%s)", path, e)
    n = conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    conn.close()
    os.replace(out, out[: -len(".tmp")])  # the merged file is complete before it becomes visible
    for path in merged:
        for suffix in ("", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    return int(n)


def _count(path: str) -> int:
    conn = _connect(path, readonly=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
    finally:
        conn.close()
