"""Dedup benchmark: cogumi (Ray Data) vs datasketch and rensa on the same generated corpus.

    .venv/bin/python benchmarks/dedup.py                       # 20K rows, all engines
    .venv/bin/python benchmarks/dedup.py --rows 640000 --baseline-rows 10000 --out scale.json

Each engine runs --repeats times (default 3), interleaved with the others in a rotating order,
and is reported as the median rate with its min/max; the ratio to datasketch is the median of
the per-round ratios, so load from other processes on a shared machine cancels out.

Corpus: seeded instruction/response rows of realistic length (~3.5 KB, ~850 tokens: Zipf-
distributed English-like prose, code blocks, arithmetic), written as Parquet. A share of rows
are planted copies of another row of the same 5,000-row block: verbatim, case/whitespace
variants, or with 0.5%..25% of their words edited (Jaccard ~0.99 down to ~0.5).

Throughput: cogumi runs `dedup` on Ray Data with --num-cpus CPUs, from reading Parquet to the
filtered dataset (exact + near dups, candidates verified with exact Jaccard). datasketch and
rensa run the usual single-process way on the texts in memory: per doc a set of character
3-grams, a 128-permutation MinHash, insert into the LSH index, then query every doc (no
verification). With --baseline-rows smaller than --rows they run on the first rows only and
their time is extrapolated linearly (reported as such).

Quality: on the first --sample rows, exact all-pairs Jaccard (prefix filtering, then exact
verification: every pair at J >= threshold is found) is the truth. A pair counts as found by
cogumi when both rows end up in the same duplicate cluster; by datasketch/rensa when the LSH
query returns it. cogumi's sample result comes from the single-process reference, which the
tests show equal to the Ray path; the Ray path's drops on the sample are checked against it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cogumi_ray.config import RayConfig  # noqa: E402
from cogumi_ray.data.config import DedupConfig  # noqa: E402
from cogumi_ray.data.lsh import UnionFind, dedup_local  # noqa: E402
from cogumi_ray.data.minhash import normalize, shingle_sets  # noqa: E402
from cogumi_ray.ray_session import init_ray  # noqa: E402

BLOCK = 5000  # rows per generated block (and Parquet file); planted copies stay inside a block

# --- corpus -------------------------------------------------------------------------------------

_FUNCTION_TEXT = (
    "the of and to a in is that for it as with was on be by this are or from at an which not "
    "have but can we you all if will one their more has its there when each so these than may "
    "use how other into some then them only two what also such first any new do used like over "
    "most after where because both between while should would could must three every same "
    "make does given result value number step example next finally here note"
)
FUNCTION_WORDS = _FUNCTION_TEXT.split()
# Letters drawn at the square root of their English frequency (percent): tuned so that the
# character 3-gram Jaccard of two unrelated rows averages ~0.19, as measured on 3.5 KB chunks of
# English prose (package READMEs); it sets how many unrelated pairs share an LSH bucket.
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = tuple(f**0.5 for f in (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0,
                                        2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8,
                                        0.15, 0.15, 0.1, 0.07))
OPENERS = ("Explain", "Describe", "Write", "How do", "Why does", "Given", "Show", "Compare",
           "Summarise", "Implement", "What is", "Prove")
CODE_LINES = ("    {a} = {b}({c}, {n})", "    if {a} > {n}:", "        return {a} + {b}",
              "    for {a} in range({n}):", "        {b}.append({c} * {n})",
              "    {a}[{n}] = {b}.get('{c}', {n})", "    {a} += {b} - {n}")


def _pseudo_word(rng: random.Random) -> str:
    """A 2-12 letter pseudo-word."""
    n = rng.choices(range(2, 13), weights=(3, 8, 10, 11, 11, 10, 8, 6, 4, 3, 2))[0]
    return "".join(rng.choices(LETTERS, LETTER_WEIGHTS, k=n))


class Corpus:
    """Seeded generator of instruction/response rows with planted duplicates.

    Words follow Zipf's law over one vocabulary (function words at the top ranks, 40K
    pseudo-words below), and each row has a dozen topic words it repeats, as real documents do.
    """

    def __init__(self, seed: int, dup_rate: float) -> None:
        self.seed, self.dup_rate = seed, dup_rate
        rng = random.Random(seed)
        words: set[str] = set(FUNCTION_WORDS)
        content: list[str] = []
        while len(content) < 40_000:
            w = _pseudo_word(rng)
            if w not in words:
                words.add(w)
                content.append(w)
        self.vocab = np.array(FUNCTION_WORDS + content, dtype=object)
        self.n_function = len(FUNCTION_WORDS)
        self.cum = np.cumsum(1.0 / np.arange(1, self.vocab.size + 1))
        self.cum /= self.cum[-1]

    def _words(self, g: np.random.Generator, n: int, topic: np.ndarray) -> list[str]:
        idx = np.searchsorted(self.cum, g.random(n), side="right")
        bursty = g.random(n) < 0.12
        idx[bursty] = topic[g.integers(0, topic.size, int(bursty.sum()))]
        return self.vocab[idx].tolist()

    def _prose(self, g: np.random.Generator, words: list[str]) -> str:
        """Sentences of 8-26 words: capitalised, some commas, mostly full stops."""
        lens = g.integers(8, 27, size=len(words) // 8 + 1)
        ends = np.cumsum(lens)
        ends = ends[ends < len(words)].tolist() + [len(words)]
        comma = (g.random(len(ends)) < 0.4).tolist()
        stop = np.where(g.random(len(ends)) < 0.9, ".", "?").tolist()
        out, start = [], 0
        for k, end in enumerate(ends):
            sent = words[start:end]
            if comma[k] and len(sent) > 6:
                sent[len(sent) // 2] += ","
            out.append(" ".join(sent).capitalize() + stop[k])
            start = end
        return " ".join(out)

    def _code(self, g: np.random.Generator, r: random.Random, topic: np.ndarray) -> str:
        names = self._words(g, 12, topic)
        lines = [f"def {names[0]}_{names[1]}({names[2]}, {names[3]}):"]
        for _ in range(r.randint(6, 18)):
            a, b, c = r.choice(names), r.choice(names), r.choice(names)
            lines.append(r.choice(CODE_LINES).format(a=a, b=b, c=c, n=r.randint(0, 99)))
        lines.append(f"    return {names[2]}")
        return "```python\n" + "\n".join(lines) + "\n```"

    def _row(self, g: np.random.Generator, r: random.Random) -> tuple[str, str]:
        topic = g.integers(self.n_function, self.vocab.size, 12)
        sizes = [r.randint(25, 80)] + [r.randint(80, 150) for _ in range(r.randint(3, 6))]
        words = self._words(g, sum(sizes), topic)  # one draw for the whole row
        cuts = np.cumsum([0] + sizes).tolist()
        pieces = [self._prose(g, words[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
        q, parts = f"{r.choice(OPENERS)} {pieces[0]}", pieces[1:]
        if r.random() < 0.35:
            parts.insert(r.randint(1, len(parts)), self._code(g, r, topic))
        if r.random() < 0.3:
            a, b = r.randint(10, 9999), r.randint(10, 9999)
            parts.append(f"So {a} + {b} = {a + b} and {a} * {b} = {a * b}.")
        return q, "\n\n".join(parts)

    def _copy(self, g: np.random.Generator, r: random.Random, text: str) -> str:
        """A planted duplicate: verbatim, cosmetic (case/whitespace), or with edited words."""
        level = r.choice(["verbatim", "cosmetic", 0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25])
        if level == "verbatim":
            return text
        if level == "cosmetic":
            return "  " + text.upper().replace(" ", "  ") + "\n"
        words = text.split(" ")
        fresh = self._words(g, len(words), np.arange(self.n_function, self.vocab.size))
        for i in r.sample(range(len(words)), max(1, int(float(level) * len(words)))):
            op = r.random()  # substitute, insert after, or delete
            words[i] = fresh[i] if op < 0.6 else (words[i] + " " + fresh[i] if op < 0.8 else "")
        return " ".join(w for w in words if w)

    def block(self, b: int) -> list[dict[str, Any]]:
        """Rows b*BLOCK .. (b+1)*BLOCK-1, independent of other blocks."""
        g, r = np.random.default_rng([self.seed, b]), random.Random(self.seed * 1_000_003 + b)
        rows: list[dict[str, Any]] = []
        for i in range(BLOCK):
            if rows and r.random() < self.dup_rate:
                src = r.choice(rows)
                ins, res = src["instruction"], self._copy(g, r, src["response"])
            else:
                ins, res = self._row(g, r)
            rows.append({
                "id": f"r{b * BLOCK + i:08d}", "instruction": ins, "response": res,
                "domain": "general", "difficulty": "medium", "source": "bench",
                "metadata": "{}", "quality": r.random(),
            })
        return rows


_CORPUS: dict[tuple[int, float], Corpus] = {}


def _write_block(job: tuple[int, float, int, int, str]) -> int:
    """Generate block b (its first `n` rows) into one Parquet file; returns its characters."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seed, dup_rate, b, n, out_dir = job
    corpus = _CORPUS.setdefault((seed, dup_rate), Corpus(seed, dup_rate))
    block = corpus.block(b)[:n]
    pq.write_table(pa.Table.from_pylist(block), f"{out_dir}/part-{b:05d}.parquet",
                   compression="zstd")
    return sum(len(r["instruction"]) + len(r["response"]) + 1 for r in block)


