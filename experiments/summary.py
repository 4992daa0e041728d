"""Summaries of finished methods shared by the trainer's ``results.md`` and the report: mean ± std
over the seeds that did not diverge, and the per-step recall table."""
from __future__ import annotations

import math

import numpy as np

from experiments.progress import fmt_time
from experiments.trainer import method_options
from rhel_jax.methods import METHODS


def mean_std(values) -> tuple[float, float]:
  """Mean and (population) std of ``values``; NaNs when empty (every seed diverged)."""
  values = np.asarray(values, float)
  return (float(values.mean()), float(values.std())) if values.size else (math.nan, math.nan)


def best_on_validation(rows: list[dict], metric: str, num_seeds: int) -> dict[str, list]:
  """Per seed, the epoch with the best ``val_<metric>`` (ties: the lower ``val_loss``, then the
  earlier epoch) and the test metrics of that epoch, from the trainer's ``metrics.jsonl`` rows.

  Returns ``{'best_val_epoch': [...], 'val_<metric>': [...], 'test_<m>_at_best_val': [...], ...}``,
  one entry per seed. The test metrics play no part in the choice.
  """
  out: dict[str, list] = {}
  for seed in range(num_seeds):
    mine = [r for r in rows if r["seed"] == seed]
    if not mine:
      raise ValueError(f"best_on_validation: no rows for seed {seed}")
    best = min(mine, key=lambda r: (-r[f"val_{metric}"], r.get("val_loss", 0.0), r["epoch"]))
    out.setdefault("best_val_epoch", []).append(best["epoch"])
    out.setdefault(f"val_{metric}", []).append(best[f"val_{metric}"])
    for key in sorted(k for k in best if k.startswith("test_") and not isinstance(best[k], list)):
      out.setdefault(f"{key}_at_best_val", []).append(best[key])
  return out


def summarize(results: dict[str, dict], metrics: tuple[str, ...]) -> list[dict]:
  """Per method: mean and std over the seeds that did not diverge of each ``test_<metric>`` (and of
  ``test_<metric>_at_best_val`` where the run selected an epoch on validation)."""
  rows = []
  for method, r in results.items():
    ok = ~np.asarray(r["diverged"], bool)
    row = {"method": method, "seeds": int(ok.sum()), "diverged_seeds": np.flatnonzero(~ok).tolist(),
           "wall_seconds": r.get("wall_seconds", math.nan)}
    for key in (k for m in metrics for k in (f"test_{m}", f"test_{m}_at_best_val")):
      if key in r:
        row[key] = mean_std(np.asarray(r[key], float)[ok])
    if "test_acc_by_step" in r:
      by_step = np.asarray(r["test_acc_by_step"], float)[ok]
      row["test_acc_by_step"] = by_step.mean(0).tolist() if by_step.size else []
    rows.append(row)
  return rows


def results_markdown(config, rows: list[dict], task, command: str, revision: str) -> str:
  metric_cols = [k for m in task.summary_metrics for k in (f"test_{m}", f"test_{m}_at_best_val") if k in rows[0]]
  bare = lambda k: k.removeprefix("test_").removesuffix("_at_best_val")
  pct = lambda k: bare(k) in task.fraction_metrics
  label = lambda k: bare(k) + (" at the best validation epoch" if k.endswith("_at_best_val") else "")
  head = "| method | " + " | ".join(label(k) + (" (%)" if pct(k) else "") for k in metric_cols) + \
      " | seeds | diverged | wall time |"
  lines = [f"# Results: {config.name}", "",
           "Mean ± std over seeds of the final test metrics (per-seed values in `<method>/final.json`).",
           "", f"- command: `{command}`", f"- git revision: `{revision}`",
           f"- task: {config.task.name}, T={task.seq_len}, N={config.model.num_hidden}, "
           f"{config.num_epochs} epochs x {task.steps_per_epoch} steps, batch {config.batch_size}, "
           f"{config.num_seeds} seeds, {config.model.dtype}"
           + (f", exact-reversible RHEL phases ({config.model.grid_bits}-bit grid)"
              if config.model.exact_reversible else "")]
  rhel_methods = [m for m in config.methods if "eps" in METHODS[m].option_names]
  if rhel_methods:
    eps = method_options(config, rhel_methods[0])["eps"]
    lines.append(f"- RHEL nudge eps = {eps:g} per sequence"
                 + (" (rhel_jax.default_eps)" if config.method.eps is None else ""))
  if getattr(task, "sizes", None):
    lines.append(f"- split sizes: {task.sizes}")
  if getattr(task, "source", None):
    lines.append(f"- data: {task.source}")
  lines += ["", head,
           "|" + "---|" * (len(metric_cols) + 4)]
  for row in rows:
    cells = []
    for k in metric_cols:
      mean, std = row[k]
      cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}" if pct(k) else f"{mean:.3f} ± {std:.3f}")
    lines.append(f"| {row['method']} | " + " | ".join(cells) +
                 f" | {row['seeds']} | {row['diverged_seeds'] or '-'} | "
                 + ("-" if math.isnan(row["wall_seconds"]) else fmt_time(row["wall_seconds"])) + " |")
  lines += recall_by_step_lines({r["method"]: r["test_acc_by_step"] for r in rows if r.get("test_acc_by_step")})
  diverged = [r for r in rows if r["diverged_seeds"]]
  if diverged:
    lines += ["", "Diverged seeds (non-finite loss or gradient; frozen at that step and left out of the "
              "mean): " + "; ".join(f"{r['method']}: {r['diverged_seeds']}" for r in diverged)]
  return "\n".join(lines) + "\n"


def recall_by_step_lines(by_step: dict, caption: str = "Recall accuracy") -> list[str]:
  """Markdown lines of the per-step recall accuracy, ``{method: (window,) mean over seeds}``."""
  if not by_step:
    return []
  window = len(next(iter(by_step.values())))
  return (["", f"{caption} (%) at each step of the recall window, mean over seeds (50 = chance: "
           "that step's symbol is not recalled):", "",
           "| method | " + " | ".join(f"r{i + 1}" for i in range(window)) + " |", "|---|" + "---|" * window]
          + [f"| {m} | " + " | ".join(f"{100 * a:.1f}" for a in acc) + " |" for m, acc in by_step.items()])
