"""Confidence calibration: how far to trust the model's own confidence in its answer to a query.

The router (later) escalates queries the base model is likely to fail; it needs a probability of
passing, not a raw score. This module reads confidence *features* from the first greedily
generated tokens, and fits calibrators that map them to P(verifier passes) on validation rows.

API (the compress stage calls these; nothing here is a stage):

- ``hf_features(model_dir, prompts, first_tokens) -> np.ndarray`` (rows x 4), via transformers.
- ``gguf_features(gguf_path, prompt_token_ids, first_tokens) -> np.ndarray``, via llama.cpp; feed
  it ``chat_token_ids(model_dir, prompts)`` so both read the very same prompt tokens.
  ``prompts`` are user instructions; they are chat-formatted here (``build_prompt``).
  Columns (``FEATURES``): mean log-prob of the chosen tokens, mean entropy of the next-token
  distribution (nats), min log-prob, mean top-1 minus top-2 probability. Generation stops early at
  an end-of-generation token (which is counted). ``raw_confidence(f) = exp(mean log-prob)``.
- ``gguf_prefix_features(gguf_path, prompt_token_ids, ks)`` / ``hf_prefix_features(model_dir,
  prompts, ks)`` -> (len(ks), rows, 4): the same features after each k of `ks` generated tokens,
  from one greedy run of max(ks) tokens per prompt (a prefix's features are those of its steps).
- ``calibrate(features_fit, labels_fit, features_eval, labels_eval, bins) -> CalibrationReport``:
  fits temperature scaling (of the raw confidence's logit) and Platt scaling (standardised logistic
  regression on the features) on the fit split, reports ECE/Brier/NLL of raw, temperature and Platt
  on the held-out eval split, and picks the calibrator with the lowest eval NLL (``report.best``).
  ``split_rows(labels)`` gives a stratified, seeded fit/eval split of one validation set.
- ``Calibrator``: ``predict(features) -> probabilities``, ``save(path)`` / ``Calibrator.load(path)``
  as JSON (no pickle: a router replica loads it without scikit-learn).
- ``ece``, ``brier``, ``nll``, ``reliability_plot(path, raw, calibrated, labels, bins)`` (PNG).

Labels are the eval stage's per-row verdicts (``eval/stage.py`` ``write_items``: ``id``,
``passed``), 1 = the model's answer passed, aligned by ``id`` with the prompts' rows.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from cogumi_ray import storage
from cogumi_ray.errors import DataError, EvalError, ModelError

FEATURES = ("mean_logprob", "mean_entropy", "min_logprob", "mean_margin")
MIN_FIT_ROWS = 20  # below this a fitted calibrator is noise, and the report would pretend otherwise
MIN_EVAL_ROWS = 10
_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] so logits and NLL stay finite


# ---------------------------------------------------------------- features


def _step(logits: np.ndarray) -> tuple[int, float, float, float]:
    """(greedy token, its log-prob, entropy, top1 - top2 prob) of one next-token logit row."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    logp = z - math.log(float(np.exp(z).sum()))
    p = np.exp(logp)
    token = int(np.argmax(z))
    top2 = np.partition(p, -2)[-2:] if p.size > 1 else np.array([0.0, p[0]])
    entropy = float(-(p * logp).sum())
    return token, float(logp[token]), entropy, float(top2[1] - top2[0])


def _row(steps: list[tuple[int, float, float, float]]) -> list[float]:
    logps = [s[1] for s in steps]
    return [float(np.mean(logps)), float(np.mean([s[2] for s in steps])), float(min(logps)),
            float(np.mean([s[3] for s in steps]))]


def _prefix_rows(steps: list[tuple[int, float, float, float]], ks: Sequence[int]) -> list[list[float]]:
    """`_row` of the first k steps for each k in `ks` (a generation that stopped at an end token
    before k has only its own steps: exactly what a run of k tokens would have read)."""
    return [_row(steps[:k]) for k in ks]


def _check_ks(ks: Sequence[int]) -> list[int]:
    if not ks:
        raise DataError("prefix features need at least one token count (ks is empty)")
    for k in ks:
        _check_first_tokens(k)
    return [int(k) for k in ks]


def _stack(rows: list[list[list[float]]], n_ks: int) -> np.ndarray:
    """(rows, ks, features) lists -> (ks, rows, features)."""
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), n_ks, len(FEATURES)).transpose(1, 0, 2)


def _check_first_tokens(first_tokens: int) -> None:
    if first_tokens < 1:
        raise DataError(f"first_tokens must be >= 1 (got {first_tokens}); see compress.calibration")