def write_corpus(seed: int, dup_rate: float, rows: int, out_dir: Path, procs: int) -> dict:
    import multiprocessing as mp

    from tqdm import tqdm

    # A finished corpus leaves its description behind: the same arguments reuse it.
    done = out_dir.with_name(out_dir.name + ".json")
    params = {"seed": seed, "dup_rate": dup_rate, "rows": rows, "block": BLOCK}
    if done.exists() and out_dir.is_dir():
        info = json.loads(done.read_text())
        if info.get("params") == params:
            return {**info["stats"], "reused": True}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    n_blocks = math.ceil(rows / BLOCK)
    jobs = [(seed, dup_rate, b, min(BLOCK, rows - b * BLOCK), str(out_dir)) for b in range(n_blocks)]
    with mp.get_context("fork").Pool(procs) as pool:
        chars = sum(tqdm(pool.imap_unordered(_write_block, jobs), total=n_blocks, desc="corpus"))
    stats = {"rows": rows, "avg_chars": chars / rows, "files": n_blocks}
    done.write_text(json.dumps({"params": params, "stats": stats}))
    return stats


def load_texts(corpus: Corpus, rows: int) -> tuple[list[str], list[str], list[dict]]:
    out: list[dict] = []
    for b in range(math.ceil(rows / BLOCK)):
        out += corpus.block(b)[: rows - b * BLOCK]
    return [r["id"] for r in out], [f"{r['instruction']}\n{r['response']}" for r in out], out


