"""Training curves: loss and eval loss vs step for every Ray Train run of the run.

The history is the HF Trainer's `log_history` in the newest checkpoint's trainer_state.json
(Ray Train keeps the checkpoints under `<stage>/checkpoints/<run name>/checkpoint_*/checkpoint/`);
each Ray Train run there (one per modifier domain) becomes its own pair of lines.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table
from cogumi_ray.reports.fmt import DASH, is_num, num
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline

# Stages that train, the title of their chart, and the metric prefix of their headline numbers.
TRAINED = (
    ("train_base", "Base SFT", ""),
    ("distill", "Distillation retrain", "train_"),
    ("modifiers", "LoRA modifiers", None),
    ("compress", "Masked recovery after pruning", "recovery_"),
)


def histories(run: RunData, stage: str, inline: Inline) -> dict[str, list[dict]]:
    """Ray Train run name -> the log history of its furthest checkpoint."""
    best: dict[str, tuple[int, list[dict]]] = {}
    for path in run.glob(stage, "checkpoints/**/trainer_state.json"):
        parts = path.rstrip("/").split("/")
        group = parts[-4] if len(parts) >= 4 else stage  # .../<group>/checkpoint_*/checkpoint/...
        state = inline.json_at(path, stage)
        if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
            continue
        step = state.get("global_step") if is_num(state.get("global_step")) else -1
        if group not in best or step >= best[group][0]:
            best[group] = (step, state["log_history"])
    return {g: h for g, (_, h) in sorted(best.items())}


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in history
           if isinstance(r, dict) and is_num(r.get("step")) and is_num(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _label(group: str, stage: str) -> str:
    return group.removeprefix("modifier_") if stage == "modifiers" else ""


def _chart(stage: str, title: str, hist: dict[str, list[dict]]) -> tuple[bytes, bool] | None:
    """The PNG and whether it has eval-loss lines."""
    series: list[tuple[str, Any, Any, bool]] = []
    for group, h in hist.items():
        name = _label(group, stage)
        for key, dashed, what in (("loss", False, "train loss"), ("eval_loss", True, "eval loss")):
            xs, ys = _series(h, key)
            if xs:
                series.append((f"{name} {what}".strip(), xs, ys, dashed))
    if not series:
        return None
    spread = max(max(s[2]) for s in series) / max(min(min(s[2]) for s in series), 1e-9)
    # A from-scratch tiny model starts near ln(vocab) ~ 7 and ends near 0.5: log scale keeps
    # the tail readable; short fine-tunes have a narrow range and read better linear.
    return (plots.lines(series, f"{title}: loss vs step", "step", "loss", log_y=spread > 8),
            any(s[3] for s in series))


def _summary_rows(run: RunData, hist: dict[str, dict[str, list[dict]]]) -> list[list[str]]:
    rows = []
    for stage, _, prefix in TRAINED:
        m = run.metrics(stage)
        if stage == "modifiers":
            for d in m.get("domains") or []:
                rows.append([f"modifier {d}", num(m.get(f"{d}_steps")), num(m.get(f"{d}_train_loss")),
                             num(m.get(f"{d}_eval_loss")), num(m.get(f"{d}_tokens_per_s"))])
        elif prefix is not None and (is_num(m.get(f"{prefix}steps")) or stage in hist):
            rows.append([stage, num(m.get(f"{prefix}steps")), num(m.get(f"{prefix}train_loss")),
                         num(m.get(f"{prefix}eval_loss", m.get(f"{prefix}best_eval_loss"))),
                         num(m.get(f"{prefix}tokens_per_s"))])
    return rows


def section(run: RunData) -> Section:
    sec = Section("Training curves", "training")
    if not any(run.stage(s) for s, _, _ in TRAINED):
        sec.add(Note("train_base: not run"))
        return sec
    inline = Inline(run, sec)
    found: dict[str, dict[str, list[dict]]] = {}
    for stage, title, _ in TRAINED:
        if run.done(stage) is None:
            if stage == "train_base":
                sec.add(Note(f"{stage}: not run" if run.stage(stage) is None
                             else f"{stage}: not run to completion ({run.stage(stage).status})"))
            continue
        hist = histories(run, stage, inline)
        if not hist:
            continue
        found[stage] = hist
        if chart := _chart(stage, title, hist):
            png, has_eval = chart
            what = "train loss (solid) and eval loss (dashed)" if has_eval else "train loss"
            sec.add(Figure(f"loss_{stage}.png", png, f"{title}: {what}"))
    rows = _summary_rows(run, found)
    rows = [r for r in rows if any(c != DASH for c in r[1:])]
    if rows:
        sec.add(Table(["training run", "steps", "final train loss", "eval loss", "tokens/s"], rows,
                      "Final losses (stage metrics)", numeric=(1, 2, 3, 4)))
    if not found and run.done("train_base"):
        sec.add(Note("train_base: no trainer_state.json under its checkpoints/ (no loss history)"))
    return sec
