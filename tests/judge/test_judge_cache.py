"""The durable reply cache: shards, cross-instance hits, pending batches, compaction."""

from __future__ import annotations

import glob
import os
import threading

from cogumi_ray.judge.cache import JudgeCache, compact

REC = {"text": "t", "input_tokens": 3, "output_tokens": 1, "cost_usd": 0.5}


def test_a_new_instance_sees_what_an_earlier_one_wrote(tmp_path):
    a = JudgeCache(str(tmp_path))
    assert a.get_many(["k1"]) == {}
    a.put_many({"k1": REC, "k2": dict(REC, text="u")})
    assert a.get_many(["k1", "k3"]) == {"k1": REC}  # own shard is readable at once
    a.close()
    b = JudgeCache(str(tmp_path))
    assert set(b.get_many(["k1", "k2", "k3"])) == {"k1", "k2"}
    b.put_many({"k3": REC})
    assert len(glob.glob(str(tmp_path / "*.sqlite"))) == 2  # one shard per writer


def test_many_keys_and_concurrent_writers(tmp_path):
    keys = [f"k{i}" for i in range(600)]  # more than one IN (...) chunk
    caches = [JudgeCache(str(tmp_path)) for _ in range(3)]

    def write(c: JudgeCache, part: list[str]) -> None:
        for k in part:
            c.put_many({k: REC})

    threads = [threading.Thread(target=write, args=(c, keys[i::3])) for i, c in enumerate(caches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = JudgeCache(str(tmp_path))
    assert len(reader.get_many(keys)) == 600


def test_pending_batches_until_closed(tmp_path):
    a = JudgeCache(str(tmp_path))
    a.add_pending("b1", ["k1", "k2"])
    a.add_pending("b2", ["k2"])
    b = JudgeCache(str(tmp_path))
    assert b.pending(["k1", "k2", "k3"]) == {"k1": "b1", "k2": "b2"}
    b.close_batch("b2")
    assert JudgeCache(str(tmp_path)).pending(["k2"]) == {"k2": "b1"}


def test_compact_folds_shards_and_keeps_everything(tmp_path):
    for i in range(4):
        c = JudgeCache(str(tmp_path))
        c.put_many({f"k{i}": REC})
        c.add_pending(f"b{i}", [f"k{i}"])
        c.close()
    assert compact(str(tmp_path)) == 4
    files = glob.glob(str(tmp_path / "*.sqlite"))
    assert len(files) == 1 and os.path.basename(files[0]).startswith("merged-")
    c = JudgeCache(str(tmp_path))
    assert len(c.get_many([f"k{i}" for i in range(4)])) == 4
    assert c.pending(["k0"]) == {"k0": "b0"}


def test_damaged_shard_is_skipped_not_fatal(tmp_path):
    JudgeCache(str(tmp_path)).put_many({"k": REC})
    (tmp_path / "shard-garbage.sqlite").write_bytes(b"this is not sqlite" * 100)
    c = JudgeCache(str(tmp_path))
    assert c.get_many(["k"]) == {"k": REC}
    assert compact(str(tmp_path)) == 1  # the damaged file is left alone