# --- engines ------------------------------------------------------------------------------------


def char_shingles(text: str, n: int = 3) -> set[str]:
    t = normalize(text)
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def run_datasketch(ids: list[str], texts: list[str], cfg: DedupConfig) -> tuple[float, set]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    sketches = []
    for key, text in zip(ids, texts, strict=True):
        m = MinHash(num_perm=cfg.num_perm)
        m.update_batch([s.encode("utf-8") for s in char_shingles(text, cfg.ngram)])
        lsh.insert(key, m)
        sketches.append(m)
    pairs = {tuple(sorted((k, o))) for k, m in zip(ids, sketches, strict=True)
             for o in lsh.query(m) if o != k}
    return time.perf_counter() - t0, pairs


def run_rensa(ids: list[str], texts: list[str], cfg: DedupConfig) -> tuple[float, set]:
    from rensa import RMinHash, RMinHashLSH

    t0 = time.perf_counter()
    lsh = RMinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, num_bands=cfg.bands)
    sketches = []
    for k, text in enumerate(texts):
        m = RMinHash(num_perm=cfg.num_perm, seed=42)
        m.update(list(char_shingles(text, cfg.ngram)))
        lsh.insert(k, m)
        sketches.append(m)
    pairs = {tuple(sorted((ids[k], ids[o]))) for k, m in enumerate(sketches)
             for o in lsh.query(m) if o != k}
    return time.perf_counter() - t0, pairs


def run_cogumi_local(rows: list[dict], cfg: DedupConfig) -> float:
    """The same algorithm in one process (no Ray): the per-core cost next to datasketch's."""
    t0 = time.perf_counter()
    dedup_local(rows, cfg)
    return time.perf_counter() - t0


def run_cogumi(corpus_dir: Path, cfg: DedupConfig) -> dict[str, Any]:
    import ray

    from cogumi_ray.data.dedup import dedup

    t0 = time.perf_counter()
    ds = ray.data.read_parquet(str(corpus_dir))
    out, stats = dedup(ds, cfg)
    t_dedup = time.perf_counter() - t0
    rows_out = out.count()  # executes the final filter (a third streaming pass over the files)
    seconds = time.perf_counter() - t0
    assert rows_out == stats.rows_out, (rows_out, stats.rows_out)
    return {
        "seconds": seconds, "dedup_seconds": t_dedup, "rows_per_s": stats.rows_in / seconds,
        "stats": {k: v for k, v in stats.__dict__.items() if k != "cluster_examples"},
        "cluster_examples": stats.cluster_examples[:2],
    }


