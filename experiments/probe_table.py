"""Probe table: one row per run directory (command, revision, result) and the curves as a plot.

    python -m experiments.probe_table runs/probes/* --out DIR

For a recipe search: each probe is an ordinary run (usually one method, one validation seed);
this collects what was run and what it gave, so the path to a recipe can be retraced. Writes
``probes.md`` (rows in the order given), ``probes.png`` (test metric per epoch, one line per
probe and method), ``probes.csv`` and ``curves.jsonl`` (the plotted points).

Cross-validation folds: runs named ``<setting>_val<k>`` (one per held-out speaker ``k``, e.g.
``--config.data.validation_speaker=k``) are also grouped per setting: ``probes.md`` then starts
with a folds table (each fold's final value, their mean, and the best epoch of the mean curve),
and ``probes.png`` plots the mean curve of each setting.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import pathlib
import re

import numpy as np

from experiments import checkpoints
from experiments import tasks


def load_probe(workdir: pathlib.Path) -> list[dict]:
  """One dict per method of the run: its command, revision, curve and final numbers."""
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise ValueError(f"{workdir}: not a run directory (no config.json)")
  config = json.loads(config_path.read_text())
  invocations = checkpoints.read_jsonl(workdir / "invocations.jsonl")
  first = invocations[0] if invocations else {"command": "?", "revision": "?"}
  task = tasks.get(config["task"]["name"])
  primary = f"test_{task.primary_metric}"
  out = []
  for method in config["methods"]:
    rows = checkpoints.read_jsonl(workdir / method / "metrics.jsonl")
    if not rows:
      continue
    epochs = sorted({r["epoch"] for r in rows})
    curve = np.array([np.mean([r[primary] for r in rows if r["epoch"] == e]) for e in epochs])
    last = [r for r in rows if r["epoch"] == epochs[-1]]
    step_key = f"test_{task.per_step_metric}" if task.per_step_metric else None
    by_step = [r[step_key] for r in last if step_key in r]
    out.append({
        "name": workdir.name, "task": task.name, "method": method, "command": first["command"],
        "revision": first["revision"], "seeds": config["num_seeds"], "root_seed": config["seed"],
        "epochs_done": epochs[-1] + 1, "epochs": config["num_epochs"], "steps_per_epoch": config["steps_per_epoch"],
        "epoch_list": epochs, "curve": curve, "final": float(curve[-1]), "best": float(curve.max()),
        "best_epoch": int(epochs[int(np.argmax(curve))]) + 1,
        # The task's other percentage metrics at the last epoch, mean over seeds.
        "others": {m: float(np.mean([r.get(f"test_{m}", np.nan) for r in last]))
                   for m in task.fraction_metrics if m != task.primary_metric},
        "worst_step": float(np.min(np.mean(by_step, 0))) if by_step else float("nan"),
        "diverged": any(r.get("diverged") for r in last),
    })
  return out


FOLD = re.compile(r"^(?P<setting>.+)_val(?P<fold>\d+)$")
# In a fold's command: the held-out speaker and the workdir's suffix, shown as {k} in the table.
FOLD_ARG = re.compile(r"(validation_speaker=)\d+")
FOLD_WORKDIR = re.compile(r"(--workdir=\S+_val)\d+")


def fold_groups(probes: list[dict]) -> list[dict]:
  """Per (setting, method) with runs named ``<setting>_val<k>``: the folds' finals, their mean, and
  the mean curve over the folds (over the epochs every fold has reached)."""
  groups: dict[tuple, list[dict]] = {}
  for p in probes:
    m = FOLD.match(p["name"])
    if m:
      groups.setdefault((m["setting"], p["method"]), []).append({**p, "fold": int(m["fold"])})
  out = []
  for (setting, method), runs in groups.items():
    runs.sort(key=lambda r: r["fold"])
    done = min(len(r["curve"]) for r in runs)
    curve = np.mean([r["curve"][:done] for r in runs], 0)
    out.append({"setting": setting, "task": runs[0].get("task"), "method": method, "folds": [r["fold"] for r in runs],
                "finals": [r["final"] for r in runs], "complete": all(r["epochs_done"] == r["epochs"] for r in runs),
                "mean_final": float(np.mean([r["final"] for r in runs])), "curve": curve,
                "epoch_list": runs[0]["epoch_list"][:done], "steps_per_epoch": runs[0]["steps_per_epoch"],
                "mean_best": float(curve.max()), "mean_best_epoch": int(np.argmax(curve)) + 1,
                "revision": runs[0]["revision"],
                "command": FOLD_WORKDIR.sub(r"\g<1>{k}", FOLD_ARG.sub(r"\g<1>{k}", runs[0]["command"]))})
  return out


def folds_markdown(groups: list[dict]) -> str:
  lines = ["| setting | method | final per fold (%) | mean final (%) | mean curve best (%) @ epoch | revision | "
           "command (k = each fold) |", "|---|---|---|---|---|---|---|"]
  for g in groups:
    per_fold = ", ".join(f"{k}: {100 * v:.2f}" for k, v in zip(g["folds"], g["finals"]))
    lines.append(f"| {g['setting']} | {g['method']} | {per_fold}{'' if g['complete'] else ' (unfinished)'} | "
                 f"{100 * g['mean_final']:.2f} | {100 * g['mean_best']:.2f} @ {g['mean_best_epoch']} | "
                 f"`{g['revision']}` | `{g['command']}` |")
  return "\n".join(lines) + "\n"


def _other_columns(probes: list[dict]) -> tuple[list[str], bool]:
  """The other metrics any probe has (in order of appearance), and whether any has a per-step one."""
  others = list(dict.fromkeys(m for p in probes for m in p.get("others", {})))
  return others, any(not np.isnan(p.get("worst_step", np.nan)) for p in probes)


def _pct(value: float) -> str:
  return "-" if np.isnan(value) else f"{100 * value:.1f}"


def markdown(probes: list[dict]) -> str:
  """One row per probe; besides the primary metric, the task's other percentage metrics and the
  lowest step of its per-step metric (each at the last epoch, mean over seeds; "-" where absent)."""
  others, steps = _other_columns(probes)
  extra = [f"{m} (%)" for m in others] + (["worst step (%)"] if steps else [])
  lines = ["| probe | method | seeds (root) | epochs done | final (%) | best (%) @ epoch | "
           + "".join(f"{h} | " for h in extra) + "revision | command |",
           "|---|---|---|---|---|---|" + "---|" * len(extra) + "---|---|"]
  for p in probes:
    cells = [_pct(p.get("others", {}).get(m, np.nan)) for m in others] + ([_pct(p["worst_step"])] if steps else [])
    lines.append(
        f"| {p['name']} | {p['method']} | {p['seeds']} ({p['root_seed']}) | {p['epochs_done']}/{p['epochs']} "
        f"x {p['steps_per_epoch'] or 'one pass'} | {100 * p['final']:.2f}{' (div.)' if p['diverged'] else ''} | "
        f"{100 * p['best']:.2f} @ {p['best_epoch']} | " + "".join(f"{c} | " for c in cells)
        + f"`{p['revision']}` | `{p['command']}` |")
  return "\n".join(lines) + "\n"


def plot(probes: list[dict], path: pathlib.Path, ylabel: str = "test accuracy (%)") -> None:
  """One line per probe (``name`` or ``setting``, ``method``, ``curve``, ``epoch_list``)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(9, 5.5))
  # steps_per_epoch 0 means one pass over a dataset (HD): the x-axis is then epochs.
  by_epoch = any(not p["steps_per_epoch"] for p in probes)
  for p in probes:
    x = np.asarray(p["epoch_list"]) + 1
    ax.plot(x if by_epoch else x * p["steps_per_epoch"], 100 * p["curve"],
            label=f"{p.get('name', p.get('setting'))} ({p['method']})", lw=1.2)
  ax.set_xlabel("epochs" if by_epoch else "optimizer steps")
  ax.set_ylabel(ylabel)
  # Where every probe is of one task: its axis from just below chance, and a line at its target.
  names = {p.get("task") for p in probes}
  if len(names) == 1 and next(iter(names)) in tasks.TASKS:
    task = tasks.TASKS[next(iter(names))]
    if task.chance_level is not None and min(float(p["curve"].min()) for p in probes) >= task.chance_level - 0.05:
      ax.set_ylim(100 * task.chance_level - 5, 100)
    if task.target_level is not None:
      ax.axhline(100 * task.target_level, color="k", lw=0.6, ls="--")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, ncol=2, loc="lower right")
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  probes = [p for w in args.workdirs for p in load_probe(w)]
  if not probes:
    raise SystemExit("no probe has a finished epoch yet")
  args.out.mkdir(parents=True, exist_ok=True)
  groups = fold_groups(probes)
  text = markdown(probes)
  if groups:
    text = ("Cross-validation folds (one run per held-out speaker):\n\n" + folds_markdown(groups)
            + "\nEvery run:\n\n" + text)
  checkpoints.atomic_write_text(args.out / "probes.md", text)
  buf = io.StringIO()
  writer = csv.writer(buf)
  others, steps = _other_columns(probes)
  keys = ["name", "method", "seeds", "root_seed", "epochs_done", "epochs", "steps_per_epoch", "final", "best",
          "best_epoch"]
  tail = ["diverged", "revision", "command"]
  writer.writerow(keys + others + (["worst_step"] if steps else []) + tail)
  for p in probes:
    writer.writerow([p[k] for k in keys] + [p["others"].get(m, float("nan")) for m in others]
                    + ([p["worst_step"]] if steps else []) + [p[k] for k in tail])
  checkpoints.atomic_write_text(args.out / "probes.csv", buf.getvalue())
  checkpoints.write_jsonl(args.out / "curves.jsonl", [
      {"probe": p["name"], "method": p["method"], "epoch": int(e), "test": float(v)}
      for p in probes for e, v in zip(p["epoch_list"], p["curve"])])
  if groups:
    plot(groups, args.out / "probes.png", "validation accuracy (%), mean over the folds")
  else:
    plot(probes, args.out / "probes.png")
  print(text)


if __name__ == "__main__":
  main()