def chat_token_ids(model_dir: str, prompts: Sequence[str]) -> list[list[int]]:
    """Chat-formatted prompt token ids of each instruction, by the model folder's tokenizer."""
    from cogumi_ray.models.chat import build_prompt, encode_chat
    from cogumi_ray.models.load import load_tokenizer

    tok = load_tokenizer(model_dir)
    return [encode_chat(tok, build_prompt(tok, p)) for p in prompts]


def _hf_eos_ids(model: Any, tok: Any) -> set[int]:
    # generation_config may list several stop ids (Llama-3.1: <|end_of_text|>, <|eot_id|>)
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    out = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
    if tok.eos_token_id is not None:
        out.add(int(tok.eos_token_id))
    return out


def _hf_steps(model: Any, ids: list[int], first_tokens: int, eos: set[int]) -> list[Any]:
    import torch

    # a manual greedy loop on the KV cache reads the raw logits; generate()'s scores would pass
    # through whatever logits processors the folder's generation_config switches on
    out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
    steps = []
    for _ in range(first_tokens):
        steps.append(_step(out.logits[0, -1].float().cpu().numpy()))
        if steps[-1][0] in eos:
            break
        nxt = torch.tensor([[steps[-1][0]]], device=model.device)
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
    return steps


def hf_features(model_dir: str, prompts: Sequence[str], first_tokens: int, *,
                dtype: str = "auto", device: str = "cpu") -> np.ndarray:
    """Features (rows x len(FEATURES)) of `prompts` (instructions) read by transformers."""
    return hf_prefix_features(model_dir, prompts, [first_tokens], dtype=dtype, device=device)[0]


def hf_prefix_features(model_dir: str, prompts: Sequence[str], ks: Sequence[int], *,
                       dtype: str = "auto", device: str = "cpu") -> np.ndarray:
    """(len(ks), rows, len(FEATURES)): `hf_features` after each k of `ks` generated tokens."""
    import torch

    from cogumi_ray.models.chat import build_prompt, encode_chat
    from cogumi_ray.models.load import load_model_and_tokenizer

    ks = _check_ks(ks)
    model, tok = load_model_and_tokenizer(model_dir, dtype=dtype, device=device)
    eos = _hf_eos_ids(model, tok)
    rows = []
    with torch.inference_mode():
        for p in prompts:
            ids = encode_chat(tok, build_prompt(tok, p))
            rows.append(_prefix_rows(_hf_steps(model, ids, max(ks), eos), ks))
    return _stack(rows, len(ks))


def gguf_features(gguf_path: str, prompt_token_ids: Sequence[Sequence[int]], first_tokens: int, *,
                  n_threads: int | None = None) -> np.ndarray:
    """Features (rows x len(FEATURES)) of pre-tokenised chat prompts read by llama.cpp."""
    return gguf_prefix_features(gguf_path, prompt_token_ids, [first_tokens], n_threads=n_threads)[0]


def gguf_prefix_features(gguf_path: str, prompt_token_ids: Sequence[Sequence[int]],
                         ks: Sequence[int], *, n_threads: int | None = None) -> np.ndarray:
    """(len(ks), rows, len(FEATURES)): `gguf_features` after each k of `ks` generated tokens."""

    from cogumi_ray.generate.engines.llama_load import open_llama

    ks = _check_ks(ks)
    first_tokens = max(ks)
    if not prompt_token_ids or any(len(ids) == 0 for ids in prompt_token_ids):
        raise DataError("gguf_features needs non-empty prompt token ids (use chat_token_ids)")
    n_ctx = max(len(ids) for ids in prompt_token_ids) + first_tokens + 1
    try:
        # n_threads_batch too: the prompt is one batch, read by cpu_count() threads by default
        llm = open_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                         verbose=False)
    except Exception as e:
        raise ModelError(f"cannot load GGUF {gguf_path!r}: {type(e).__name__}: {e}") from None
    try:
        rows = [_prefix_rows(gguf_steps(llm, ids, first_tokens), ks) for ids in prompt_token_ids]
    finally:
        llm.close()
    return _stack(rows, len(ks))