# --- quality ------------------------------------------------------------------------------------


def true_pairs(ids: list[str], texts: list[str], cfg: DedupConfig) -> dict[tuple[str, str], float]:
    """Every pair with exact Jaccard >= threshold: all-pairs intersection sizes as a sparse
    product X @ X.T of the binary row x shingle matrix (no candidate filter, nothing missed)."""
    from scipy import sparse

    sets = shingle_sets(texts, cfg)  # sorted, distinct
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    _, cols = np.unique(np.concatenate(sets), return_inverse=True)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    x = sparse.csr_matrix((np.ones(len(cols), dtype=np.int32), cols, indptr),
                          shape=(len(sets), int(cols.max()) + 1 if len(cols) else 0))
    inter = sparse.triu(x @ x.T, k=1).tocoo()
    a, b, n = inter.row, inter.col, inter.data.astype(np.int64)
    j = n / (sizes[a] + sizes[b] - n)
    keep = j >= cfg.threshold
    return {tuple(sorted((ids[i], ids[k]))): float(v)
            for i, k, v in zip(a[keep].tolist(), b[keep].tolist(), j[keep].tolist(), strict=True)}


def score(found: set, truth: dict, same_cluster: set | None = None) -> dict[str, Any]:
    hit = len(found & truth.keys())
    res = {
        "found_pairs": len(found),
        "recall": hit / len(truth) if truth else 1.0,
        "precision": hit / len(found) if found else 1.0,
    }
    if same_cluster is not None:  # pairs both in one cluster (incl. via a chain of pairs)
        res["recall"] = len(same_cluster & truth.keys()) / len(truth) if truth else 1.0
        res["cluster_pair_precision"] = (
            len(same_cluster & truth.keys()) / len(same_cluster) if same_cluster else 1.0
        )
    return res


def cogumi_sample(rows: list[dict], cfg: DedupConfig) -> tuple[set, set, set]:
    """(verified edges incl. exact-group pairs, pairs sharing a cluster, dropped ids)."""
    kept, _, verified = dedup_local(rows, cfg)
    kept_ids = {r["id"] for r in kept}
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(normalize(f"{r['instruction']}\n{r['response']}"), []).append(r["id"])
    uf = UnionFind()
    edges = set(verified)
    for members in groups.values():
        for m in members[1:]:
            uf.union(members[0], m)
            edges |= {tuple(sorted((a, m))) for a in members if a != m}
    for a, b in verified:
        uf.union(a, b)
    clusters = [g for g in uf.groups() if len(g) > 1]
    same = {(a, b) for g in clusters for i, a in enumerate(g) for b in g[i + 1 :]}
    return edges, same, {r["id"] for r in rows} - kept_ids


def ray_sample_drops(rows: list[dict], cfg: DedupConfig) -> set[str]:
    import pyarrow as pa
    import ray

    from cogumi_ray.data.dedup import dedup

    out, _ = dedup(ray.data.from_arrow(pa.Table.from_pylist(rows)), cfg)
    return {r["id"] for r in rows} - {r["id"] for r in out.select_columns(["id"]).take_all()}


# --- main ---------------------------------------------------------------------------------------


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _spread(rates: list[float]) -> dict[str, Any]:
    return {"rows_per_s": float(np.median(rates)), "rows_per_s_min": min(rates),
            "rows_per_s_max": max(rates), "spread": max(rates) / min(rates) - 1 if rates else 0.0,
            "runs": [round(r, 1) for r in rates]}


