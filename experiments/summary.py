"""Summaries of finished methods shared by the trainer's ``results.md`` and the report: mean ± std
over the seeds that did not diverge, and the table of a task's per-step metric. Everything
task-specific comes from the :class:`experiments.tasks.Task` interface."""
from __future__ import annotations

import math

import numpy as np

import rhel_jax
from experiments import recipes
from experiments.progress import fmt_time
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
  ``test_<metric>_at_best_val`` where the run selected an epoch on validation), and the mean over
  those seeds of every per-step test metric (one list per seed: ``(steps,)``)."""
  rows = []
  for method, r in results.items():
    ok = ~np.asarray(r["diverged"], bool)
    row = {"method": method, "seeds": int(ok.sum()), "diverged_seeds": np.flatnonzero(~ok).tolist(),
           "wall_seconds": r.get("wall_seconds", math.nan)}
    for key in (k for m in metrics for k in (f"test_{m}", f"test_{m}_at_best_val")):
      if key in r:
        row[key] = mean_std(np.asarray(r[key], float)[ok])
    for key in sorted(k for k, v in r.items() if k.startswith("test_") and np.ndim(v) == 2):
      per_step = np.asarray(r[key], float)[ok]
      row[key] = per_step.mean(0).tolist() if per_step.size else []
    rows.append(row)
  return rows


def nudge_eps(config) -> float | None:
  """The RHEL nudge a run uses: ``config.method.eps``, or the library default for its dtype and
  integrator mode (``rhel_jax.default_eps``); None when no configured method takes ``eps``."""
  takes_eps = [m for m in config.methods if "eps" in METHODS[m].option_names]
  if not takes_eps:
    return None
  option = METHODS[takes_eps[0]].option("eps")
  # The default depends on the dtype and the integrator mode only; the other fields stay at theirs.
  model = rhel_jax.ModelConfig(exact_reversible=config.model.exact_reversible)
  return option.resolve(config.method.get(option.config_key), config.model.dtype, model)


def results_markdown(config, rows: list[dict], task, command: str, revision: str) -> str:
  """A run's ``results.md``: its set-up, one row per method of :func:`summarize`'s ``rows``, the
  task's per-step metric (if it has one) and any diverged seeds."""
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
  eps = nudge_eps(config)
  if eps is not None:
    lines.append(f"- RHEL nudge eps = {eps:g} per sequence"
                 + (" (rhel_jax.default_eps)" if config.method.eps is None else ""))
    kernel = config.method.get("kernel", "scan")
    if kernel != "scan" and any("kernel" in METHODS[m].option_names for m in config.methods):
      lines.append(f"- RHEL phases run by the fused Pallas kernels (kernel={kernel!r})")
  if getattr(task, "sizes", None):
    lines.append(f"- split sizes: {task.sizes}")
  if getattr(task, "source", None):
    lines.append(f"- data: {task.source}")
  tuned = [m for m in config.methods if recipes.fields(config, m)]
  lines += [f"- {m}'s own recipe (`config.recipes.{m}`): {recipes.describe(config, m)}" for m in tuned]
  if tuned:
    lines.append("- every other method: the shared recipe (`config.train`, `config.method`)")
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
  if task.per_step_metric:
    key = f"test_{task.per_step_metric}"
    caption = task.per_step_caption[:1].upper() + task.per_step_caption[1:]
    lines += per_step_lines({r["method"]: r[key] for r in rows if r.get(key)}, caption, task.per_step_prefix)
  diverged = [r for r in rows if r["diverged_seeds"]]
  if diverged:
    lines += ["", "Diverged seeds (non-finite loss or gradient; frozen at that step and left out of the "
              "mean): " + "; ".join(f"{r['method']}: {r['diverged_seeds']}" for r in diverged)]
  return "\n".join(lines) + "\n"


def per_step_lines(by_step: dict, caption: str, prefix: str) -> list[str]:
  """Markdown lines of a per-step metric, ``{method: (steps,) mean over seeds}``, in percent: the
  caption (a sentence without its colon), then one column per step headed ``<prefix>1``, ..."""
  if not by_step:
    return []
  steps = len(next(iter(by_step.values())))
  return (["", f"{caption}:", "",
           "| method | " + " | ".join(f"{prefix}{i + 1}" for i in range(steps)) + " |", "|---|" + "---|" * steps]
          + [f"| {m} | " + " | ".join(f"{100 * a:.1f}" for a in acc) + " |" for m, acc in by_step.items()])
