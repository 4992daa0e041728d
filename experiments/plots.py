"""Pictures of runs, from the files a run writes: learning curves, gradient alignment with BPTT
(the paper's Figure 1) and the recall per step of a task that reports one.

Every figure is written atomically (``checkpoints.atomic_savefig``) with matplotlib's Agg backend.
"""
from __future__ import annotations

import json
import pathlib
from typing import Optional

import numpy as np

from experiments import checkpoints
from rhel_jax.methods import METHODS


def _pyplot():
  import matplotlib  # noqa: PLC0415  (a headless backend before pyplot loads)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  return plt


def _color(method: str) -> Optional[str]:
  # A method without a colour of its own (BPTT, the reference) is drawn in black.
  return (METHODS[method].color or "black") if method in METHODS else None


# Lines that coincide (BPTT and centered RHEL often do) stay visible in different dash patterns.
_STYLES = ("-", "--", "-.", ":")


def _integer_epochs(ax) -> None:
  from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curve(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(epochs, mean, s.e.m.)`` of ``key`` over the seeds that have not diverged, per epoch.

  ``rows``: a run's ``metrics.jsonl`` rows (one per epoch and seed).
  """
  epochs = sorted({r["epoch"] for r in rows})
  mean, sem = [], []
  for e in epochs:
    values = np.array([r[key] for r in rows if r["epoch"] == e and not r.get("diverged")], float)
    mean.append(values.mean() if values.size else np.nan)
    sem.append(values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else 0.0)
  return np.array(epochs), np.array(mean), np.array(sem)


def learning_curves(panels: list[tuple[str, dict[str, list[dict]], str]], percent: bool, path: pathlib.Path,
                    ylabel: Optional[str] = None) -> None:
  """One panel per ``(title, {line label: metrics rows}, key)``: ``key`` per epoch, mean ± s.e.m."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
  scale = 100 if percent else 1
  for ax, (title, lines, key) in zip(axes[0], panels):
    for i, (label, rows) in enumerate(lines.items()):
      if not rows:
        continue
      epochs, mean, sem = curve(rows, key)
      line, = ax.plot(epochs + 1, scale * mean, label=label, color=_color(label.split(" ")[0]),
                      linestyle=_STYLES[i % len(_STYLES)])
      ax.fill_between(epochs + 1, scale * (mean - sem), scale * (mean + sem), alpha=0.25, color=line.get_color())
    ax.set_xlabel("epoch")
    _integer_epochs(ax)
    ax.set_ylabel(ylabel or (key + (" (%)" if percent else "")))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, path, dpi=110)
  plt.close(fig)


def alignment_summary(rows: list[dict]) -> dict[int, tuple[float, float, int]]:
  """epoch -> (mean, s.e.m., seeds) of the overall cosine with BPTT, from ``alignment.jsonl`` rows."""
  by_epoch: dict[int, list[float]] = {}
  for row in rows:
    by_epoch.setdefault(row["epoch"], []).append(row["cos_all"])
  return {e: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0, len(v))
          for e, v in sorted(by_epoch.items())}


def alignment_figure(panels: list[tuple[str, dict[str, list[dict]]]], path: pathlib.Path) -> None:
  """Figure 1's form: per panel ``(title, {method: alignment rows})``, 1 - cos with BPTT per epoch on a
  log axis (mean ± s.e.m. over seeds), so that 0.9 and 0.99999 are both readable."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
  for ax, (title, methods) in zip(axes[0], panels):
    for i, (method, rows) in enumerate(methods.items()):
      summary = alignment_summary(rows)
      if method == "bptt" or not summary:
        continue
      epochs = np.array(list(summary))
      mean = np.array([v[0] for v in summary.values()])
      sem = np.array([v[1] for v in summary.values()])
      # 1 - cos on a log axis (the paper breaks its axis instead).
      ax.errorbar(epochs, np.clip(1 - mean, 1e-9, None), yerr=sem, marker="o", capsize=3, label=method,
                  color=_color(method), linestyle=_STYLES[i % len(_STYLES)])
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("1 − cos(grad, BPTT grad), floor 1e-9")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, path, dpi=110)
  plt.close(fig)


def per_step_figure(title: str, by_method: dict[str, np.ndarray], path: pathlib.Path, ylabel: str,
                    chance: Optional[float] = None) -> None:
  """A per-step metric of the final networks, ``{method: (steps,) mean over seeds}``, one line each."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.2, 3.4))
  for i, (method, values) in enumerate(by_method.items()):
    values = np.asarray(values, float)
    ax.plot(np.arange(1, values.size + 1), 100 * values, marker="o", label=method, color=_color(method),
            linestyle=_STYLES[i % len(_STYLES)])
  if chance is not None:
    ax.axhline(100 * chance, color="gray", linestyle=":", label="chance")
  ax.set_xlabel("step of the window")
  _integer_epochs(ax)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, path, dpi=110)
  plt.close(fig)


def run_figures(workdir: pathlib.Path, config, task, methods: list[str]) -> list[tuple[str, str]]:
  """A run's pictures, written into its workdir; returns ``[(caption, file name)]`` for results.md.

  ``curves.png``: the task's primary test metric per epoch, every method; ``alignment.png``: each
  method's gradient against BPTT's at the alignment epochs; ``<per-step metric>.png``: for a task
  with a per-step metric (``task.per_step_metric``, e.g. Copy-Paste's recall per step).
  """
  workdir = pathlib.Path(workdir)
  primary = task.primary_metric
  percent = primary in task.fraction_metrics
  rows = {m: checkpoints.read_jsonl(workdir / m / "metrics.jsonl") for m in methods}
  out = []
  if any(rows.values()):
    learning_curves([(config.name, rows, f"test_{primary}")], percent, workdir / "curves.png",
                    ylabel=f"test {primary}" + (" (%)" if percent else ""))
    out.append((f"test {primary} per epoch, mean ± s.e.m. over seeds", "curves.png"))
  align = {m: checkpoints.read_jsonl(workdir / m / "alignment.jsonl") for m in methods if m != "bptt"}
  if any(align.values()):
    alignment_figure([(config.name, align)], workdir / "alignment.png")
    out.append(("gradient alignment with BPTT (1 − cosine, log scale), mean ± s.e.m. over seeds", "alignment.png"))
  per_step = getattr(task, "per_step_metric", None)
  if per_step:
    by_method = {}
    for m in methods:
      path = workdir / m / "final.json"
      if path.exists():
        final = json.loads(path.read_text())
        values = np.asarray(final.get(f"test_{per_step}", []), float)
        ok = ~np.asarray(final["diverged"], bool)
        if values.size and ok.any():
          by_method[m] = values[ok].mean(0)
    if by_method:
      name = f"{per_step}.png"
      per_step_figure(config.name, by_method, workdir / name, ylabel=f"{per_step} (%)",
                      chance=task.chance_level)
      out.append((f"{per_step} of the final networks, mean over seeds", name))
  return out