def gguf_steps(llm: Any, ids: Sequence[int], n: int) -> list[tuple[int, float, float, float]]:
    """Up to `n` greedy steps (`_step` of each) after the prompt `ids` on a loaded llama.cpp
    model, stopping after an end-of-generation token. The prompt is read afresh (no KV prefix
    reuse) and each step reads the last position's logits, so the router stage's features and a
    serving replica's probe (on its own loaded model) are the same numbers."""
    import llama_cpp

    vocab, n_vocab = llama_cpp.llama_model_get_vocab(llm.model), llm.n_vocab()
    llm.reset()
    llm.eval(list(ids))
    steps: list[tuple[int, float, float, float]] = []
    for _ in range(n):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        steps.append(_step(logits))
        if llama_cpp.llama_vocab_is_eog(vocab, steps[-1][0]):
            break
        llm.eval([steps[-1][0]])
    return steps


def raw_confidence(features: np.ndarray) -> np.ndarray:
    """exp(mean log-prob of the first tokens): the uncalibrated P(answer is right)."""
    return np.exp(_as_features(features)[:, 0])


# ---------------------------------------------------------------- inputs


def _as_features(features: Any) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        raise DataError(f"features must be rows x {len(FEATURES)} {FEATURES}; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("features hold NaN/inf values; re-extract them (a model producing NaN "
                        "logits is broken, check its dtype)")
    return x


def _as_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels).astype(np.float64).reshape(-1)
    if y.size != n:
        raise DataError(f"{y.size} labels for {n} feature rows; align them by eval item id")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0/1 or bool (1 = the verifier passed the answer)")
    return y


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)


def _logit(p: np.ndarray) -> np.ndarray:
    p = _clip(p)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # stable for large |z|


# ---------------------------------------------------------------- metrics