def run_engines(args: argparse.Namespace, engines: list[str], corpus: Corpus, corpus_dir: Path,
                cfg: DedupConfig) -> dict[str, Any]:
    """Every engine --repeats times, interleaved (the order rotates each round), so a load spike
    on a shared machine hits all engines alike; rates are medians with their min/max spread, and
    the ratio to datasketch is the median of the per-round ratios (same round, same load)."""
    base_rows = min(args.baseline_rows or args.rows, args.rows)
    runners: dict[str, Any] = {}
    if "cogumi" in engines:
        import ray

        init_ray(RayConfig(  # as `cogumi` starts a local Ray
            num_cpus=args.num_cpus, include_dashboard=False,
            object_store_memory_mb=int(args.object_store_gb * 1024) or None,
        ))
        ray.data.DataContext.get_current().enable_progress_bars = False
        runners["cogumi"] = lambda: run_cogumi(corpus_dir, cfg)["seconds"]
    if {"datasketch", "rensa", "cogumi_local"} & set(engines):
        ids, texts, base = load_texts(corpus, base_rows)
        single = {"datasketch": lambda: run_datasketch(ids, texts, cfg)[0],
                  "rensa": lambda: run_rensa(ids, texts, cfg)[0],
                  "cogumi_local": lambda: run_cogumi_local(base, cfg)}
        runners.update({k: v for k, v in single.items() if k in engines})
    order = list(runners)
    rates: dict[str, list[float]] = {k: [] for k in order}
    cpu_us: dict[str, list[float]] = {k: [] for k in order}
    for r in range(args.repeats):
        for name in order[r % len(order):] + order[: r % len(order)]:
            cpu0 = time.process_time()
            secs = runners[name]()
            rows = args.rows if name == "cogumi" else base_rows
            rates[name].append(rows / secs)
            cpu_us[name].append((time.process_time() - cpu0) / rows * 1e6)
            print(f"round {r + 1}/{args.repeats} {name}: {rows / secs:.0f} rows/s "
                  f"(load {load()[0]})", flush=True)
    out: dict[str, Any] = {}
    for name in order:
        out[name] = {**_spread(rates[name]),
                     "rows_measured": args.rows if name == "cogumi" else base_rows,
                     "extrapolated": name != "cogumi" and base_rows < args.rows}
        if name != "cogumi":  # CPU time of this single-threaded process: robust to other load
            out[name]["cpu_us_per_row"] = float(np.median(cpu_us[name]))
    if "datasketch" in rates:
        ref = rates["datasketch"]
        for name in order:
            paired = [a / b for a, b in zip(rates[name], ref, strict=True)]
            out[name]["x_datasketch"] = float(np.median(paired))
            out[name]["x_datasketch_range"] = [min(paired), max(paired)]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="corpus rows")
    ap.add_argument("--sample", type=int, default=3000, help="rows for the exact all-pairs check")
    ap.add_argument("--baseline-rows", type=int, default=0,
                    help="rows datasketch/rensa run on (0 = all); fewer = extrapolated time")
    ap.add_argument("--engines", default="cogumi,cogumi_local,datasketch,rensa",
                    help="cogumi (Ray Data), cogumi_local (same algorithm, one process), ...")
    ap.add_argument("--dup-rate", type=float, default=0.1, help="share of planted copies")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs per engine, interleaved (median and spread reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs Ray may use")
    ap.add_argument("--object-store-gb", type=float, default=0,
                    help="object store size for the local Ray (0: Ray's default, as cogumi)")
    ap.add_argument("--work-dir", default="/tmp/cogumi-dedup-bench")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args(argv)
    engines = args.engines.split(",")
    cfg = DedupConfig()
    corpus = Corpus(args.seed, args.dup_rate)
    results: dict[str, Any] = {
        "machine": {"cpus_os": os.cpu_count(), "ray_cpus": args.num_cpus,
                    "python": platform.python_version(), "load_start": load()},
        "config": cfg.model_dump(), "args": vars(args),
    }
    corpus_dir = Path(args.work_dir) / f"corpus-{args.rows}-{args.seed}"
    t0 = time.perf_counter()
    results["corpus"] = write_corpus(args.seed, args.dup_rate, args.rows, corpus_dir, args.num_cpus)
    results["corpus"]["approx_tokens"] = round(results["corpus"]["avg_chars"] / 4.2)
    results["corpus"]["generate_seconds"] = time.perf_counter() - t0
    print(f"corpus: {results['corpus']}", flush=True)

    engines_out = run_engines(args, engines, corpus, corpus_dir, cfg)
    results["engines"] = engines_out

    if args.sample:
        n = min(args.sample, args.rows)
        ids, texts, rows = load_texts(corpus, n)
        truth = true_pairs(ids, texts, cfg)
        quality: dict[str, Any] = {"sample_rows": n, "true_pairs": len(truth)}
        edges, same, dropped = cogumi_sample(rows, cfg)
        quality["cogumi"] = score(edges, truth, same)
        if "cogumi" in engines:
            quality["cogumi"]["ray_drops_equal_reference"] = ray_sample_drops(rows, cfg) == dropped
        for name, fn in (("datasketch", run_datasketch), ("rensa", run_rensa)):
            if name in engines:
                quality[name] = score(fn(ids, texts, cfg)[1], truth)
        results["quality"] = quality
        print(f"quality: {json.dumps(quality)}", flush=True)
    results["machine"]["load_end"] = load()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: results[k] for k in ("machine", "corpus", "engines")}, indent=2,
                     default=str))
    return results


if __name__ == "__main__":
    main()