def ece(probs: Any, labels: Any, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-width bins of [0, 1]."""
    p = _clip(np.asarray(probs, dtype=np.float64).reshape(-1))
    y = _as_labels(labels, p.size)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += abs(float(y[m].mean() - p[m].mean())) * int(m.sum())
    return total / p.size


def brier(probs: Any, labels: Any) -> float:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    return float(np.mean((p - _as_labels(labels, p.size)) ** 2))


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood (nats) of the labels under `probs`."""
    p = _clip(np.asarray(probs, dtype=np.float64).reshape(-1))
    y = _as_labels(labels, p.size)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _metrics(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    return {"ece": ece(probs, labels, bins), "brier": brier(probs, labels), "nll": nll(probs, labels)}


def _bin_stats(p: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.minimum((_clip(p) * bins).astype(int), bins - 1)
    acc = np.array([y[idx == b].mean() if (idx == b).any() else 0.0 for b in range(bins)])
    count = np.bincount(idx, minlength=bins)
    return acc, count


def reliability_plot(path: str, raw: Any, calibrated: Any, labels: Any, bins: int = 10) -> str:
    """Reliability diagram PNG (accuracy per confidence bin vs the diagonal), before | after."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y = _as_labels(labels, np.asarray(raw).size)
    # Figure + Agg canvas, not pyplot: no global state, safe inside Ray workers and threads
    fig = Figure(figsize=(9, 4.2))
    FigureCanvasAgg(fig)
    edges = np.linspace(0, 1, bins + 1)
    for i, (name, probs) in enumerate((("raw", raw), ("calibrated", calibrated))):
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        acc, count = _bin_stats(p, y, bins)
        ax = fig.add_subplot(1, 2, i + 1)
        ax.bar(edges[:-1], acc, width=1 / bins, align="edge", edgecolor="black",
               color=["tab:blue" if c else "none" for c in count], label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="pass rate",
               title=f"{name}: ECE {ece(p, y, bins):.3f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    storage.atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- calibrators


@dataclass(frozen=True)
class Calibrator:
    """P(pass) from confidence features. temperature: sigmoid(logit(raw) / T); platt:
    sigmoid(((x - mean) / scale) @ coef + intercept)."""

    kind: Literal["temperature", "platt"]
    temperature: float = 1.0
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    features: tuple[str, ...] = FEATURES

    def predict(self, features: Any) -> np.ndarray:
        x = _as_features(features)
        if self.kind == "temperature":
            return _sigmoid(_logit(np.exp(x[:, 0])) / self.temperature)
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)
        return _sigmoid(z + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        if d.get("kind") not in ("temperature", "platt"):
            raise DataError(f"calibrator kind {d.get('kind')!r} unknown; valid: temperature, platt")
        if tuple(d.get("features", ())) != FEATURES:
            raise DataError(f"calibrator was fitted on features {d.get('features')}, this code "
                            f"reads {FEATURES}; refit it with `calibrate`")
        vec = {k: tuple(float(v) for v in d.get(k, ())) for k in ("mean", "scale", "coef")}
        if d["kind"] == "platt" and any(len(v) != len(FEATURES) for v in vec.values()):
            raise DataError(f"platt calibrator needs mean/scale/coef of length {len(FEATURES)}")
        return cls(kind=d["kind"], temperature=float(d.get("temperature", 1.0)),
                   intercept=float(d.get("intercept", 0.0)), features=FEATURES, **vec)

    def save(self, path: str) -> str:
        storage.atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str) -> Calibrator:
        try:
            return cls.from_dict(storage.read_json(path))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read calibrator {path!r}: {type(e).__name__}: {e}") from None


def fit_temperature(features: Any, labels: Any) -> Calibrator:
    """One scalar T minimising the NLL of sigmoid(logit(raw confidence) / T)."""
    from scipy.optimize import minimize_scalar

    x = _as_features(features)
    y = _as_labels(labels, len(x))
    z = _logit(np.exp(x[:, 0]))

    def loss(log_t: float) -> float:  # optimise log T: T stays positive, the scale is symmetric
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize_scalar(loss, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return Calibrator(kind="temperature", temperature=float(math.exp(res.x)))


def fit_platt(features: Any, labels: Any) -> Calibrator:
    """Logistic regression on the standardised features (needs both classes in `labels`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = _as_features(features)
    y = _as_labels(labels, len(x))
    if len(np.unique(y)) < 2:
        raise EvalError("Platt scaling needs both passed and failed rows; use fit_temperature")
    scaler = StandardScaler().fit(x)  # a constant feature gets scale 1, not a division by zero
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x), y.astype(int))
    return Calibrator(kind="platt", mean=tuple(map(float, scaler.mean_)),
                      scale=tuple(map(float, scaler.scale_)), coef=tuple(map(float, lr.coef_[0])),
                      intercept=float(lr.intercept_[0]))


# ---------------------------------------------------------------- entry point


@dataclass
class CalibrationReport:
    chosen: str  # name in `calibrators` with the lowest eval NLL
    calibrators: dict[str, Calibrator]
    metrics: dict[str, dict[str, float]]  # raw | temperature | platt -> ece, brier, nll (eval split)
    n_fit: int
    n_eval: int
    bins: int
    fit_pass_rate: float
    eval_pass_rate: float
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> Calibrator:
        return self.calibrators[self.chosen]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibrators"] = {k: c.to_dict() for k, c in self.calibrators.items()}
        return d


def _check_rows(n: int, name: str, minimum: int) -> None:
    if n < minimum:
        raise EvalError(f"{n} {name} rows are too few to calibrate (need >= {minimum}); "
                        "raise compress.calibration.max_rows or evaluate more validation rows")


def calibrate(features_fit: Any, labels_fit: Any, features_eval: Any, labels_eval: Any,
              bins: int = 10) -> CalibrationReport:
    """Fit temperature + Platt on the fit split, compare with raw on the held-out eval split."""
    xf, xe = _as_features(features_fit), _as_features(features_eval)
    yf, ye = _as_labels(labels_fit, len(xf)), _as_labels(labels_eval, len(xe))
    _check_rows(len(xf), "fit", MIN_FIT_ROWS)
    _check_rows(len(xe), "eval", MIN_EVAL_ROWS)
    notes: list[str] = []
    cals = {"temperature": fit_temperature(xf, yf)}
    if len(np.unique(yf)) < 2:
        only = "passed" if yf[0] == 1 else "failed"
        notes.append(f"every fit row {only}: Platt scaling cannot be fitted, temperature only "
                     "(T then only stretches the confidence towards that one class)")
    else:
        cals["platt"] = fit_platt(xf, yf)
    if len(np.unique(ye)) < 2:
        notes.append("every eval row has the same label: ECE/Brier/NLL only measure the distance "
                     "to that constant")
    metrics = {"raw": _metrics(raw_confidence(xe), ye, bins)}
    metrics.update({k: _metrics(c.predict(xe), ye, bins) for k, c in cals.items()})
    chosen = min(cals, key=lambda k: metrics[k]["nll"])
    return CalibrationReport(chosen, cals, metrics, len(xf), len(xe), bins,
                             float(yf.mean()), float(ye.mean()), notes)


def split_rows(labels: Any, eval_share: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, eval indices): a seeded split stratified by label, so both splits see both."""
    if not 0 < eval_share < 1:
        raise DataError(f"eval_share must be in (0, 1); got {eval_share}")
    y = np.asarray(labels).astype(np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        k = max(1, round(eval_share * len(idx))) if len(idx) > 1 else 0
        held.extend(idx[:k])
        fit.extend(idx[k:])
    return np.sort(np.asarray(fit, dtype=int)), np.sort(np.asarray(held, dtype=int))
